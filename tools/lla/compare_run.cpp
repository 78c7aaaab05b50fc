// `lla compare`: the methods, their oracles, the error metrics and the sweep runner.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <future>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

#include "compare.hpp"
#include "lla/metrics.hpp"
#include "lla/oracle/attention.hpp"
#include "lla/oracle/lla.hpp"

namespace lla::compare {

namespace {

template <class T, int R>
Tensor<double, R> rounded(Precision p, const Tensor<T, R>& t) {
  Tensor<double, R> out(t.shape());
  for (int64_t i = 0; i < t.size(); ++i) out.data()[i] = round_to(p, static_cast<double>(t.data()[i]));
  return out;
}

// A method's outputs are stored in the config's precision (a bf16 kernel writes bf16);
// below that, fp32 arithmetic has already rounded them to fp32.
template <class T>
Forward lla_result(const oracle::LlaForwardResult<T>& r, Precision out) {
  Forward f;
  f.o = rounded(out, r.o);
  f.denom_ratio = tensor_cast<double>(r.denom_ratio);
  f.cg_converged = r.cg_converged;
  f.cg_iterations = r.cg_iterations;
  if (!r.condition.empty()) f.condition = tensor_cast<double>(r.condition);
  return f;
}

template <class T>
Backward grads_result(const oracle::Gradients<T>& g, Precision out) {
  Backward b;
  b.grads = {rounded(out, g.dq), rounded(out, g.dk), rounded(out, g.dv), rounded(out, g.dr)};
  return b;
}

// CG as the public kernels run it (scenarios::lla_bf16_cg): uncentred matvec, operands
// in the config's precision with fp32 state, rho and the weights rounded likewise.
Problem cg_problem(Method m, const Config& c) {
  Problem p = config_problem(c, Variant::lla);
  p.lla.solver = LlaSolver::cg;
  p.lla.cg.max_iters = c.cg_iters;
  p.lla.cg.atol = p.lla.cg.rtol = c.cg_tol;
  p.lla.cg.jacobi = m == Method::lla_cg_jacobi;
  p.lla.cg.form = MatvecForm::uncentred;
  p.lla.cg.matvec_precision = c.precision;
  p.lla.output_precision = c.precision;
  return p;
}

// Parallax and softmax as a kernel with inputs in P computes them: the oracle's own
// algorithm with products of P values accumulated in fp32 (the project's tolerance
// baseline), or the oracle itself at P = fp64. `run` takes the inputs to use.
template <class Run>
auto with_working_inputs(const Config& c, const oracle::AttentionInputs<double>& in, Run&& run) {
  return c.precision == Precision::fp64 ? run(in) : run(oracle::cast_inputs<float>(in));
}

Forward not_available(const std::string& why) {
  Forward f;
  f.available = false;
  f.note = why;
  return f;
}

Forward emulated_forward(Method m, const Config& c, const oracle::AttentionInputs<double>& in) {
  const Precision out = c.precision;
  const oracle::LlaForwardOptions no_diagnostics{false};
  switch (m) {
    case Method::lla_direct_fp32:
      return lla_result(oracle::lla_forward(config_problem(c, Variant::lla), oracle::cast_inputs<float>(in),
                                            no_diagnostics),
                        out);
    case Method::lla_cg:
    case Method::lla_cg_jacobi: return lla_result(oracle::lla_forward(cg_problem(m, c), in, no_diagnostics), out);
    case Method::parallax:
    case Method::softmax: {
      const Problem p = config_problem(c, oracle_variant(m));
      return with_working_inputs(c, in, [&](const auto& x) {
        Forward f;
        f.o = rounded(out, oracle::attention_forward(p, x).o);
        return f;
      });
    }
    case Method::parallax_gpu: return gpu_parallax_forward(c, in);
  }
  return not_available("unknown method");
}

Backward emulated_backward(Method m, const Config& c, const oracle::AttentionInputs<double>& in,
                           const Tensor4<double>& dout) {
  const Precision out = c.precision;
  switch (m) {
    case Method::lla_direct_fp32:
      return grads_result(oracle::lla_backward(config_problem(c, Variant::lla), oracle::cast_inputs<float>(in),
                                               tensor_cast<float>(dout)),
                          out);
    case Method::lla_cg:
    case Method::lla_cg_jacobi: return grads_result(oracle::lla_backward(cg_problem(m, c), in, dout), out);
    case Method::parallax:
    case Method::softmax: {
      const Problem p = config_problem(c, oracle_variant(m));
      return with_working_inputs(c, in, [&](const auto& x) {
        using T = std::decay_t<decltype(x.q.data()[0])>;
        return grads_result(oracle::attention_backward(p, x, tensor_cast<T>(dout)), out);
      });
    }
    case Method::parallax_gpu: return Backward{false, "the decode kernel has no backward", {}};
  }
  return Backward{false, "unknown method", {}};
}

// --- metrics -------------------------------------------------------------------------

double rel_or_inf(double diff, double scale) {
  if (diff == 0) return 0;
  return scale > 0 ? diff / scale : std::numeric_limits<double>::infinity();
}

// |a - b| with the conventions of lla::max_abs_diff: equal infinities 0, NaN inf.
double abs_diff(double a, double b) {
  if (std::isfinite(a) && std::isfinite(b)) return std::fabs(a - b);
  return a == b ? 0.0 : std::numeric_limits<double>::infinity();
}

double sign_of(double x) { return x > 0 ? 1 : (x < 0 ? -1 : 0); }

}  // namespace

MethodFunctions emulated_methods() { return {emulated_forward, emulated_backward}; }

Forward oracle_forward(Method m, const Config& c, const oracle::AttentionInputs<double>& in) {
  const Problem p = config_problem(c, oracle_variant(m));
  if (p.variant == Variant::lla) return lla_result(oracle::lla_forward(p, in), Precision::fp64);
  return Forward{true, "", oracle::attention_forward(p, in).o, {}, {}, {}, {}};
}

Backward oracle_backward(Method m, const Config& c, const oracle::AttentionInputs<double>& in,
                         const Tensor4<double>& dout) {
  const Problem p = config_problem(c, oracle_variant(m));
  if (p.variant == Variant::lla) return grads_result(oracle::lla_backward(p, in, dout), Precision::fp64);
  return grads_result(oracle::attention_backward(p, in, dout), Precision::fp64);
}

std::optional<double> Metrics::grad_max_rel_err() const {
  std::optional<double> worst;
  for (const auto& g : {dq_max_rel_err, dk_max_rel_err, dv_max_rel_err, dr_max_rel_err})
    if (g) worst = std::max(worst.value_or(0.0), *g);
  return worst;
}

Metrics measure(const Forward& candidate, const Forward& oracle, const Backward* candidate_grads,
                const Backward* oracle_grads, KeyRange rows, double tolerance) {
  Metrics m;
  const Tensor4<double>& a = candidate.o;
  const Tensor4<double>& ref = oracle.o;
  if (a.shape() != ref.shape()) throw std::logic_error("lla compare: candidate and oracle shapes differ");
  const int64_t B = ref.dim(0), H = ref.dim(2), D = ref.dim(3);
  double scale = 0, worst = 0, sq_diff = 0, sq_ref = 0;
  std::vector<double> row_err;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = rows.begin; l < rows.end; ++l)
      for (int64_t h = 0; h < H; ++h) {
        double e = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double x = a(b, l, h, d), y = ref(b, l, h, d), diff = abs_diff(x, y);
          scale = std::max(scale, std::fabs(y));
          e = std::max(e, diff);
          sq_diff += diff * diff;
          sq_ref += y * y;
        }
        row_err.push_back(e);
        worst = std::max(worst, e);
      }
  m.rows = static_cast<int64_t>(row_err.size());
  m.o_max_rel_err = rel_or_inf(worst, scale);
  m.o_rms_ratio = rel_or_inf(std::sqrt(sq_diff), std::sqrt(sq_ref));  // RMS(out - ref) / RMS(ref)
  int64_t over = 0;
  for (double e : row_err) over += rel_or_inf(e, scale) > tolerance;
  m.o_frac_rows_over_tol = m.rows ? static_cast<double>(over) / static_cast<double>(m.rows) : 0.0;

  // Per-row diagnostics over the same rows.
  auto over_rows = [&](auto&& visit) {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = rows.begin; l < rows.end; ++l)
        for (int64_t h = 0; h < H; ++h) visit(b, l, h);
  };
  const double n = static_cast<double>(std::max<int64_t>(m.rows, 1));
  if (!candidate.cg_converged.empty()) {
    double not_converged = 0, iters = 0;
    over_rows([&](int64_t b, int64_t l, int64_t h) {
      not_converged += candidate.cg_converged(b, l, h) == 0;
      iters += candidate.cg_iterations(b, l, h);
    });
    m.cg_not_converged_frac = not_converged / n;
    m.cg_mean_iters = iters / n;
  }
  if (!candidate.denom_ratio.empty() && !oracle.denom_ratio.empty()) {
    double flips = 0;
    over_rows([&](int64_t b, int64_t l, int64_t h) {
      const double x = candidate.denom_ratio(b, l, h);
      flips += std::isnan(x) || sign_of(x) != sign_of(oracle.denom_ratio(b, l, h));
    });
    m.denom_sign_flip_frac = flips / n;
  }
  if (!oracle.denom_ratio.empty()) {
    double lo = std::numeric_limits<double>::infinity();
    over_rows([&](int64_t b, int64_t l, int64_t h) { lo = std::min(lo, oracle.denom_ratio(b, l, h)); });
    m.oracle_min_denom_ratio = lo;
  }
  if (!oracle.condition.empty()) {
    double hi = 0;
    over_rows([&](int64_t b, int64_t l, int64_t h) { hi = std::max(hi, oracle.condition(b, l, h)); });
    m.oracle_max_condition = hi;
  }
  if (candidate_grads && oracle_grads && candidate_grads->available) {
    const auto& cg = candidate_grads->grads;
    const auto& og = oracle_grads->grads;
    m.dq_max_rel_err = max_norm_relative_error(cg.dq, og.dq);
    m.dk_max_rel_err = max_norm_relative_error(cg.dk, og.dk);
    m.dv_max_rel_err = max_norm_relative_error(cg.dv, og.dv);
    if (!og.dr.empty()) m.dr_max_rel_err = max_norm_relative_error(cg.dr, og.dr);
  }
  return m;
}

// --- the runner ------------------------------------------------------------------------

namespace {

// Computes each value once, whichever thread asks first; the others wait for it.
// Configurations share most of their work (positions share forwards, lambdas share
// Parallax, iteration counts share the oracle), so this is most of the saving.
class Memo {
 public:
  template <class T, class F>
  std::shared_ptr<const T> get(const std::string& key, F&& compute) {
    std::shared_future<std::shared_ptr<const void>> fut;
    std::promise<std::shared_ptr<const void>> promise;
    bool mine = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = table_.find(key);
      if (it == table_.end()) {
        fut = promise.get_future().share();
        table_.emplace(key, fut);
        mine = true;
      } else {
        fut = it->second;
      }
    }
    if (mine) {
      try {
        promise.set_value(std::make_shared<const T>(compute()));
      } catch (...) {
        promise.set_exception(std::current_exception());
      }
    }
    return std::static_pointer_cast<const T>(fut.get());
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::shared_future<std::shared_ptr<const void>>> table_;
};

std::string inputs_key(const Config& c) {
  return std::string(to_string(c.precision)) + "|L" + std::to_string(c.length) + "|D" + std::to_string(c.head_dim) +
         "|" + to_string(c.distribution);
}

// Everything a method's result depends on, besides the position (which only selects
// rows, and the upstream gradient of the backward).
std::string method_key(Method m, const Config& c) {
  std::string key = inputs_key(c);
  if (is_lla(m)) key += "|lambda" + format_number(c.lambda);
  if (is_cg(m)) key += "|it" + std::to_string(c.cg_iters) + "|tol" + format_number(c.cg_tol);
  return key;
}

// The oracle of a method depends on its variant, the inputs and (LLA) lambda.
std::string oracle_key(Method m, const Config& c) {
  std::string key = std::string(to_string(oracle_variant(m))) + "|" + inputs_key(c);
  if (is_lla(m)) key += "|lambda" + format_number(c.lambda);
  return key;
}

}  // namespace

std::vector<Result> run(const Plan& plan, const MethodFunctions& methods, const RunOptions& opt) {
  const auto configs = plan.configs();
  std::vector<Result> results(configs.size() * plan.methods.size());
  Memo memo;
  std::atomic<size_t> next{0}, done{0};
  std::mutex progress_mutex;
  std::exception_ptr failure;

  auto work = [&](const Config& c, size_t index) {
    const auto inputs =
        memo.get<Inputs>("inputs|" + inputs_key(c), [&] { return make_config_inputs(c, plan.seed); });
    const auto dout = memo.get<Tensor4<double>>("dout|" + inputs_key(c) + "|" + to_string(c.position),
                                                [&] { return masked_dout(c, inputs->dout); });
    const KeyRange rows = position_rows(c);
    for (size_t k = 0; k < plan.methods.size(); ++k) {
      const Method m = plan.methods[k];
      const std::string pos = std::string("|") + to_string(c.position);
      const auto cfwd = memo.get<Forward>(std::string("fwd|") + to_string(m) + "|" + method_key(m, c),
                                          [&] { return methods.forward(m, c, inputs->in); });
      Result& r = results[index * plan.methods.size() + k];
      r.config = c;
      r.method = m;
      r.available = cfwd->available;
      r.note = cfwd->note;
      if (!cfwd->available) continue;
      const auto ofwd = memo.get<Forward>("ofwd|" + oracle_key(m, c), [&] { return oracle_forward(m, c, inputs->in); });
      std::shared_ptr<const Backward> obwd, cbwd;
      if (plan.gradients) {
        cbwd = memo.get<Backward>(std::string("bwd|") + to_string(m) + "|" + method_key(m, c) + pos,
                                  [&] { return methods.backward(m, c, inputs->in, *dout); });
        if (cbwd->available) {
          obwd = memo.get<Backward>("obwd|" + oracle_key(m, c) + pos,
                                    [&] { return oracle_backward(m, c, inputs->in, *dout); });
        } else if (!cbwd->note.empty()) {
          r.note += (r.note.empty() ? "" : "; ") + cbwd->note;
        }
      }
      r.metrics = measure(*cfwd, *ofwd, cbwd && cbwd->available ? cbwd.get() : nullptr, obwd.get(), rows,
                          plan.tolerance);
    }
  };

  auto worker = [&] {
    for (size_t i; (i = next++) < configs.size();) {
      try {
        work(configs[i], i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        if (!failure) failure = std::current_exception();
        next = configs.size();
        return;
      }
      const size_t d = ++done;
      if (opt.progress) {
        std::lock_guard<std::mutex> lock(progress_mutex);
        opt.progress(d, configs.size(), configs[i]);
      }
    }
  };
  const int jobs = std::max(1, std::min<int>(opt.jobs, static_cast<int>(std::max<size_t>(configs.size(), 1))));
  std::vector<std::thread> pool;
  for (int j = 1; j < jobs; ++j) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  return results;
}

}  // namespace lla::compare
