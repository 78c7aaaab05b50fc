// The input distributions of make_inputs: names round-trip, and the clustered keys
// are clustered.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "lla/inputs.hpp"
#include "lla/metrics.hpp"

namespace lla {
namespace {

TEST(Inputs, EveryDistributionNameRoundTrips) {
  for (Magnitude m : kAllMagnitudes) EXPECT_EQ(parse_magnitude(to_string(m)), m);
  try {
    parse_magnitude("clustered");
    FAIL() << "an unknown name must throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("clustered_keys"), std::string::npos) << "the message lists the names";
  }
}

// Every key lies within a small distance of one of a few centres, and keys of
// different centres are far apart: the distances between keys take two scales.
TEST(Inputs, ClusteredKeysSitAroundFewCentres) {
  const Problem p = Problem::dense(1, 200, 200, 1, 1, 16);
  const auto in = make_inputs<double>(p, 3, Magnitude::clustered_keys);
  const int64_t L = p.seqlen_k, D = p.head_dim;
  auto dist = [&](int64_t a, int64_t b) {
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += std::pow(in.k(0, a, 0, d) - in.k(0, b, 0, d), 2);
    return std::sqrt(s);
  };
  // Greedy clustering with a radius between the two scales: 0.1 * sqrt(2D) ~ 0.6
  // within a cluster, sqrt(2D) ~ 5.7 between centres.
  std::vector<int64_t> leaders;
  for (int64_t j = 0; j < L; ++j) {
    const bool near = std::any_of(leaders.begin(), leaders.end(), [&](int64_t c) { return dist(j, c) < 2.0; });
    if (!near) leaders.push_back(j);
  }
  EXPECT_LE(leaders.size(), 8u);
  EXPECT_GE(leaders.size(), 4u) << "200 keys drawn over 8 centres should hit most of them";
  // q and v are untouched N(0, 1): the same as the normal distribution's.
  const auto normal = make_inputs<double>(p, 3, Magnitude::normal);
  EXPECT_EQ(max_abs_diff(in.q, normal.q), 0.0);
}

}  // namespace
}  // namespace lla
