#pragma once
// `lla compare`: how far LLA's solvers and Parallax land from the fp64 oracle of the
// same problem, over a sweep of lambda, CG iterations and tolerance, precision,
// length, head dim, position in the sequence and input distribution
// (docs/compare.md). The library behind the subcommand, so the tests can drive the
// parser, the measurement and the writers directly.

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "lla/inputs.hpp"
#include "lla/oracle/types.hpp"
#include "lla/precision.hpp"
#include "lla/problem.hpp"

namespace lla::compare {

// Bad sweep options; the CLI turns it into exit code 2 with the message.
class SweepError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Which query rows the metrics look at. LLA's row systems are rank deficient while
// a row sees fewer keys than the head dim, so early rows are where a solver is
// tested hardest.
enum class Position {
  all,    // every row
  early,  // rows 0 .. min(D, L) - 1: fewer visible keys than D
  late,   // rows L/2 .. L - 1: the second half of the sequence
};

enum class Method {
  lla_direct_fp32,  // the oracle's LDL^T solve run in fp32 (lla_forward<float>)
  lla_cg,           // CG as the public kernels run it, matvec operands in the config's precision
  lla_cg_jacobi,    // the same with the Jacobi preconditioner
  parallax,         // the Parallax oracle in fp32 on inputs in the config's precision
  parallax_gpu,     // the CUDA decode kernel (bf16/fp16 only; when built and a device is present)
  softmax,          // softmax attention in fp32 on the same inputs: the precision floor
};
inline constexpr std::array<Method, 6> kAllMethods{Method::lla_direct_fp32, Method::lla_cg,       Method::lla_cg_jacobi,
                                                   Method::parallax,        Method::parallax_gpu, Method::softmax};

const char* to_string(Position p);
const char* to_string(Method m);
Position parse_position(const std::string& s);  // throws SweepError
Method parse_method(const std::string& s);      // throws SweepError
bool is_lla(Method m);
bool is_cg(Method m);
Variant oracle_variant(Method m);  // the variant of the oracle a method is judged against

// One point of the sweep. The precision is that of the inputs (q, k, v, r and the
// upstream gradient are rounded to it before anyone sees them) and of the low-
// precision products of every method; below fp64, accumulation and CG state are fp32.
struct Config {
  std::string panel;  // the sweep (preset panel) that produced it
  double lambda = 10.0;
  int64_t cg_iters = 32;
  double cg_tol = 1e-6;  // CG atol = rtol, on squared norms (the public rule)
  Precision precision = Precision::bf16;
  int64_t length = 256;
  int64_t head_dim = 64;
  Position position = Position::all;
  Magnitude distribution = Magnitude::normal;
};

// One cross product of axis values.
struct Sweep {
  std::string name = "sweep";
  // The axis the findings and plots of this sweep run along, by its CSV column name
  // (lambda, cg_iters, cg_tol, L, D, position, distribution). Empty, or an axis with
  // a single value: the axis with the most values.
  std::string focus;
  std::vector<double> lambdas{10.0};
  std::vector<int64_t> cg_iters{32};
  std::vector<double> cg_tols{1e-6};
  std::vector<Precision> precisions{Precision::bf16, Precision::fp32};
  std::vector<int64_t> lengths{256};
  std::vector<int64_t> head_dims{64};
  std::vector<Position> positions{Position::all};
  std::vector<Magnitude> distributions{Magnitude::normal};

  std::vector<Config> configs() const;  // in a fixed order, the last axis listed above varying slowest
};

struct Plan {
  std::string preset;  // empty: one sweep from the options
  std::vector<Sweep> sweeps{Sweep{}};
  std::vector<Method> methods{kAllMethods.begin(), kAllMethods.end()};
  uint64_t seed = 1;
  double tolerance = 1e-2;  // the per-row threshold of o_frac_rows_over_tol and of the findings
  bool gradients = true;

  std::vector<Config> configs() const;  // every sweep's, in order
};

// Named presets: "demo" (seconds) and "paper" (the FlashLLA test regime and where it
// fails; minutes). Throws SweepError for other names.
Plan preset(const std::string& name);
std::vector<std::string> preset_names();

// Axis parsers. A value list is comma separated; a range is "a..b*f" (geometric, factor
// f > 1) or "a..b+s" (arithmetic, step s > 0), inclusive of b when it is hit. Values
// outside [lo, hi] and malformed text throw SweepError naming the option.
std::vector<double> parse_real_axis(const std::string& option, const std::string& text, double lo, double hi);
std::vector<int64_t> parse_integer_axis(const std::string& option, const std::string& text, int64_t lo, int64_t hi);
std::vector<Precision> parse_precision_axis(const std::string& option, const std::string& text);
std::vector<Position> parse_position_axis(const std::string& option, const std::string& text);
std::vector<Magnitude> parse_distribution_axis(const std::string& option, const std::string& text);
std::vector<Method> parse_method_list(const std::string& option, const std::string& text);

// The limits the CLI enforces (docs/compare.md).
inline constexpr double kLambdaMin = 1e-6, kLambdaMax = 1e6;
inline constexpr int64_t kItersMax = 4096, kLengthMax = 4096, kHeadDimMax = 256;

// --- the problem of one configuration -------------------------------------------

// The problem every method and its oracle share: batch 1, one head, causal prefill
// of length L, head dim D, logit scale 1/sqrt(D); for LLA the ridge lambda*omega
// with no guard.
Problem config_problem(const Config& c, Variant v);
// Query rows [begin, end) the metrics of this position look at.
KeyRange position_rows(const Config& c);

struct Inputs {
  oracle::AttentionInputs<double> in;  // rounded to the config's precision
  Tensor4<double> dout;                // upstream gradient, rounded likewise (every row)
};
Inputs make_config_inputs(const Config& c, uint64_t seed);
// dout with the rows outside the position's range set to zero: the gradients are
// then those of the loss on the selected rows only.
Tensor4<double> masked_dout(const Config& c, const Tensor4<double>& dout);

// What a method (or an oracle) produced for one configuration.
struct Forward {
  bool available = true;
  std::string note;                // why not available, or what ran
  Tensor4<double> o;
  Tensor3<double> denom_ratio;      // LLA: unguarded d/omega per row; empty otherwise
  Tensor<uint8_t, 3> cg_converged;  // CG: 1 where the stopping rule fired; empty otherwise
  Tensor<int32_t, 3> cg_iterations; // CG: iterations each row was active
  Tensor3<double> condition;        // the LLA oracle: kappa(Sigma_i); empty otherwise
};
struct Backward {
  bool available = true;
  std::string note;
  oracle::Gradients<double> grads;  // dr only for Parallax
};

// The methods as the sweep runs them; the tests substitute other functions (for
// instance the oracle itself, which must then measure exactly 0).
struct MethodFunctions {
  std::function<Forward(Method, const Config&, const oracle::AttentionInputs<double>&)> forward;
  std::function<Backward(Method, const Config&, const oracle::AttentionInputs<double>&, const Tensor4<double>& dout)>
      backward;
};
MethodFunctions emulated_methods();

// The fp64 oracle a method is judged against, on the same inputs.
Forward oracle_forward(Method m, const Config& c, const oracle::AttentionInputs<double>& in);
Backward oracle_backward(Method m, const Config& c, const oracle::AttentionInputs<double>& in,
                         const Tensor4<double>& dout);

// The GPU kernel's output, or available = false with the reason.
Forward gpu_parallax_forward(const Config& c, const oracle::AttentionInputs<double>& in);
// Whether this build and machine can run the kernel at all, and why not.
std::string gpu_availability();  // empty when available

struct Metrics {
  int64_t rows = 0;  // query rows measured
  double o_max_rel_err = 0;
  double o_rms_ratio = 0;
  double o_frac_rows_over_tol = 0;
  std::optional<double> cg_not_converged_frac, cg_mean_iters;
  std::optional<double> denom_sign_flip_frac;
  std::optional<double> dq_max_rel_err, dk_max_rel_err, dv_max_rel_err, dr_max_rel_err;
  std::optional<double> oracle_max_condition, oracle_min_denom_ratio;
  std::optional<double> grad_max_rel_err() const;
};

// Errors of `candidate` against `oracle` over the query rows `rows` (all heads and
// batch entries). Gradients are compared as whole tensors (the upstream gradient
// already selects the rows).
Metrics measure(const Forward& candidate, const Forward& oracle, const Backward* candidate_grads,
                const Backward* oracle_grads, KeyRange rows, double tolerance);

// One CSV row.
struct Result {
  Config config;
  Method method = Method::lla_cg;
  bool available = true;
  std::string note;
  Metrics metrics;
};

struct RunOptions {
  int jobs = 1;
  std::function<void(size_t done, size_t total, const Config&)> progress;  // may be empty
};

// Every configuration of the plan times every method: one Result each, in the order
// of plan.configs() then plan.methods.
std::vector<Result> run(const Plan& plan, const MethodFunctions& methods, const RunOptions& opt);

// --- outputs -------------------------------------------------------------------------

// The CSV columns, in order (docs/compare.md describes each).
const std::vector<std::string>& csv_columns();
std::string csv_text(const Plan& plan, const std::vector<Result>& results);
// Numbers as the CSV and the plot filters write them (%.12g; inf, -inf, nan).
std::string format_number(double x);

// One finding: a context ("[lambda] Output o, L=1024, D=64, ...") and one sentence per
// method, numbers included.
struct Finding {
  std::string topic;  // lambda, gradients, iterations, cg_tol, position, distribution, length, head_dim
  std::string context;
  std::vector<std::string> items;
};
std::vector<Finding> findings(const Plan& plan, const std::vector<Result>& results);

// The headline table: the first panel's output errors, one row per configuration of
// its varying axes, one column per method (and precision).
std::string headline_table(const Plan& plan, const std::vector<Result>& results);

struct PlotSpec {
  std::string file;      // relative to the output folder
  std::string title;
  std::string x_column;  // lambda or cg_iters
  std::string y_column;  // o_max_rel_err or grad_max_rel_err
  std::vector<std::pair<std::string, std::string>> where;  // column = value filters
  std::vector<std::string> series;                         // "method:precision"
};
std::vector<PlotSpec> plot_specs(const Plan& plan, const std::vector<Result>& results);

std::string json_summary(const Plan& plan, const std::vector<Result>& results, double elapsed_s,
                         const std::string& plots_status);
std::string markdown_report(const Plan& plan, const std::vector<Result>& results, double elapsed_s,
                            const std::vector<PlotSpec>& plots, const std::string& plots_status);

}  // namespace lla::compare
