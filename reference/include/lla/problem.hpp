#pragma once
// The one problem description shared by the oracle, the kernels, the fixtures and
// the benchmarks. It says which keys every query row sees; nothing else in the
// project re-declares shapes or masks by hand.
//
// Tensors are (B, L, H, D), row-major with D contiguous:
//   q, r, o : (batch, seqlen_q, heads_q,  head_dim)
//   k, v    : (batch, seqlen_k, heads_kv, head_dim)
// In varlen mode the batch is 1 and L is the packed token count.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lla/precision.hpp"

namespace lla {

enum class Variant { softmax, parallax, lla };

const char* to_string(Variant v);

// --- LLA (local linear attention) parameters; docs/math.md, section 7 ----------

// The ridge added to the weighted key covariance of row i.
enum class RidgeConvention {
  lambda_omega,  // lambda_i * omega_i * I (default): invariant to scaling the row's weights
  lambda,        // lambda_i * I (the paper's notation): depends on the max shift m_i
};

// The guard applied to the denominator d_i before dividing by it: d <- d + eps*sgn(d).
enum class DenominatorGuard {
  none,           // d unchanged (epsilon ignored)
  sign,           // sgn(0) = 0, as the public PyTorch reference (d = 0 stays 0)
  nonnegative_up, // sgn(d) = +1 for d >= 0, as the public Triton kernels (|d| >= eps)
};

enum class LlaSolver {
  direct,            // LDL^T of the centred Sigma_i (per block for the block-diagonal variant)
  denominator_free,  // o = vbar + Sigma_KV (C + lambda I)^-1 (q - kbar): no division by d
  cg,                // matrix-free conjugate gradients with the public stopping rule
};

enum class GradientMode {
  exact,          // the gradient of the forward as defined (includes the ridge term c_i)
  stop_gradient,  // lambda*omega and m held constant: what public FlashLLA code computes
};

// How the CG matvec Sigma p is formed.
enum class MatvecForm {
  centred,    // sum_j w_j (z_j.p) z_j + ridge p with z_j = k_j - q_i (stable)
  uncentred,  // sum_j w_j (k_j.p) k_j - (p.q) mu~ - (p.mu~) q + omega (p.q) q + ridge p (kernel form)
};

struct CgSettings {
  int64_t max_iters = 32;
  double atol = 1e-6;  // stopping rule on SQUARED norms: r.r <= rtol * max(atol, r0.r0)
  double rtol = 1e-6;
  bool jacobi = false;  // diagonal preconditioner
  MatvecForm form = MatvecForm::centred;
  // Operands of the matvec products are rounded to this precision; below fp64 the
  // CG state (x, r, p and the scalars) is kept in fp32, as the public kernels do.
  Precision matvec_precision = Precision::fp64;
};

struct LlaParams {
  double lambda = 10.0;  // ridge (a per-row tensor in the inputs overrides it)
  RidgeConvention ridge = RidgeConvention::lambda_omega;
  DenominatorGuard guard = DenominatorGuard::none;
  double epsilon = 0.0;
  LlaSolver solver = LlaSolver::direct;
  CgSettings cg;
  int64_t block_size = 0;  // 0 or head_dim: full Sigma; else block-diagonal (forward only, direct solve)
  GradientMode gradient = GradientMode::exact;
  // rho is rounded to this precision before rho.z, and the weights S before S V.
  Precision output_precision = Precision::fp64;
};

const char* to_string(RidgeConvention v);
const char* to_string(DenominatorGuard v);
const char* to_string(LlaSolver v);
const char* to_string(GradientMode v);
const char* to_string(MatvecForm v);

// Thrown by Problem::validate() and by every entry point that receives tensors
// whose shapes do not match the problem.
class ProblemError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Half-open range of key indices [begin, end) on the key axis of one batch entry.
struct KeyRange {
  int64_t begin = 0;
  int64_t end = 0;
  bool empty() const { return end <= begin; }
  int64_t size() const { return empty() ? 0 : end - begin; }
};

// One independent attention problem inside a Problem: a dense batch entry, one
// packed varlen sequence, or one decode request against its cache.
struct Sequence {
  int64_t batch = 0;    // index into the B dimension of the tensors
  int64_t q_begin = 0;  // first query row on the L axis of q
  int64_t q_len = 0;    // number of query rows
  int64_t k_begin = 0;  // lo: first valid key on the L axis of k (left padding)
  int64_t k_end = 0;    // hi: one past the last valid key

  // Causal alignment is to the END of the keys: row `row` (0-based within the
  // sequence) sits at key position hi - q_len + row. With q_len == k_len this is the
  // usual lower triangle; with q_len > k_len the first rows see no key at all.
  int64_t query_position(int64_t row) const { return k_end - q_len + row; }
};

struct Problem {
  int64_t batch = 1;
  int64_t seqlen_q = 1;  // per batch entry; packed total in varlen mode
  int64_t seqlen_k = 1;  // per batch entry (cache length in decode); packed total in varlen mode
  int64_t heads_q = 1;
  int64_t heads_kv = 1;  // must divide heads_q (GQA/MQA)
  int64_t head_dim = 64;
  std::optional<double> scale;  // logit scale c of s = c q.k; default 1/sqrt(head_dim)
  bool causal = true;
  // Sliding window: W > 0 keeps exactly W keys [a - W + 1, a] (diagonal included);
  // W <= 0 turns the window off. Requires causal (the window is defined relative
  // to the causal diagonal).
  int64_t window = 0;

  // Decode against a cache (dense mode only; empty = not used):
  std::vector<int32_t> seqused_k;    // per batch entry: hi, the number of filled cache slots
  std::vector<int32_t> cache_start;  // per batch entry: lo, left padding before the first key

  // Packed varlen batch (batch must be 1; empty = dense):
  std::vector<int32_t> cu_seqlens_q;  // N+1 offsets into the packed query rows
  std::vector<int32_t> cu_seqlens_k;  // N+1 offsets into the packed keys; empty = same as q

  Variant variant = Variant::parallax;
  LlaParams lla;  // used when variant == lla

  // A dense causal problem of the given shape; every other field at its default.
  static Problem dense(int64_t batch, int64_t seqlen_q, int64_t seqlen_k, int64_t heads_q, int64_t heads_kv,
                       int64_t head_dim, Variant variant = Variant::parallax);

  // --- derived quantities -----------------------------------------------------
  double softmax_scale() const;
  int64_t group_size() const { return heads_q / heads_kv; }
  int64_t kv_head(int64_t query_head) const { return query_head / group_size(); }
  bool is_varlen() const { return !cu_seqlens_q.empty(); }
  bool has_window() const { return window > 0; }

  int64_t q_elements() const { return batch * seqlen_q * heads_q * head_dim; }
  int64_t kv_elements() const { return batch * seqlen_k * heads_kv * head_dim; }

  // Every independent sequence, in order (batch entries, or varlen sequences).
  std::vector<Sequence> sequences() const;

  // The valid keys of one query row as one contiguous range (the masks used here
  // always give an interval). May be empty.
  KeyRange key_range(const Sequence& seq, int64_t row) const;

  // The same rule written as a per-key predicate, straight from the definitions.
  // The plain oracle path uses this; the blocked path uses key_range(); tests
  // check that the two agree.
  bool key_visible(const Sequence& seq, int64_t row, int64_t key) const;

  // Empty when the problem is valid, otherwise a message naming the first problem.
  std::optional<std::string> check() const;
  // Throws ProblemError with check()'s message.
  void validate() const;

  // One line, for logs, failure messages and benchmark labels.
  std::string describe() const;
};

}  // namespace lla
