// `lla compare`: the sweep parser, the CSV schema, that every method is measured
// against the oracle of exactly its own problem, the metrics on hand-made tensors,
// and the command's files and exit codes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "compare.hpp"
#include "lla/oracle/attention.hpp"
#include "lla/oracle/lla.hpp"
#include "support/cli.hpp"

namespace lla::compare {
namespace {

namespace fs = std::filesystem;
using test::run_lla;
using test::TempDir;

// --- the sweep parser ---------------------------------------------------------------

// The message of the SweepError `f` throws (empty when it does not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const SweepError& e) {
    return e.what();
  }
  return "";
}

TEST(CompareSweep, ListsAndRanges) {
  EXPECT_EQ(parse_real_axis("lambda", "0.1,1,10", 0, 1e6), (std::vector<double>{0.1, 1, 10}));
  // Decades are exact decimals, not accumulated products (0.09999999999999999).
  EXPECT_EQ(parse_real_axis("lambda", "1e-3..1e2*10", 0, 1e6), (std::vector<double>{1e-3, 1e-2, 0.1, 1, 10, 100}));
  EXPECT_EQ(parse_integer_axis("iters", "1..256*2", 1, 4096),
            (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 64, 128, 256}));
  EXPECT_EQ(parse_integer_axis("length", "256..1024+256", 1, 4096), (std::vector<int64_t>{256, 512, 768, 1024}));
  // A range that does not hit its end stops below it; lists mix with ranges; repeats go.
  EXPECT_EQ(parse_integer_axis("length", "1,3..10+3,4,1", 1, 4096), (std::vector<int64_t>{1, 3, 6, 9, 4}));
  EXPECT_EQ(parse_precision_axis("precision", "bf16,fp32,fp16,fp64"),
            (std::vector<Precision>{Precision::bf16, Precision::fp32, Precision::fp16, Precision::fp64}));
  EXPECT_EQ(parse_position_axis("position", "early,late"), (std::vector<Position>{Position::early, Position::late}));
  EXPECT_EQ(parse_distribution_axis("distribution", "clustered_keys,heavy_keys"),
            (std::vector<Magnitude>{Magnitude::clustered_keys, Magnitude::heavy_keys}));
  EXPECT_EQ(parse_method_list("methods", "parallax,lla_cg"), (std::vector<Method>{Method::parallax, Method::lla_cg}));
}

TEST(CompareSweep, BadValuesGiveAClearError) {
  struct Bad {
    std::string text;
    std::string says;  // a piece of the message
  };
  const std::vector<Bad> reals = {
      {"", "needs at least one value"},        {"abc", "'abc' is not a finite number"},
      {"1,,2", "empty value"},                 {"1..10", "needs a step"},
      {"10..1*2", "ends below its start"},     {"0..1*2", "start > 0 and a factor > 1"},
      {"1..2*1", "factor > 1"},                {"1..2+0", "step > 0"},
      {"nan", "not a finite number"},          {"inf", "not a finite number"},
      {"1e-9", "outside [1e-06, 1000000]"},    {"2e6", "outside"},
      {"1..1e9*1.0001", "more than 10000 values"}};
  for (const auto& b : reals) {
    const auto msg = error_of([&] { parse_real_axis("lambda", b.text, kLambdaMin, kLambdaMax); });
    EXPECT_NE(msg.find("--lambda"), std::string::npos) << "'" << b.text << "' gave: " << msg;
    EXPECT_NE(msg.find(b.says), std::string::npos) << "'" << b.text << "' gave: " << msg;
  }
  EXPECT_NE(error_of([] { parse_integer_axis("iters", "1.5", 1, 4096); }).find("not an integer"), std::string::npos);
  EXPECT_NE(error_of([] { parse_integer_axis("iters", "0", 1, 4096); }).find("outside [1, 4096]"), std::string::npos);
  EXPECT_NE(error_of([] { parse_precision_axis("precision", "bf17"); }).find("unknown precision 'bf17'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_position_axis("position", "middle"); }).find("early"), std::string::npos);
  EXPECT_NE(error_of([] { parse_distribution_axis("distribution", "uniform"); }).find("clustered_keys"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_method_list("methods", "lla"); }).find("lla_cg_jacobi"), std::string::npos);
  EXPECT_NE(error_of([] { preset("fast"); }).find("demo, paper"), std::string::npos);
}

TEST(CompareSweep, PresetsAreCrossProductsOfValidProblems) {
  for (const auto& name : preset_names()) {
    const Plan plan = preset(name);
    size_t expected = 0;
    for (const auto& s : plan.sweeps) {
      expected += s.lambdas.size() * s.cg_iters.size() * s.cg_tols.size() * s.precisions.size() * s.lengths.size() *
                  s.head_dims.size() * s.positions.size() * s.distributions.size();
    }
    const auto configs = plan.configs();
    EXPECT_EQ(configs.size(), expected) << name;
    for (const auto& c : configs) EXPECT_FALSE(config_problem(c, Variant::lla).check().has_value()) << name;
  }
  // The paper preset holds the public test regime and lambda <= 1.
  bool public_regime = false, small_lambda = false;
  for (const auto& c : preset("paper").configs()) {
    public_regime |= c.head_dim == 64 && c.length == 1024 && c.lambda == 10 && c.cg_iters == 32 &&
                     c.precision == Precision::bf16 && c.cg_tol == 1e-6;
    small_lambda |= c.lambda <= 1;
  }
  EXPECT_TRUE(public_regime);
  EXPECT_TRUE(small_lambda);
}

// --- metrics on hand-made tensors ----------------------------------------------------

TEST(CompareMetrics, HandComputedValues) {
  // Four rows of two values; the oracle's largest magnitude is 2.
  Forward oracle, cand;
  oracle.o = Tensor4<double>({1, 4, 1, 2});
  const double ref[] = {1, -2, 0.5, 0.5, 1, 1, 0, 0};
  for (int i = 0; i < 8; ++i) oracle.o.data()[i] = ref[i];
  cand.o = oracle.o;
  cand.o(0, 1, 0, 0) += 0.5;   // row 1: |diff| 0.5 -> 0.25 of the scale
  cand.o(0, 2, 0, 1) -= 0.0078125;  // row 2: 2^-7 (exact), 2^-8 of the scale
  const Metrics m = measure(cand, oracle, nullptr, nullptr, {0, 4}, 0.01);
  EXPECT_EQ(m.rows, 4);
  EXPECT_DOUBLE_EQ(m.o_max_rel_err, 0.25);
  // RMS(diff) / RMS(ref) = sqrt(0.25 + 2^-14) / sqrt(1 + 4 + 0.25 + 0.25 + 1 + 1)
  EXPECT_DOUBLE_EQ(m.o_rms_ratio, std::sqrt(0.25 + std::ldexp(1.0, -14)) / std::sqrt(7.5));
  EXPECT_DOUBLE_EQ(m.o_frac_rows_over_tol, 0.25);  // only row 1 is over 1e-2
  // Restricted to rows 2..3 the scale is 1 and only row 2 differs.
  const Metrics late = measure(cand, oracle, nullptr, nullptr, {2, 4}, 0.001);
  EXPECT_EQ(late.rows, 2);
  EXPECT_DOUBLE_EQ(late.o_max_rel_err, 0.0078125);
  EXPECT_DOUBLE_EQ(late.o_frac_rows_over_tol, 0.5);
  // NaN is an infinite error, and counts as a sign flip of the denominator.
  cand.o(0, 3, 0, 0) = NAN;
  oracle.denom_ratio = Tensor3<double>({1, 4, 1}, 0.5);
  cand.denom_ratio = oracle.denom_ratio;
  cand.denom_ratio(0, 0, 0) = -0.1;
  cand.denom_ratio(0, 3, 0) = NAN;
  const Metrics bad = measure(cand, oracle, nullptr, nullptr, {0, 4}, 0.01);
  EXPECT_TRUE(std::isinf(bad.o_max_rel_err));
  EXPECT_DOUBLE_EQ(*bad.denom_sign_flip_frac, 0.5);
  EXPECT_DOUBLE_EQ(*bad.oracle_min_denom_ratio, 0.5);
}

// --- every method against the oracle of exactly its own problem -------------------------

// A small plan that varies every axis, so a method judged against the wrong problem
// (another lambda, unrounded inputs, another variant, the gradient of other rows, a
// result cached under too coarse a key) shows up in at least one configuration.
Plan every_axis_plan() {
  Plan plan;
  Sweep s;
  s.name = "t";
  s.lambdas = {0.1, 3};
  s.cg_iters = {1, 5};
  s.cg_tols = {1e-6, 0};
  s.precisions = {Precision::bf16, Precision::fp16, Precision::fp32, Precision::fp64};
  s.lengths = {6, 9};
  s.head_dims = {3, 4};
  s.positions = {Position::all, Position::early, Position::late};
  s.distributions = {Magnitude::normal, Magnitude::rms_normed, Magnitude::clustered_keys};
  plan.sweeps = {s};
  plan.seed = 5;
  return plan;
}

// The fp64 oracle of a configuration, built here from the definitions of
// docs/compare.md (not through the library's own problem and input builders).
struct IndependentOracle {
  double lambda_factor = 1;  // != 1: the oracle of another problem
  bool round_inputs = true;  // false: the oracle of the unrounded inputs

  Problem problem(Method m, const Config& c) const {
    const Variant v = (m == Method::softmax) ? Variant::softmax
                      : (m == Method::parallax || m == Method::parallax_gpu) ? Variant::parallax
                                                                              : Variant::lla;
    Problem p;
    p.seqlen_q = p.seqlen_k = c.length;
    p.head_dim = c.head_dim;
    p.variant = v;
    p.lla.lambda = c.lambda * lambda_factor;
    return p;
  }
  oracle::AttentionInputs<double> inputs(const Config& c, uint64_t seed) const {
    auto in = make_inputs<double>(problem(Method::parallax, c), seed, c.distribution);
    if (round_inputs)
      for (auto* t : {&in.q, &in.k, &in.v, &in.r})
        for (auto& x : *t) x = round_to(c.precision, x);
    return in;
  }
  Tensor4<double> dout(const Config& c, uint64_t seed) const {
    auto g = make_dout<double>(problem(Method::parallax, c), seed);
    const int64_t lo = c.position == Position::late ? c.length / 2 : 0;
    const int64_t hi = c.position == Position::early ? std::min(c.head_dim, c.length) : c.length;
    for (int64_t l = 0; l < c.length; ++l)
      for (int64_t d = 0; d < c.head_dim; ++d) {
        auto& x = g(0, l, 0, d);
        x = (l < lo || l >= hi) ? 0.0 : (round_inputs ? round_to(c.precision, x) : x);
      }
    return g;
  }
  MethodFunctions functions(uint64_t seed) const {
    return {[this, seed](Method m, const Config& c, const oracle::AttentionInputs<double>&) {
              const Problem p = problem(m, c);
              const auto in = inputs(c, seed);
              Forward f;
              if (p.variant == Variant::lla) {
                const auto r = oracle::lla_forward(p, in);
                f.o = r.o;
                f.denom_ratio = r.denom_ratio;
              } else {
                f.o = oracle::attention_forward(p, in).o;
              }
              return f;
            },
            [this, seed](Method m, const Config& c, const oracle::AttentionInputs<double>&, const Tensor4<double>&) {
              const Problem p = problem(m, c);
              Backward b;
              b.grads = p.variant == Variant::lla ? oracle::lla_backward(p, inputs(c, seed), dout(c, seed))
                                                  : oracle::attention_backward(p, inputs(c, seed), dout(c, seed));
              return b;
            }};
  }
};

std::vector<double> errors_of(const Result& r) {
  const auto& m = r.metrics;
  std::vector<double> e{m.o_max_rel_err, m.o_rms_ratio, m.o_frac_rows_over_tol};
  for (const auto& x : {m.dq_max_rel_err, m.dk_max_rel_err, m.dv_max_rel_err, m.dr_max_rel_err,
                        m.denom_sign_flip_frac})
    if (x) e.push_back(*x);
  return e;
}

TEST(CompareOracle, FeedingEveryMethodItsOraclesAnswerMeasuresZero) {
  const Plan plan = every_axis_plan();
  const IndependentOracle truth;
  const auto results = run(plan, truth.functions(plan.seed), {2, {}});
  ASSERT_EQ(results.size(), plan.configs().size() * kAllMethods.size());
  for (const auto& r : results) {
    ASSERT_TRUE(r.available);
    ASSERT_TRUE(r.metrics.dq_max_rel_err.has_value()) << "gradients must be measured";
    EXPECT_EQ(r.metrics.denom_sign_flip_frac.has_value(), is_lla(r.method));
    for (double e : errors_of(r))
      ASSERT_EQ(e, 0.0) << to_string(r.method) << " at lambda " << r.config.lambda << ", "
                        << to_string(r.config.precision) << ", L " << r.config.length << ", D " << r.config.head_dim
                        << ", " << to_string(r.config.position) << ", " << to_string(r.config.distribution);
  }
}

// The same test can fail: the oracle of another lambda, or of the inputs before
// rounding, is not the oracle of the configuration.
TEST(CompareOracle, TheOracleOfAnotherProblemMeasuresNonZero) {
  Plan plan = every_axis_plan();
  plan.sweeps[0].precisions = {Precision::bf16};
  plan.sweeps[0].positions = {Position::all};
  IndependentOracle other_lambda;
  other_lambda.lambda_factor = 2;
  for (const auto& r : run(plan, other_lambda.functions(plan.seed), {2, {}})) {
    if (is_lla(r.method)) EXPECT_GT(r.metrics.o_max_rel_err, 0.0) << to_string(r.method);
    else EXPECT_EQ(r.metrics.o_max_rel_err, 0.0) << to_string(r.method) << " does not depend on lambda";
  }
  IndependentOracle unrounded;
  unrounded.round_inputs = false;
  for (const auto& r : run(plan, unrounded.functions(plan.seed), {2, {}})) {
    EXPECT_GT(r.metrics.o_max_rel_err, 0.0) << to_string(r.method);
    EXPECT_GT(*r.metrics.dq_max_rel_err, 0.0) << to_string(r.method);
  }
}

// The emulated methods in fp64 reproduce their oracle where they should (Parallax,
// softmax: the same code), and the low-precision ones do not.
TEST(CompareOracle, EmulatedMethodsErrOnlyWhereTheyApproximate) {
  Plan plan;
  plan.sweeps[0].lengths = {12};
  plan.sweeps[0].head_dims = {4};
  plan.sweeps[0].precisions = {Precision::fp64, Precision::bf16};
  plan.sweeps[0].lambdas = {1};
  for (const auto& r : run(plan, emulated_methods(), {1, {}})) {
    if (!r.available) {
      EXPECT_EQ(r.method, Method::parallax_gpu);
      EXPECT_NE(r.note.find("not available"), std::string::npos) << r.note;
      continue;
    }
    const bool exact = r.config.precision == Precision::fp64 &&
                       (r.method == Method::parallax || r.method == Method::softmax);
    if (exact) {
      EXPECT_EQ(r.metrics.o_max_rel_err, 0.0) << to_string(r.method);
      EXPECT_EQ(*r.metrics.dq_max_rel_err, 0.0) << to_string(r.method);
    } else {
      EXPECT_GT(r.metrics.o_max_rel_err, 0.0) << to_string(r.method) << " " << to_string(r.config.precision);
    }
  }
}

// --- the CSV --------------------------------------------------------------------------

std::vector<std::string> parse_csv_line(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      fields.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

// The schema: docs/compare.md documents these columns in this order.
const std::vector<std::string> kColumns = {
    "panel",          "method",         "precision",          "lambda",
    "cg_iters",       "cg_tol",         "L",                  "D",
    "position",       "distribution",   "seed",               "status",
    "rows",           "o_max_rel_err",  "o_rms_ratio",        "o_frac_rows_over_tol",
    "tolerance",      "cg_not_converged_frac", "cg_mean_iters", "denom_sign_flip_frac",
    "dq_max_rel_err", "dk_max_rel_err", "dv_max_rel_err",     "dr_max_rel_err",
    "grad_max_rel_err", "oracle_max_condition", "oracle_min_denom_ratio", "note"};

TEST(CompareCsv, SchemaOneRowPerConfigurationAndMethod) {
  EXPECT_EQ(csv_columns(), kColumns);
  Plan plan;
  plan.sweeps[0].lambdas = {0.1, 1};
  plan.sweeps[0].cg_iters = {3};
  plan.sweeps[0].lengths = {8};
  plan.sweeps[0].head_dims = {4};
  plan.sweeps[0].positions = {Position::all, Position::early};
  const auto configs = plan.configs();
  const auto results = run(plan, emulated_methods(), {2, {}});
  std::istringstream csv(csv_text(plan, results));
  std::string line;
  ASSERT_TRUE(std::getline(csv, line));
  EXPECT_EQ(parse_csv_line(line), kColumns);
  auto col = [](const std::string& name) {
    return static_cast<size_t>(std::find(kColumns.begin(), kColumns.end(), name) - kColumns.begin());
  };
  const std::set<std::string> text_columns = {"panel", "method", "precision", "position", "distribution", "status",
                                              "note"};
  size_t n = 0;
  while (std::getline(csv, line)) {
    const auto f = parse_csv_line(line);
    ASSERT_EQ(f.size(), kColumns.size()) << line;
    // Rows come in the order configurations x methods.
    const Config& c = configs[n / plan.methods.size()];
    const Method m = plan.methods[n % plan.methods.size()];
    EXPECT_EQ(f[col("method")], to_string(m));
    EXPECT_EQ(f[col("precision")], to_string(c.precision));
    EXPECT_EQ(std::stod(f[col("lambda")]), c.lambda);
    EXPECT_EQ(f[col("position")], to_string(c.position));
    EXPECT_EQ(std::stoll(f[col("L")]), c.length);
    const bool ok = f[col("status")] == "ok";
    EXPECT_TRUE(ok || (f[col("status")] == "not_available" && !f[col("note")].empty())) << line;
    for (size_t i = 0; i < f.size(); ++i) {
      if (text_columns.count(kColumns[i]) || f[i].empty()) continue;
      size_t used = 0;
      std::stod(f[i], &used);
      EXPECT_EQ(used, f[i].size()) << kColumns[i] << " = '" << f[i] << "' is not a number";
    }
    // What must be present, and what only some methods have.
    EXPECT_EQ(f[col("o_max_rel_err")].empty(), !ok);
    EXPECT_EQ(f[col("cg_not_converged_frac")].empty(), !(ok && is_cg(m)));
    EXPECT_EQ(f[col("denom_sign_flip_frac")].empty(), !(ok && is_lla(m)));
    EXPECT_EQ(f[col("dq_max_rel_err")].empty(), !ok || m == Method::parallax_gpu);
    EXPECT_EQ(f[col("dr_max_rel_err")].empty(), !(ok && m == Method::parallax));
    ++n;
  }
  EXPECT_EQ(n, configs.size() * plan.methods.size());
}

TEST(CompareCsv, DocsDescribeEveryColumn) {
  std::ifstream in(fs::path(LLA_SOURCE_DIR) / "docs" / "compare.md");
  ASSERT_TRUE(in) << "docs/compare.md is missing";
  const std::string doc{std::istreambuf_iterator<char>(in), {}};
  for (const auto& c : kColumns) EXPECT_NE(doc.find("`" + c + "`"), std::string::npos) << c;
}

// --- findings ------------------------------------------------------------------------------

// Results with given output errors along lambda, for the findings logic alone.
std::vector<Result> along_lambda(const Plan& plan, const std::vector<double>& cg, const std::vector<double>& px) {
  std::vector<Result> out;
  const auto configs = plan.configs();
  for (size_t i = 0; i < configs.size(); ++i) {
    for (Method m : plan.methods) {
      Result r;
      r.config = configs[i];
      r.method = m;
      r.metrics.o_max_rel_err = m == Method::lla_cg ? cg[i] : px[i];
      out.push_back(r);
    }
  }
  return out;
}

std::string verdict_of(const Plan& plan, const std::vector<Result>& results) {
  for (const auto& f : findings(plan, results))
    for (const auto& item : f.items)
      if (item.rfind("Verdict: ", 0) == 0) return item;
  return "";
}

TEST(CompareFindings, TheVerdictIsWrittenFromTheNumbers) {
  Plan plan;
  plan.sweeps[0].lambdas = {0.1, 1, 10, 100};
  plan.sweeps[0].precisions = {Precision::bf16};
  plan.methods = {Method::lla_cg, Method::parallax};
  EXPECT_EQ(verdict_of(plan, along_lambda(plan, {0.5, 0.05, 0.005, 0.002}, {0.003, 0.003, 0.003, 0.003})),
            "Verdict: lla_cg bf16 stops meeting 0.01 below lambda = 10 (5.0e-02 at lambda = 1); parallax bf16 "
            "stays within it at every lambda (worst 3.0e-03 at lambda = 0.1)");
  struct Case {
    std::vector<double> cg, px;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{0.5, 0.05, 0.005, 0.002}, {0.003, 0.02, 0.003, 0.003},
       "parallax bf16 does NOT stay within it (worst 2.0e-02 at lambda = 1)"},
      {{0.005, 0.004, 0.003, 0.002}, {0.003, 0.003, 0.003, 0.003},
       "meets 0.01 at every lambda tested, so there is no threshold"},
      {{0.5, 0.05, 0.02, 0.002}, {0.003, 0.003, 0.003, 0.003}, "below lambda = 100 (2.0e-02 at lambda = 10)"},
      {{0.5, 0.005, 0.05, 0.002}, {0.003, 0.003, 0.003, 0.003}, "no single threshold"},
  };
  for (const auto& c : cases) {
    const auto v = verdict_of(plan, along_lambda(plan, c.cg, c.px));
    EXPECT_NE(v.find(c.says), std::string::npos) << v;
  }
}

// --- the command ------------------------------------------------------------------------

const std::string kTiny = "--lambda 0.1,10 --iters 4 --length 10 --head-dim 4 --quiet";

TEST(CompareCli, WritesTheFilesAndTheHeadline) {
  TempDir tmp;
  const auto r = run_lla("compare --out '" + tmp.path().string() + "' " + kTiny);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"compare.csv", "summary.json", "report.md"})
    EXPECT_TRUE(fs::exists(tmp.path() / f)) << f << "\n" << r.output;
  EXPECT_NE(r.output.find("parallax bf16"), std::string::npos) << r.output;
  std::ifstream report(tmp.path() / "report.md");
  const std::string md{std::istreambuf_iterator<char>(report), {}};
  EXPECT_NE(md.find("## Findings"), std::string::npos);
  EXPECT_NE(md.find("lla_cg bf16"), std::string::npos);
  // gnuplot is installed by tools/deps.sh; when it is there the plots must be drawn.
  if (std::system("gnuplot --version >/dev/null 2>&1") == 0) {
    EXPECT_TRUE(fs::exists(tmp.path() / "plot_01_sweep_o_vs_lambda.svg")) << r.output;
    EXPECT_NE(md.find("plot_01_sweep_o_vs_lambda.svg"), std::string::npos);
  }
}

TEST(CompareCli, WithoutGnuplotEverythingElseIsWrittenAndTheReasonGiven) {
  TempDir tmp;
  const auto r = run_lla("compare --out '" + tmp.path().string() + "' " + kTiny, "PATH=/nonexistent");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f : {"compare.csv", "summary.json", "report.md"}) EXPECT_TRUE(fs::exists(tmp.path() / f)) << f;
  EXPECT_FALSE(fs::exists(tmp.path() / "plot_01_sweep_o_vs_lambda.svg"));
  EXPECT_NE(r.output.find("skipped: gnuplot was not found"), std::string::npos) << r.output;
  std::ifstream json(tmp.path() / "summary.json");
  const std::string js{std::istreambuf_iterator<char>(json), {}};
  EXPECT_NE(js.find("skipped: gnuplot was not found"), std::string::npos);
}

TEST(CompareCli, BadArgumentsExitTwoWithAMessage) {
  TempDir tmp;
  const std::string out = "--out '" + tmp.path().string() + "' ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"compare " + kTiny, "missing --out"},
      {"compare " + out + "--lambda abc", "--lambda: 'abc' is not a finite number"},
      {"compare " + out + "--iters 0", "--iters: 0 is outside [1, 4096]"},
      {"compare " + out + "--length 5000", "--length: 5000 is outside [1, 4096]"},
      {"compare " + out + "--precision bf17", "unknown precision 'bf17'"},
      {"compare " + out + "--preset fast", "unknown preset 'fast'"},
      {"compare " + out + "--lambda 1..10", "needs a step"},
      {"compare " + out + "--colour red", "unknown option --colour"},
      {"compare " + out + "--seed 1,2", "--seed takes one value"},
      {"compare " + out + "--jobs 0", "--jobs: 0 is outside [1, 256]"},
  };
  for (const auto& [args, says] : cases) {
    const auto r = run_lla(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << args << "\n" << r.output;
  }
  EXPECT_FALSE(fs::exists(tmp.path() / "compare.csv")) << "nothing is written on a usage error";
}

}  // namespace
}  // namespace lla::compare
