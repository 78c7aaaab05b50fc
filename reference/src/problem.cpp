#include "lla/problem.hpp"

#include <cmath>
#include <limits>
#include <sstream>

namespace lla {

const char* to_string(Variant v) {
  switch (v) {
    case Variant::softmax: return "softmax";
    case Variant::parallax: return "parallax";
    case Variant::lla: return "lla";
  }
  return "unknown";
}

const char* to_string(RidgeConvention v) { return v == RidgeConvention::lambda_omega ? "lambda_omega" : "lambda"; }
const char* to_string(DenominatorGuard v) {
  switch (v) {
    case DenominatorGuard::none: return "none";
    case DenominatorGuard::sign: return "sign";
    case DenominatorGuard::nonnegative_up: return "nonnegative_up";
  }
  return "unknown";
}
const char* to_string(LlaSolver v) {
  switch (v) {
    case LlaSolver::direct: return "direct";
    case LlaSolver::denominator_free: return "denominator_free";
    case LlaSolver::cg: return "cg";
  }
  return "unknown";
}
const char* to_string(GradientMode v) { return v == GradientMode::exact ? "exact" : "stop_gradient"; }
const char* to_string(MatvecForm v) { return v == MatvecForm::centred ? "centred" : "uncentred"; }

Problem Problem::dense(int64_t batch, int64_t seqlen_q, int64_t seqlen_k, int64_t heads_q, int64_t heads_kv,
                       int64_t head_dim, Variant variant) {
  Problem p;
  p.batch = batch;
  p.seqlen_q = seqlen_q;
  p.seqlen_k = seqlen_k;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = head_dim;
  p.variant = variant;
  return p;
}

double Problem::softmax_scale() const {
  return scale ? *scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

namespace {

bool product_fits(std::initializer_list<int64_t> factors) {
  int64_t acc = 1;
  for (int64_t f : factors) {
    if (__builtin_mul_overflow(acc, f, &acc)) return false;
  }
  return true;
}

std::string join(const std::vector<int32_t>& v) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  os << ']';
  return os.str();
}

// Checks one cu_seqlens array; returns an error message or empty.
std::optional<std::string> check_offsets(const char* name, const std::vector<int32_t>& cu,
                                         int64_t total, const char* total_name) {
  if (cu.size() < 2) {
    return std::string(name) + " needs at least 2 entries (N+1 offsets for N >= 1 sequences), got " +
           std::to_string(cu.size());
  }
  if (cu.front() != 0) return std::string(name) + "[0] must be 0, got " + std::to_string(cu.front());
  for (size_t n = 1; n < cu.size(); ++n) {
    if (cu[n] < cu[n - 1]) {
      return std::string(name) + " must be non-decreasing, but " + name + "[" + std::to_string(n) +
             "] = " + std::to_string(cu[n]) + " < " + name + "[" + std::to_string(n - 1) +
             "] = " + std::to_string(cu[n - 1]);
    }
  }
  if (cu.back() != total) {
    return std::string(name) + " must end at " + total_name + " = " + std::to_string(total) +
           ", got " + std::to_string(cu.back());
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> Problem::check() const {
  auto positive = [](int64_t v) { return v >= 1; };
  if (!positive(batch)) return "batch must be >= 1, got " + std::to_string(batch);
  if (seqlen_q < 0) return "seqlen_q must be >= 0, got " + std::to_string(seqlen_q);
  if (seqlen_k < 0) return "seqlen_k must be >= 0, got " + std::to_string(seqlen_k);
  if (!positive(heads_q)) return "heads_q must be >= 1, got " + std::to_string(heads_q);
  if (!positive(heads_kv)) return "heads_kv must be >= 1, got " + std::to_string(heads_kv);
  if (!positive(head_dim)) return "head_dim must be >= 1, got " + std::to_string(head_dim);
  if (heads_q % heads_kv != 0) {
    return "heads_q (" + std::to_string(heads_q) + ") must be a multiple of heads_kv (" +
           std::to_string(heads_kv) + ")";
  }
  if (!product_fits({batch, seqlen_q, heads_q, head_dim})) {
    return "q has more than 2^63 elements (batch*seqlen_q*heads_q*head_dim overflows int64)";
  }
  if (!product_fits({batch, seqlen_k, heads_kv, head_dim})) {
    return "k/v have more than 2^63 elements (batch*seqlen_k*heads_kv*head_dim overflows int64)";
  }
  // The dense logit block of one (sequence, head) is formed in the oracle.
  if (!product_fits({seqlen_q, seqlen_k})) return "seqlen_q*seqlen_k overflows int64";
  if (scale && !std::isfinite(*scale)) return "scale must be finite";
  if (has_window() && !causal) {
    return "a sliding window (window = " + std::to_string(window) +
           ") requires causal = true: the window is defined relative to the causal diagonal";
  }

  if (is_varlen()) {
    if (batch != 1) return "varlen (cu_seqlens_q set) requires batch = 1, got " + std::to_string(batch);
    if (!seqused_k.empty() || !cache_start.empty()) {
      return "seqused_k/cache_start are decode options and cannot be combined with cu_seqlens";
    }
    if (auto e = check_offsets("cu_seqlens_q", cu_seqlens_q, seqlen_q, "seqlen_q")) return e;
    if (cu_seqlens_k.empty()) {
      if (seqlen_k != seqlen_q) {
        return "without cu_seqlens_k the packed key count must equal the query count (seqlen_k = " +
               std::to_string(seqlen_k) + ", seqlen_q = " + std::to_string(seqlen_q) + ")";
      }
    } else {
      if (cu_seqlens_k.size() != cu_seqlens_q.size()) {
        return "cu_seqlens_k has " + std::to_string(cu_seqlens_k.size()) +
               " entries but cu_seqlens_q has " + std::to_string(cu_seqlens_q.size());
      }
      if (auto e = check_offsets("cu_seqlens_k", cu_seqlens_k, seqlen_k, "seqlen_k")) return e;
    }
  } else if (!cu_seqlens_k.empty()) {
    return "cu_seqlens_k is set but cu_seqlens_q is not";
  }

  if (!seqused_k.empty()) {
    if (static_cast<int64_t>(seqused_k.size()) != batch) {
      return "seqused_k has " + std::to_string(seqused_k.size()) + " entries, expected batch = " +
             std::to_string(batch);
    }
    for (size_t b = 0; b < seqused_k.size(); ++b) {
      if (seqused_k[b] < 0 || seqused_k[b] > seqlen_k) {
        return "seqused_k[" + std::to_string(b) + "] = " + std::to_string(seqused_k[b]) +
               " is outside [0, seqlen_k = " + std::to_string(seqlen_k) + "]";
      }
    }
  }
  if (!cache_start.empty()) {
    if (static_cast<int64_t>(cache_start.size()) != batch) {
      return "cache_start has " + std::to_string(cache_start.size()) + " entries, expected batch = " +
             std::to_string(batch);
    }
    for (size_t b = 0; b < cache_start.size(); ++b) {
      const int64_t hi = seqused_k.empty() ? seqlen_k : seqused_k[b];
      if (cache_start[b] < 0 || cache_start[b] > hi) {
        return "cache_start[" + std::to_string(b) + "] = " + std::to_string(cache_start[b]) +
               " is outside [0, " + std::to_string(hi) + "] (the end of that sequence's keys)";
      }
    }
  }
  if (variant == Variant::lla) {
    const LlaParams& l = lla;
    if (!std::isfinite(l.lambda) || l.lambda < 0) return "lla.lambda must be finite and >= 0, got " + std::to_string(l.lambda);
    if (!std::isfinite(l.epsilon) || l.epsilon < 0) return "lla.epsilon must be finite and >= 0";
    if (l.block_size < 0 || (l.block_size > 0 && head_dim % l.block_size != 0)) {
      return "lla.block_size (" + std::to_string(l.block_size) + ") must divide head_dim (" +
             std::to_string(head_dim) + ")";
    }
    const bool blocked = l.block_size > 0 && l.block_size != head_dim;
    if (blocked && l.solver != LlaSolver::direct) {
      return std::string("the block-diagonal LLA variant is solved directly; solver ") + to_string(l.solver) +
             " is not available for it";
    }
    if (l.cg.max_iters < 0) return "lla.cg.max_iters must be >= 0";
    if (!(l.cg.atol >= 0) || !(l.cg.rtol >= 0)) return "lla.cg.atol and lla.cg.rtol must be >= 0";
  }
  return std::nullopt;
}

void Problem::validate() const {
  if (auto e = check()) throw ProblemError("invalid Problem: " + *e + " (" + describe() + ")");
}

std::vector<Sequence> Problem::sequences() const {
  std::vector<Sequence> out;
  if (is_varlen()) {
    const auto& cu_k = cu_seqlens_k.empty() ? cu_seqlens_q : cu_seqlens_k;
    for (size_t n = 0; n + 1 < cu_seqlens_q.size(); ++n) {
      out.push_back(Sequence{0, cu_seqlens_q[n], int64_t{cu_seqlens_q[n + 1]} - cu_seqlens_q[n],
                             cu_k[n], cu_k[n + 1]});
    }
    return out;
  }
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t hi = seqused_k.empty() ? seqlen_k : seqused_k[b];
    const int64_t lo = cache_start.empty() ? 0 : cache_start[b];
    out.push_back(Sequence{b, 0, seqlen_q, lo, hi});
  }
  return out;
}

KeyRange Problem::key_range(const Sequence& seq, int64_t row) const {
  const int64_t a = seq.query_position(row);
  KeyRange r{seq.k_begin, seq.k_end};
  if (causal && a + 1 < r.end) r.end = a + 1;
  if (has_window() && a - window + 1 > r.begin) r.begin = a - window + 1;
  if (r.end < r.begin) r.end = r.begin;
  return r;
}

bool Problem::key_visible(const Sequence& seq, int64_t row, int64_t key) const {
  const int64_t a = seq.query_position(row);
  const bool in_sequence = key >= seq.k_begin && key < seq.k_end;
  const bool causal_ok = !causal || key <= a;
  const bool window_ok = !has_window() || key >= a - window + 1;
  return in_sequence && causal_ok && window_ok;
}

std::string Problem::describe() const {
  std::ostringstream os;
  os << to_string(variant) << " B=" << batch << " Lq=" << seqlen_q << " Lk=" << seqlen_k
     << " Hq=" << heads_q << " Hkv=" << heads_kv << " D=" << head_dim << " scale=" << softmax_scale()
     << (causal ? " causal" : " non-causal");
  if (has_window()) os << " W=" << window;
  if (!seqused_k.empty()) os << " seqused_k=" << join(seqused_k);
  if (!cache_start.empty()) os << " cache_start=" << join(cache_start);
  if (!cu_seqlens_q.empty()) os << " cu_seqlens_q=" << join(cu_seqlens_q);
  if (!cu_seqlens_k.empty()) os << " cu_seqlens_k=" << join(cu_seqlens_k);
  if (variant == Variant::lla) {
    os << " lambda=" << lla.lambda << " ridge=" << to_string(lla.ridge) << " solver=" << to_string(lla.solver);
    if (lla.solver == LlaSolver::cg) {
      os << "(iters=" << lla.cg.max_iters << " atol=" << lla.cg.atol << " rtol=" << lla.cg.rtol
         << (lla.cg.jacobi ? " jacobi" : "") << " " << to_string(lla.cg.form) << " "
         << to_string(lla.cg.matvec_precision) << ")";
    }
    if (lla.guard != DenominatorGuard::none) os << " guard=" << to_string(lla.guard) << "(" << lla.epsilon << ")";
    if (lla.block_size > 0 && lla.block_size != head_dim) os << " block=" << lla.block_size;
    if (lla.output_precision != Precision::fp64) os << " out=" << to_string(lla.output_precision);
    os << " grad=" << to_string(lla.gradient);
  }
  return os.str();
}

}  // namespace lla
