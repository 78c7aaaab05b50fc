// The Problem description: validation messages, mask rules, sequence layout.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <limits>

#include "lla/problem.hpp"
#include "support/generators.hpp"

namespace lla {
namespace {

Problem base() {
  Problem p;
  p.batch = 2;
  p.seqlen_q = 5;
  p.seqlen_k = 7;
  p.heads_q = 4;
  p.heads_kv = 2;
  p.head_dim = 60;
  return p;
}

// Expects validate() to throw a ProblemError whose message contains `needle`.
void expect_rejected(const Problem& p, const std::string& needle) {
  try {
    p.validate();
    ADD_FAILURE() << "accepted an invalid problem, expected an error containing '" << needle << "': "
                  << p.describe();
  } catch (const ProblemError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message was: " << e.what();
  }
}

TEST(Problem, AcceptsTheBaseCase) {
  EXPECT_FALSE(base().check().has_value());
  EXPECT_DOUBLE_EQ(base().softmax_scale(), 1.0 / std::sqrt(60.0));
  EXPECT_EQ(base().group_size(), 2);
  EXPECT_EQ(base().kv_head(3), 1);
}

TEST(Problem, RejectsNonsenseWithAClearMessage) {
  auto p = base();
  p.batch = 0;
  expect_rejected(p, "batch must be >= 1");
  p = base();
  p.seqlen_q = -1;
  expect_rejected(p, "seqlen_q must be >= 0");
  p = base();
  p.seqlen_k = -3;
  expect_rejected(p, "seqlen_k must be >= 0");
  p = base();
  p.head_dim = 0;
  expect_rejected(p, "head_dim must be >= 1");
  p = base();
  p.heads_kv = 3;
  expect_rejected(p, "must be a multiple of heads_kv");
  p = base();
  p.heads_kv = 0;
  expect_rejected(p, "heads_kv must be >= 1");
  p = base();
  p.scale = std::numeric_limits<double>::quiet_NaN();
  expect_rejected(p, "scale must be finite");
  p = base();
  p.causal = false;
  p.window = 4;
  expect_rejected(p, "requires causal");
}

TEST(Problem, RejectsSizesThatOverflow64BitIndices) {
  auto p = base();
  p.batch = int64_t{1} << 20;
  p.seqlen_q = int64_t{1} << 20;
  p.heads_q = int64_t{1} << 12;
  p.heads_kv = 1;
  p.head_dim = int64_t{1} << 12;
  expect_rejected(p, "overflows int64");
  p = base();
  p.seqlen_k = int64_t{1} << 40;
  p.head_dim = int64_t{1} << 22;
  expect_rejected(p, "overflows int64");
}

TEST(Problem, ValidatesDecodeVectors) {
  auto p = base();
  p.seqused_k = {7};
  expect_rejected(p, "seqused_k has 1 entries, expected batch = 2");
  p.seqused_k = {7, 8};
  expect_rejected(p, "seqused_k[1] = 8 is outside [0, seqlen_k = 7]");
  p.seqused_k = {3, 7};
  p.cache_start = {4, 0};
  expect_rejected(p, "cache_start[0] = 4 is outside [0, 3]");
  p.cache_start = {0, -1};
  expect_rejected(p, "cache_start[1] = -1");
  p.cache_start = {3, 6};
  EXPECT_FALSE(p.check().has_value());
}

TEST(Problem, ValidatesVarlenOffsets) {
  Problem p;
  p.head_dim = 8;
  p.seqlen_q = p.seqlen_k = 10;
  p.cu_seqlens_q = {0, 4, 3, 10};
  expect_rejected(p, "must be non-decreasing");
  p.cu_seqlens_q = {1, 4, 10};
  expect_rejected(p, "cu_seqlens_q[0] must be 0");
  p.cu_seqlens_q = {0, 4, 9};
  expect_rejected(p, "must end at seqlen_q = 10");
  p.cu_seqlens_q = {0};
  expect_rejected(p, "at least 2 entries");
  p.cu_seqlens_q = {0, 4, 10};
  p.batch = 2;
  expect_rejected(p, "requires batch = 1");
  p.batch = 1;
  p.cu_seqlens_k = {0, 10};
  expect_rejected(p, "cu_seqlens_k has 2 entries but cu_seqlens_q has 3");
  p.cu_seqlens_k = {0, 2, 12};
  p.seqlen_k = 12;
  EXPECT_FALSE(p.check().has_value());
  p.cu_seqlens_k.clear();
  expect_rejected(p, "must equal the query count");
  p.seqlen_k = 10;
  p.seqused_k = {10};
  expect_rejected(p, "cannot be combined with cu_seqlens");
}

TEST(Problem, EndAlignedCausalMaskAndExactWindow) {
  Problem p;
  p.seqlen_q = 2;
  p.seqlen_k = 6;
  p.head_dim = 1;
  const auto seq = p.sequences().at(0);
  // Row 0 sits at key position 4, row 1 at 5 (end alignment).
  EXPECT_EQ(p.key_range(seq, 0).begin, 0);
  EXPECT_EQ(p.key_range(seq, 0).end, 5);
  EXPECT_EQ(p.key_range(seq, 1).end, 6);
  p.window = 3;  // exactly 3 keys, diagonal included
  EXPECT_EQ(p.key_range(seq, 1).begin, 3);
  EXPECT_EQ(p.key_range(seq, 1).size(), 3);
  // Lq > Lk: the first rows see nothing.
  p.window = 0;
  p.seqlen_q = 4;
  p.seqlen_k = 2;
  const auto seq2 = p.sequences().at(0);
  EXPECT_TRUE(p.key_range(seq2, 0).empty());
  EXPECT_TRUE(p.key_range(seq2, 1).empty());
  EXPECT_EQ(p.key_range(seq2, 2).size(), 1);
  EXPECT_EQ(p.key_range(seq2, 3).size(), 2);
}

TEST(Problem, VarlenSequencesCoverThePackedAxis) {
  Problem p;
  p.head_dim = 4;
  p.cu_seqlens_q = {0, 3, 3, 8};
  p.cu_seqlens_k = {0, 5, 6, 6};
  p.seqlen_q = 8;
  p.seqlen_k = 6;
  const auto seqs = p.sequences();
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(seqs[1].q_len, 0);
  EXPECT_EQ(seqs[1].k_begin, 5);
  EXPECT_EQ(seqs[1].k_end, 6);
  EXPECT_EQ(seqs[2].q_begin, 3);
  EXPECT_EQ(seqs[2].q_len, 5);
  EXPECT_EQ(seqs[2].k_end - seqs[2].k_begin, 0);  // 5 queries, no keys: every row empty
  for (int64_t i = 0; i < 5; ++i) EXPECT_TRUE(p.key_range(seqs[2], i).empty());
}

// key_range() (an interval, used by the fast paths) equals key_visible() (a
// per-key predicate written from the definitions) on every drawn problem.
RC_GTEST_PROP(ProblemProperties, KeyRangeEqualsThePredicate, ()) {
  test::CaseLimits lim;
  const Problem p = test::draw_problem(lim);
  RC_ASSERT(!p.check().has_value());
  for (const auto& seq : p.sequences()) {
    for (int64_t i = 0; i < seq.q_len; ++i) {
      const KeyRange r = p.key_range(seq, i);
      for (int64_t j = -1; j <= p.seqlen_k; ++j) {
        const bool in_range = j >= r.begin && j < r.end;
        RC_ASSERT(in_range == p.key_visible(seq, i, j));
      }
      if (p.has_window()) RC_ASSERT(r.size() <= p.window);
      RC_ASSERT(r.begin >= seq.k_begin);
      RC_ASSERT(r.end <= seq.k_end || r.empty());
    }
  }
}

}  // namespace
}  // namespace lla
