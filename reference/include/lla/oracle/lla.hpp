#pragma once
// The oracle for local linear attention (LLA): a query-centred, weighted local
// linear regression per row (math: docs/math.md, section 7).
//
//   w_ij = exp(s_ij - m_i), s = c q.k      omega_i = sum_j w_ij
//   z_ij = k_j - q_i                        mu_i = sum_j w_ij z_ij
//   Sigma_i = sum_j w_ij z_ij z_ij^T + ridge_i I     ridge_i = lambda_i omega_i (or lambda_i)
//   rho_i = Sigma_i^-1 mu_i                 d_i = omega_i - mu_i.rho_i   (then the guard)
//   S_ij = w_ij (1 - rho_i.z_ij) / d_i      o_i = sum_j S_ij v_j
//
// Every row is solved on its own, with explicit centring (never the uncentred
// moments, which cancel), in the scalar type of the instantiation. Solvers:
// direct (LDL^T), the denominator-free form, and conjugate gradients exactly as
// public kernels run it (with optional rounding of the matvec operands to model a
// GPU). The backward is the exact gradient (with the ridge term c_i) or the
// stop-gradient variant of public FlashLLA code.

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lla/oracle/detail/views.hpp"
#include "lla/oracle/types.hpp"

namespace lla::oracle {

template <class Scalar>
using DenseMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <class Scalar>
using DenseVector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

// The outcome of one conjugate-gradient solve.
template <class Scalar>
struct CgReport {
  DenseVector<Scalar> x;
  int64_t iterations = 0;  // iterations in which the row was still active
  bool converged = false;  // stopped by the tolerance (not by NaN/Inf, not by the iteration cap)
  bool non_finite = false; // stopped because the residual became NaN/Inf
};

template <class Scalar>
struct LlaForwardResult {
  Tensor4<Scalar> o;            // (B, Lq, Hq, D); 0 on empty rows
  Tensor4<Scalar> rho;          // (B, Lq, Hq, D) the solved probe
  Tensor3<Scalar> denom;        // d_i after the guard (what S divides by)
  Tensor3<Scalar> denom_ratio;  // unguarded d_i / omega_i: in (0, 1] in exact math for the full block
  Tensor3<Scalar> omega;        // sum_j exp(s_ij - m_i)
  Tensor3<Scalar> row_max;      // m_i, natural units; -inf on empty rows
  Tensor3<Scalar> condition;    // 2-norm condition number of Sigma_i (when diagnostics are on)
  Tensor<int32_t, 3> cg_iterations;  // CG only
  Tensor3<Scalar> cg_residual;       // CG only: ||Sigma x - mu|| / ||mu|| with the exact Sigma
  Tensor<uint8_t, 3> cg_converged;   // CG only: 1 if the stopping rule fired
};

struct LlaForwardOptions {
  bool diagnostics = true;  // condition numbers (an eigen-decomposition per row)
};

// One row written out: what the tests inspect.
template <class Scalar>
struct LlaRow {
  std::vector<int64_t> keys;
  DenseVector<Scalar> w;    // exp(s - m) over the keys
  DenseMatrix<Scalar> Z;    // n x D: k_j - q_i
  DenseMatrix<Scalar> V;    // n x D
  DenseMatrix<Scalar> Sigma;
  DenseVector<Scalar> mu, rho;
  DenseVector<Scalar> S;    // weights: o = S^T V
  DenseVector<Scalar> o;
  Scalar omega = 0, ridge = 0, lambda = 0, d = 0, d_guarded = 0, row_max = 0;
  CgReport<Scalar> cg;      // filled by the CG solver
  bool empty() const { return keys.empty(); }
};

template <class Scalar>
struct LlaRowGrad {
  DenseVector<Scalar> F;   // dL/ds_ij (per key)
  DenseVector<Scalar> U;   // Sigma^-1 T (the second solve)
  Scalar c = 0;            // the ridge term lambda rho.(U - beta rho) (0 in stop-gradient mode)
  Scalar beta = 0;
};

namespace detail {

template <class Scalar>
Scalar guard_denominator(Scalar d, const LlaParams& p) {
  const Scalar eps = static_cast<Scalar>(p.epsilon);
  switch (p.guard) {
    case DenominatorGuard::none: return d;
    case DenominatorGuard::sign: return d + eps * Scalar(d > Scalar(0) ? 1 : (d < Scalar(0) ? -1 : 0));
    case DenominatorGuard::nonnegative_up: return d + eps * Scalar(d >= Scalar(0) ? 1 : -1);
  }
  return d;
}

template <class Scalar, class Derived>
DenseVector<Scalar> round_vector(Precision prec, const Eigen::MatrixBase<Derived>& x) {
  DenseVector<Scalar> y(x.size());
  for (Eigen::Index i = 0; i < x.size(); ++i) y(i) = round_to(prec, Scalar(x(i)));
  return y;
}

template <class Scalar>
class LlaOracle {
 public:
  LlaOracle(const Problem& p, const AttentionInputs<Scalar>& in)
      : p_(p), in_(in), prm_(p.lla), c_(static_cast<Scalar>(p.softmax_scale())) {}

  // With the lambda*omega ridge and no guard, scaling all weights of a row changes
  // nothing, so the subtracted row max m_i drops out. A lambda*I ridge, or a guard
  // eps*sgn(d) (d scales with the weights, eps does not), breaks that invariance.
  bool depends_on_max_shift() const {
    const bool guarded = prm_.guard != DenominatorGuard::none && prm_.epsilon > 0;
    return prm_.ridge == RidgeConvention::lambda || guarded;
  }

  bool block_diagonal() const { return prm_.block_size > 0 && prm_.block_size != p_.head_dim; }

  Scalar row_lambda(const Sequence& seq, int64_t h, int64_t i) const {
    if (in_.lambda.empty()) return static_cast<Scalar>(prm_.lambda);
    return in_.lambda(seq.batch, seq.q_begin + i, h);
  }

  // Everything up to Sigma and mu. weight_scale multiplies every w_ij of the row
  // (a test hook: with the lambda*omega ridge the result must not change).
  LlaRow<Scalar> setup(const Sequence& seq, int64_t h, int64_t i, Scalar weight_scale = Scalar(1)) const {
    using std::exp;
    LlaRow<Scalar> r;
    const KeyRange range = p_.key_range(seq, i);
    const int64_t D = p_.head_dim, n = range.size(), g = p_.kv_head(h), b = seq.batch;
    r.lambda = row_lambda(seq, h, i);
    if (n == 0) return r;
    for (int64_t j = range.begin; j < range.end; ++j) r.keys.push_back(j);
    const DenseMatrix<Scalar> K = rows(in_.k, b, g, range.begin, n);
    r.V = rows(in_.v, b, g, range.begin, n);
    const DenseVector<Scalar> q = rows(in_.q, b, h, seq.q_begin + i, 1).transpose();
    const DenseVector<Scalar> s = c_ * (K * q);
    r.row_max = s.maxCoeff();
    r.w.resize(n);
    for (int64_t j = 0; j < n; ++j) r.w(j) = weight_scale * exp(s(j) - r.row_max);
    r.omega = r.w.sum();
    r.Z = K.rowwise() - q.transpose();
    r.mu = r.Z.transpose() * r.w;
    r.ridge = prm_.ridge == RidgeConvention::lambda_omega ? r.lambda * r.omega : r.lambda;
    r.Sigma = r.Z.transpose() * r.w.asDiagonal() * r.Z;
    r.Sigma.diagonal().array() += r.ridge;
    if (block_diagonal()) {
      const int64_t bs = prm_.block_size;
      for (int64_t a = 0; a < D; ++a)
        for (int64_t c = 0; c < D; ++c)
          if (a / bs != c / bs) r.Sigma(a, c) = Scalar(0);
    }
    return r;
  }

  DenseVector<Scalar> solve_direct(const DenseMatrix<Scalar>& Sigma, const DenseVector<Scalar>& y) const {
    // Sigma is SPD for ridge > 0 (block-diagonal zeros keep it so); LDL^T also
    // copes with a semi-definite Sigma at ridge = 0 where the system is consistent.
    return Sigma.ldlt().solve(y);
  }

  // The key-side operand rows of the matvec: z_j (centred) or k_j = z_j + q
  // (uncentred), rounded to the matvec precision. They do not change between CG
  // iterations, so solve_cg forms them once (one aligned vector per key, so every
  // dot product below sums in the same order as a freshly built vector would).
  std::vector<DenseVector<Scalar>> matvec_operands(const LlaRow<Scalar>& r, const DenseVector<Scalar>& q) const {
    const Precision P = prm_.cg.matvec_precision;
    const bool centred = prm_.cg.form == MatvecForm::centred;
    std::vector<DenseVector<Scalar>> rows_out(r.keys.size());
    for (size_t j = 0; j < rows_out.size(); ++j) {
      DenseVector<Scalar> row = r.Z.row(static_cast<Eigen::Index>(j)).transpose();
      if (!centred) row += q;
      rows_out[j] = round_vector<Scalar>(P, row);
    }
    return rows_out;
  }

  // Sigma p, matrix-free, with the operand rounding of CgSettings. `operands` are
  // matvec_operands(r, q).
  DenseVector<Scalar> matvec(const LlaRow<Scalar>& r, const std::vector<DenseVector<Scalar>>& operands,
                             const DenseVector<Scalar>& p, const DenseVector<Scalar>& q,
                             const DenseVector<Scalar>& mu_tilde) const {
    const Precision P = prm_.cg.matvec_precision;
    const Precision SP = P == Precision::fp64 ? Precision::fp64 : Precision::fp32;
    const DenseVector<Scalar> u = round_vector<Scalar>(P, p);
    const bool centred = prm_.cg.form == MatvecForm::centred;
    DenseVector<Scalar> acc = DenseVector<Scalar>::Zero(p.size());
    for (size_t j = 0; j < operands.size(); ++j) {
      const Scalar dot = round_to(SP, Scalar(operands[j].dot(u)));
      const Scalar y = round_to(P, Scalar(r.w(static_cast<Eigen::Index>(j)) * dot));
      acc += y * operands[j];
    }
    acc = round_vector<Scalar>(SP, acc);
    if (!centred) {
      const Scalar pq = round_to(SP, Scalar(p.dot(q)));
      const Scalar pm = round_to(SP, Scalar(p.dot(mu_tilde)));
      acc += -pq * mu_tilde - pm * q + (r.omega * pq) * q;
      acc = round_vector<Scalar>(SP, acc);
    }
    return round_vector<Scalar>(SP, acc + r.ridge * p);
  }

  // Conjugate gradients as public kernels run them: x0 = 0, squared-norm stopping
  // rule, +1e-10 in the step denominator, fixed iteration budget, converged rows
  // frozen, NaN/Inf stops a row after the bad update.
  CgReport<Scalar> solve_cg(const LlaRow<Scalar>& r, const DenseVector<Scalar>& rhs, const DenseVector<Scalar>& q) const {
    using std::isfinite;
    const Precision SP = prm_.cg.matvec_precision == Precision::fp64 ? Precision::fp64 : Precision::fp32;
    auto rs = [&](Scalar x) { return round_to(SP, x); };
    const int64_t D = p_.head_dim;
    const DenseVector<Scalar> mu_tilde = round_vector<Scalar>(SP, DenseVector<Scalar>(r.mu + r.omega * q));
    DenseVector<Scalar> inv_diag = DenseVector<Scalar>::Ones(D);
    if (prm_.cg.jacobi) {
      for (int64_t d = 0; d < D; ++d) inv_diag(d) = rs(Scalar(1) / rs(r.Sigma(d, d)));
    }
    CgReport<Scalar> rep;
    rep.x = DenseVector<Scalar>::Zero(D);
    DenseVector<Scalar> res = round_vector<Scalar>(SP, rhs);
    DenseVector<Scalar> z = round_vector<Scalar>(SP, DenseVector<Scalar>(res.cwiseProduct(inv_diag)));
    DenseVector<Scalar> p = z;
    const Scalar nu0 = rs(res.dot(z));
    bool active = nu0 != Scalar(0);
    const Scalar atol = static_cast<Scalar>(prm_.cg.atol), rtol = static_cast<Scalar>(prm_.cg.rtol);
    const Scalar threshold = rtol * std::max(atol, nu0);
    if (!active) rep.converged = true;  // zero right-hand side: x = 0 is exact
    const auto operands = matvec_operands(r, q);
    for (int64_t it = 0; it < prm_.cg.max_iters; ++it) {
      // A frozen row with finite state would only add 0 * p to x from here on (the
      // kernels keep iterating; the result is the same), so the emulation stops.
      // After a NaN/Inf stop the remaining iterations still run: 0 * Inf poisons x.
      if (!active && !rep.non_finite) break;
      const DenseVector<Scalar> Sp = matvec(r, operands, p, q, mu_tilde);
      const Scalar nu = rs(res.dot(z));
      const Scalar alpha = active ? rs(nu / rs(p.dot(Sp) + Scalar(1e-10))) : Scalar(0);
      if (active) ++rep.iterations;
      rep.x = round_vector<Scalar>(SP, DenseVector<Scalar>(rep.x + alpha * p));
      res = round_vector<Scalar>(SP, DenseVector<Scalar>(res - alpha * Sp));
      z = round_vector<Scalar>(SP, DenseVector<Scalar>(res.cwiseProduct(inv_diag)));
      const Scalar nu_new = rs(res.dot(z));
      const bool bad = !isfinite(nu_new);
      const bool done = bad || nu_new <= threshold;
      if (active && done) {
        rep.converged = !bad;
        rep.non_finite = bad;
      }
      active = active && !done;
      const Scalar beta = active ? rs(nu_new / nu) : Scalar(0);
      p = round_vector<Scalar>(SP, DenseVector<Scalar>(z + beta * p));
    }
    return rep;
  }

  DenseVector<Scalar> solve(LlaRow<Scalar>& r, const DenseVector<Scalar>& rhs, const DenseVector<Scalar>& q,
                            CgReport<Scalar>* report) const {
    if (prm_.solver == LlaSolver::cg) {
      auto rep = solve_cg(r, rhs, q);
      DenseVector<Scalar> x = rep.x;
      if (report) *report = std::move(rep);
      return x;
    }
    return solve_direct(r.Sigma, rhs);
  }

  LlaRow<Scalar> row(const Sequence& seq, int64_t h, int64_t i, Scalar weight_scale = Scalar(1)) const {
    LlaRow<Scalar> r = setup(seq, h, i, weight_scale);
    if (r.empty()) return r;
    const DenseVector<Scalar> q = rows(in_.q, seq.batch, h, seq.q_begin + i, 1).transpose();
    if (prm_.solver == LlaSolver::denominator_free) {
      // Identity 4: with p = w / omega, A = C + (ridge / omega) I, delta = kbar - q,
      // o = vbar + Sigma_KV A^-1 (q - kbar); rho = A^-1 delta / (1 + eta), d = omega / (1 + eta).
      const DenseVector<Scalar> pw = r.w / r.omega;
      const DenseVector<Scalar> kbar = (r.Z.transpose() * pw) + q;  // sum p k = sum p z + q
      const DenseVector<Scalar> vbar = r.V.transpose() * pw;
      const DenseMatrix<Scalar> Kc = (r.Z.rowwise() + (q - kbar).transpose());  // k_j - kbar
      const DenseMatrix<Scalar> Vc = r.V.rowwise() - vbar.transpose();
      DenseMatrix<Scalar> A = Kc.transpose() * pw.asDiagonal() * Kc;
      A.diagonal().array() += r.ridge / r.omega;
      const DenseVector<Scalar> delta = kbar - q;
      const DenseVector<Scalar> x = A.ldlt().solve(DenseVector<Scalar>(-delta));  // A^-1 (q - kbar)
      const Scalar eta = -delta.dot(x);
      r.rho = -x / (Scalar(1) + eta);
      r.d = r.omega / (Scalar(1) + eta);
      r.d_guarded = guard_denominator(r.d, prm_);
      const DenseVector<Scalar> kx = Kc * x;
      r.S = pw.cwiseProduct((DenseVector<Scalar>::Ones(kx.size()) + kx));
      r.o = vbar + Vc.transpose() * (pw.cwiseProduct(kx));
      return r;
    }
    r.rho = solve(r, r.mu, q, &r.cg);
    r.d = r.omega - r.mu.dot(r.rho);
    r.d_guarded = guard_denominator(r.d, prm_);
    const DenseVector<Scalar> rho_used = round_vector<Scalar>(prm_.output_precision, r.rho);
    const DenseVector<Scalar> a = DenseVector<Scalar>::Ones(r.Z.rows()) - r.Z * rho_used;
    r.S = round_vector<Scalar>(prm_.output_precision, DenseVector<Scalar>(r.w.cwiseProduct(a) / r.d_guarded));
    r.o = r.V.transpose() * r.S;
    if (prm_.output_precision != Precision::fp64) {
      r.o = round_vector<Scalar>(Precision::fp32, r.o);  // fp32 accumulation of S V
    }
    return r;
  }

  // The row's backward (docs/math.md, section 7.4). g = dL/do_i.
  LlaRowGrad<Scalar> row_grad(LlaRow<Scalar>& r, const DenseVector<Scalar>& g, const DenseVector<Scalar>& q) const {
    LlaRowGrad<Scalar> out;
    const int64_t n = static_cast<int64_t>(r.keys.size());
    const Scalar d = r.d_guarded;
    const DenseVector<Scalar> G = r.V * g;                      // g.v_j
    const DenseVector<Scalar> a = DenseVector<Scalar>::Ones(n) - r.Z * r.rho;
    const DenseVector<Scalar> E = G.cwiseProduct(r.w) / d;
    out.beta = G.dot(r.S) / d;
    const DenseVector<Scalar> T = r.Z.transpose() * E;
    out.U = solve(r, T, q, nullptr);
    const DenseVector<Scalar> Delta = -out.U + Scalar(2) * out.beta * r.rho;
    const DenseVector<Scalar> rR = r.Z * r.rho, rU = r.Z * out.U, rD = r.Z * Delta;
    const bool exact = prm_.gradient == GradientMode::exact;
    if (exact && prm_.ridge == RidgeConvention::lambda_omega) {
      out.c = r.lambda * r.rho.dot(out.U - out.beta * r.rho);
    }
    out.F.resize(n);
    for (int64_t j = 0; j < n; ++j) {
      out.F(j) = r.w(j) * (G(j) * a(j) / d - out.beta + out.c + rD(j) + rU(j) * rR(j) - out.beta * rR(j) * rR(j));
    }
    if (exact && depends_on_max_shift()) {
      // The forward then depends on the max shift m_i = max_j s_ij, whose derivative
      // is 1 at the argmax: dL/dm = -sum_j F_ij goes there.
      Eigen::Index argmax = 0;
      const DenseVector<Scalar> s = c_ * ((r.Z.rowwise() + q.transpose()) * q);
      s.maxCoeff(&argmax);
      out.F(argmax) -= out.F.sum();
    }
    return out;
  }

  LlaForwardResult<Scalar> forward(const LlaForwardOptions& opt) const {
    const auto qs = q_shape(p_);
    const auto rs = row_shape(p_);
    LlaForwardResult<Scalar> out;
    out.o = Tensor4<Scalar>(qs);
    out.rho = Tensor4<Scalar>(qs);
    out.denom = Tensor3<Scalar>(rs);
    out.denom_ratio = Tensor3<Scalar>(rs);
    out.omega = Tensor3<Scalar>(rs);
    out.row_max = Tensor3<Scalar>(rs, -std::numeric_limits<Scalar>::infinity());
    if (opt.diagnostics) out.condition = Tensor3<Scalar>(rs);
    const bool cg = prm_.solver == LlaSolver::cg;
    if (cg) {
      out.cg_iterations = Tensor<int32_t, 3>(rs);
      out.cg_residual = Tensor3<Scalar>(rs);
      out.cg_converged = Tensor<uint8_t, 3>(rs);
    }
    for (const auto& seq : p_.sequences()) {
      for (int64_t h = 0; h < p_.heads_q; ++h) {
        for (int64_t i = 0; i < seq.q_len; ++i) {
          LlaRow<Scalar> r = row(seq, h, i);
          if (r.empty()) continue;
          const int64_t b = seq.batch, l = seq.q_begin + i;
          detail::rows(out.o, b, h, l, 1) = r.o.transpose();
          detail::rows(out.rho, b, h, l, 1) = r.rho.transpose();
          out.denom(b, l, h) = r.d_guarded;
          out.denom_ratio(b, l, h) = r.d / r.omega;
          out.omega(b, l, h) = r.omega;
          out.row_max(b, l, h) = r.row_max;
          if (opt.diagnostics) out.condition(b, l, h) = condition_number(r.Sigma);
          if (cg) {
            using std::sqrt;
            out.cg_iterations(b, l, h) = static_cast<int32_t>(r.cg.iterations);
            out.cg_converged(b, l, h) = r.cg.converged ? 1 : 0;
            const Scalar mu_norm = r.mu.norm();
            out.cg_residual(b, l, h) =
                mu_norm > Scalar(0) ? Scalar((r.Sigma * r.rho - r.mu).norm() / mu_norm) : Scalar(0);
          }
        }
      }
    }
    return out;
  }

  Gradients<Scalar> backward(const Tensor4<Scalar>& dout) const {
    Gradients<Scalar> gr;
    gr.dq = Tensor4<Scalar>(q_shape(p_));
    gr.dk = Tensor4<Scalar>(kv_shape(p_));
    gr.dv = Tensor4<Scalar>(kv_shape(p_));
    for (const auto& seq : p_.sequences()) {
      for (int64_t h = 0; h < p_.heads_q; ++h) {
        const int64_t g = p_.kv_head(h), b = seq.batch;
        for (int64_t i = 0; i < seq.q_len; ++i) {
          LlaRow<Scalar> r = row(seq, h, i);
          if (r.empty()) continue;
          const int64_t l = seq.q_begin + i, n = static_cast<int64_t>(r.keys.size()), j0 = r.keys.front();
          const DenseVector<Scalar> q = rows(in_.q, b, h, l, 1).transpose();
          const DenseVector<Scalar> gi = rows(dout, b, h, l, 1).transpose();
          const LlaRowGrad<Scalar> rg = row_grad(r, gi, q);
          const DenseVector<Scalar> G = r.V * gi;
          const DenseVector<Scalar> E = G.cwiseProduct(r.w) / r.d_guarded;
          const DenseVector<Scalar> Delta = -rg.U + Scalar(2) * rg.beta * r.rho;
          const DenseVector<Scalar> rR = r.Z * r.rho, rD = r.Z * Delta;
          const DenseMatrix<Scalar> K = r.Z.rowwise() + q.transpose();
          // dv_j = S_ij g_i
          rows(gr.dv, b, g, j0, n) += r.S * gi.transpose();
          // dq_i = c sum_j F_j k_j + tau rho - omega Delta + (w.rD) rho - (w.rR) U
          const DenseVector<Scalar> dq = c_ * (K.transpose() * rg.F) + E.sum() * r.rho - r.omega * Delta +
                                         r.w.dot(rD) * r.rho - r.w.dot(rR) * rg.U;
          rows(gr.dq, b, h, l, 1) = dq.transpose();
          // dk_j = c F_j q - E_j rho + w_j Delta - w_j rD_j rho + w_j rR_j U
          DenseMatrix<Scalar> dk = c_ * rg.F * q.transpose() - E * r.rho.transpose() + r.w * Delta.transpose() -
                                   r.w.cwiseProduct(rD) * r.rho.transpose() +
                                   r.w.cwiseProduct(rR) * rg.U.transpose();
          rows(gr.dk, b, g, j0, n) += dk;
        }
      }
    }
    return gr;
  }

  static Scalar condition_number(const DenseMatrix<Scalar>& Sigma) {
    using std::fabs;
    Eigen::SelfAdjointEigenSolver<DenseMatrix<Scalar>> es(Sigma, Eigen::EigenvaluesOnly);
    const auto& ev = es.eigenvalues();
    const Scalar lo = fabs(ev.minCoeff()), hi = fabs(ev.maxCoeff());
    if (lo == Scalar(0)) return std::numeric_limits<Scalar>::infinity();
    return hi / lo;
  }

 private:
  const Problem& p_;
  const AttentionInputs<Scalar>& in_;
  const LlaParams& prm_;
  Scalar c_;
};

template <class Scalar>
void check_lla_inputs(const Problem& problem, const AttentionInputs<Scalar>& in) {
  if (problem.variant != Variant::lla) {
    throw ProblemError(std::string("the LLA oracle needs variant = lla, got ") + to_string(problem.variant));
  }
  problem.validate();
  check_shape(in.q, q_shape(problem), "q", problem);
  check_shape(in.k, kv_shape(problem), "k", problem);
  check_shape(in.v, kv_shape(problem), "v", problem);
  if (!in.lambda.empty() && in.lambda.shape() != row_shape(problem)) {
    throw ProblemError("tensor lambda has shape " + shape_string(in.lambda.shape()) + " but the problem needs " +
                       shape_string(row_shape(problem)) + " (" + problem.describe() + ")");
  }
  for (const auto& x : in.lambda) {
    using std::isfinite;
    if (!isfinite(x) || x < Scalar(0)) throw ProblemError("per-row lambda must be finite and >= 0");
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------------
// Public entry points (problem.variant must be Variant::lla)
// ---------------------------------------------------------------------------------

template <class Scalar>
LlaForwardResult<Scalar> lla_forward(const Problem& problem, const AttentionInputs<Scalar>& in,
                                     const LlaForwardOptions& opt = {}) {
  detail::check_lla_inputs(problem, in);
  return detail::LlaOracle<Scalar>(problem, in).forward(opt);
}

// dq, dk, dv of L = sum(dout * o). Exact or stop-gradient per problem.lla.gradient.
// The block-diagonal variant has no backward (as in the public reference).
template <class Scalar>
Gradients<Scalar> lla_backward(const Problem& problem, const AttentionInputs<Scalar>& in,
                               const Tensor4<Scalar>& dout) {
  detail::check_lla_inputs(problem, in);
  detail::check_shape(dout, detail::q_shape(problem), "dout", problem);
  detail::LlaOracle<Scalar> oracle(problem, in);
  if (oracle.block_diagonal()) {
    throw ProblemError("the block-diagonal LLA variant is forward only (block_size " +
                       std::to_string(problem.lla.block_size) + " != head_dim " +
                       std::to_string(problem.head_dim) + ")");
  }
  return oracle.backward(dout);
}

// One row written out. weight_scale multiplies all of the row's weights w_ij
// (identity 7: with the lambda*omega ridge nothing changes).
template <class Scalar>
LlaRow<Scalar> lla_row(const Problem& problem, const AttentionInputs<Scalar>& in, const Sequence& seq, int64_t head,
                       int64_t row, Scalar weight_scale = Scalar(1)) {
  detail::check_lla_inputs(problem, in);
  return detail::LlaOracle<Scalar>(problem, in).row(seq, head, row, weight_scale);
}

template <class Scalar>
LlaRowGrad<Scalar> lla_row_grad(const Problem& problem, const AttentionInputs<Scalar>& in,
                                const Tensor4<Scalar>& dout, const Sequence& seq, int64_t head, int64_t row) {
  detail::check_lla_inputs(problem, in);
  detail::LlaOracle<Scalar> oracle(problem, in);
  auto r = oracle.row(seq, head, row);
  if (r.empty()) return {};
  const DenseVector<Scalar> q = detail::rows(in.q, seq.batch, head, seq.q_begin + row, 1).transpose();
  const DenseVector<Scalar> g = detail::rows(dout, seq.batch, head, seq.q_begin + row, 1).transpose();
  return oracle.row_grad(r, g, q);
}

}  // namespace lla::oracle
