// `lla compare`: the CSV (the source of truth), the findings written from its numbers,
// the headline table, the plot selections, the JSON summary and the markdown report.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "args.hpp"
#include "compare.hpp"
#include "lla/version.hpp"

namespace lla::compare {

std::string format_number(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.12g", x);
  return buf;
}

namespace {

std::string optional_number(const std::optional<double>& x) { return x ? format_number(*x) : ""; }

// Errors as the tables print them.
std::string short_number(double x) {
  if (!std::isfinite(x)) return format_number(x);
  if (x == 0) return "0";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1e", x);
  return buf;
}

// --- the axes of a configuration, as the CSV names and writes them ----------------

enum class Axis { lambda, cg_iters, cg_tol, precision, length, head_dim, position, distribution };
constexpr std::array<Axis, 8> kAxes{Axis::lambda, Axis::cg_iters, Axis::cg_tol,   Axis::precision,
                                    Axis::length, Axis::head_dim, Axis::position, Axis::distribution};

const char* column_of(Axis a) {
  switch (a) {
    case Axis::lambda: return "lambda";
    case Axis::cg_iters: return "cg_iters";
    case Axis::cg_tol: return "cg_tol";
    case Axis::precision: return "precision";
    case Axis::length: return "L";
    case Axis::head_dim: return "D";
    case Axis::position: return "position";
    case Axis::distribution: return "distribution";
  }
  return "?";
}

std::string axis_value(const Config& c, Axis a) {
  switch (a) {
    case Axis::lambda: return format_number(c.lambda);
    case Axis::cg_iters: return std::to_string(c.cg_iters);
    case Axis::cg_tol: return format_number(c.cg_tol);
    case Axis::precision: return to_string(c.precision);
    case Axis::length: return std::to_string(c.length);
    case Axis::head_dim: return std::to_string(c.head_dim);
    case Axis::position: return to_string(c.position);
    case Axis::distribution: return to_string(c.distribution);
  }
  return "";
}

bool excluded(Axis a, std::initializer_list<Axis> except) {
  return std::find(except.begin(), except.end(), a) != except.end();
}

// The fixed part of a configuration in words, for titles and findings.
std::string describe(const Config& c, std::initializer_list<Axis> except) {
  std::vector<std::string> parts;
  for (Axis a : kAxes) {
    if (excluded(a, except)) continue;
    switch (a) {
      case Axis::lambda: parts.push_back("lambda=" + format_number(c.lambda)); break;
      case Axis::cg_iters: parts.push_back(std::to_string(c.cg_iters) + " CG iterations"); break;
      case Axis::cg_tol: parts.push_back("CG tol " + format_number(c.cg_tol)); break;
      case Axis::precision: parts.push_back(to_string(c.precision)); break;
      case Axis::length: parts.push_back("L=" + std::to_string(c.length)); break;
      case Axis::head_dim: parts.push_back("D=" + std::to_string(c.head_dim)); break;
      case Axis::position: parts.push_back(std::string(to_string(c.position)) + " rows"); break;
      case Axis::distribution: parts.push_back(std::string(to_string(c.distribution)) + " inputs"); break;
    }
  }
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : ", ") + p;
  return s;
}

// Panel names come from presets or the user; keep file names to [A-Za-z0-9_-].
std::string safe_file_part(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  return out;
}


// Results grouped by panel and every axis except `except`, in order of first appearance.
std::vector<std::vector<const Result*>> group_by(const std::vector<const Result*>& results,
                                                 std::initializer_list<Axis> except) {
  std::vector<std::vector<const Result*>> groups;
  std::map<std::string, size_t> index;
  for (const Result* r : results) {
    std::string key = r->config.panel;
    for (Axis a : kAxes)
      if (!excluded(a, except)) key += "|" + axis_value(r->config, a);
    auto [it, fresh] = index.emplace(key, groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(r);
  }
  return groups;
}

std::vector<std::string> distinct(const std::vector<const Result*>& rows, Axis a) {
  std::vector<std::string> out;
  for (const auto* r : rows) {
    const auto v = axis_value(r->config, a);
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
  }
  return out;
}

std::vector<const Result*> panel_rows(const std::vector<Result>& results, const std::string& panel) {
  std::vector<const Result*> out;
  for (const auto& r : results)
    if (r.config.panel == panel) out.push_back(&r);
  return out;
}

std::vector<std::string> panel_names(const Plan& plan) {
  std::vector<std::string> names;
  for (const auto& s : plan.sweeps)
    if (std::find(names.begin(), names.end(), s.name) == names.end()) names.push_back(s.name);
  return names;
}

// The axis a panel's findings and plots run along (Sweep::focus).
std::optional<Axis> focus_of(const Plan& plan, const std::string& panel, const std::vector<const Result*>& rows) {
  std::string wanted;
  for (const auto& s : plan.sweeps)
    if (s.name == panel) {
      wanted = s.focus;
      break;
    }
  std::optional<Axis> best;
  size_t most = 1;
  for (Axis a : kAxes) {
    if (a == Axis::precision) continue;  // precision makes series, not a direction
    const size_t n = distinct(rows, a).size();
    if (n > 1 && wanted == column_of(a)) return a;
    if (n > most) {
      best = a;
      most = n;
    }
  }
  return best;
}

// (method, precision) pairs with at least one available row, in plan order. With
// `all` false: the CG methods at every precision, the others at the coarsest
// precision present only (the headline, the findings).
std::vector<std::pair<Method, Precision>> series_in(const Plan& plan, const std::vector<const Result*>& rows,
                                                    bool all) {
  std::vector<std::pair<Method, Precision>> out;
  int coarsest = format_of(Precision::fp64).significand_bits;
  for (Method m : plan.methods)
    for (Precision p : {Precision::bf16, Precision::fp16, Precision::fp32, Precision::fp64})
      for (const auto* r : rows)
        if (r->method == m && r->config.precision == p && r->available) {
          out.emplace_back(m, p);
          coarsest = std::min(coarsest, format_of(p).significand_bits);
          break;
        }
  if (!all) {
    std::erase_if(out, [&](const auto& s) { return !is_cg(s.first) && format_of(s.second).significand_bits != coarsest; });
  }
  return out;
}

// --- CSV -----------------------------------------------------------------------------

struct Column {
  const char* name;
  std::string (*value)(const Plan&, const Result&);
};

const std::vector<Column>& columns() {
  using R = const Result&;
  using P = const Plan&;
  static const std::vector<Column> cols{
      {"panel", [](P, R r) { return r.config.panel; }},
      {"method", [](P, R r) { return std::string(to_string(r.method)); }},
      {"precision", [](P, R r) { return axis_value(r.config, Axis::precision); }},
      {"lambda", [](P, R r) { return axis_value(r.config, Axis::lambda); }},
      {"cg_iters", [](P, R r) { return axis_value(r.config, Axis::cg_iters); }},
      {"cg_tol", [](P, R r) { return axis_value(r.config, Axis::cg_tol); }},
      {"L", [](P, R r) { return axis_value(r.config, Axis::length); }},
      {"D", [](P, R r) { return axis_value(r.config, Axis::head_dim); }},
      {"position", [](P, R r) { return axis_value(r.config, Axis::position); }},
      {"distribution", [](P, R r) { return axis_value(r.config, Axis::distribution); }},
      {"seed", [](P p, R) { return std::to_string(p.seed); }},
      {"status", [](P, R r) { return std::string(r.available ? "ok" : "not_available"); }},
      {"rows", [](P, R r) { return r.available ? std::to_string(r.metrics.rows) : ""; }},
      {"o_max_rel_err", [](P, R r) { return r.available ? format_number(r.metrics.o_max_rel_err) : ""; }},
      {"o_rms_ratio", [](P, R r) { return r.available ? format_number(r.metrics.o_rms_ratio) : ""; }},
      {"o_frac_rows_over_tol", [](P, R r) { return r.available ? format_number(r.metrics.o_frac_rows_over_tol) : ""; }},
      {"tolerance", [](P p, R) { return format_number(p.tolerance); }},
      {"cg_not_converged_frac", [](P, R r) { return optional_number(r.metrics.cg_not_converged_frac); }},
      {"cg_mean_iters", [](P, R r) { return optional_number(r.metrics.cg_mean_iters); }},
      {"denom_sign_flip_frac", [](P, R r) { return optional_number(r.metrics.denom_sign_flip_frac); }},
      {"dq_max_rel_err", [](P, R r) { return optional_number(r.metrics.dq_max_rel_err); }},
      {"dk_max_rel_err", [](P, R r) { return optional_number(r.metrics.dk_max_rel_err); }},
      {"dv_max_rel_err", [](P, R r) { return optional_number(r.metrics.dv_max_rel_err); }},
      {"dr_max_rel_err", [](P, R r) { return optional_number(r.metrics.dr_max_rel_err); }},
      {"grad_max_rel_err", [](P, R r) { return optional_number(r.metrics.grad_max_rel_err()); }},
      {"oracle_max_condition", [](P, R r) { return optional_number(r.metrics.oracle_max_condition); }},
      {"oracle_min_denom_ratio", [](P, R r) { return optional_number(r.metrics.oracle_min_denom_ratio); }},
      {"note", [](P, R r) { return r.note; }},
  };
  return cols;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// --- findings ------------------------------------------------------------------------

// A series' errors along lambda, split by the tolerance.
struct LambdaSplit {
  std::vector<std::pair<double, double>> points, pass, fail;  // (lambda, error), by lambda
  // Fails below some lambda and meets the tolerance from there up.
  bool threshold() const { return !pass.empty() && !fail.empty() && fail.back().first < pass.front().first; }
  std::pair<double, double> worst() const {
    return *std::max_element(points.begin(), points.end(), [](auto a, auto b) { return a.second < b.second; });
  }
  std::pair<double, double> best() const {
    return *std::min_element(points.begin(), points.end(), [](auto a, auto b) { return a.second < b.second; });
  }
};

LambdaSplit split_by_tolerance(const std::vector<const Result*>& rows, double tol, bool gradients) {
  LambdaSplit s;
  for (const auto* r : rows) {
    if (!r->available) continue;
    const auto e = gradients ? r->metrics.grad_max_rel_err() : std::optional<double>(r->metrics.o_max_rel_err);
    if (e) s.points.emplace_back(r->config.lambda, *e);
  }
  std::sort(s.points.begin(), s.points.end());
  for (const auto& pt : s.points) (pt.second <= tol ? s.pass : s.fail).push_back(pt);
  return s;
}

std::string at_lambda(const std::pair<double, double>& pt) {
  return short_number(pt.second) + " at lambda = " + format_number(pt.first);
}

// Where a series meets the tolerance along lambda.
std::string lambda_sentence(const std::string& series, const LambdaSplit& s, double tol) {
  if (s.points.empty()) return "";
  const std::string t = format_number(tol);
  if (s.fail.empty()) return series + " meets " + t + " at every lambda tested (worst " + at_lambda(s.worst()) + ")";
  if (s.pass.empty()) return series + " fails " + t + " at every lambda tested (best " + at_lambda(s.best()) + ")";
  if (s.threshold()) {
    return series + " meets " + t + " for lambda >= " + format_number(s.pass.front().first) + " (" +
           at_lambda(s.pass.front()) + ") and fails for lambda <= " + format_number(s.fail.back().first) + " (" +
           at_lambda(s.fail.back()) + ")";
  }
  std::string failing;
  for (const auto& pt : s.fail) failing += (failing.empty() ? "" : ", ") + format_number(pt.first);
  return series + " fails " + t + " at lambda = " + failing + " and meets it elsewhere";
}

// The question the study exists for: the lambda at which CG in the coarsest
// precision stops meeting the tolerance, and whether Parallax in the same
// precision stays within it.
std::string verdict(const std::string& cg, const LambdaSplit& c, const std::string& px, const LambdaSplit& p,
                    double tol) {
  if (c.points.empty() || p.points.empty()) return "";
  const std::string t = format_number(tol);
  std::string v = "Verdict: ";
  if (c.threshold()) {
    v += cg + " stops meeting " + t + " below lambda = " + format_number(c.pass.front().first) + " (" +
         at_lambda(c.fail.back()) + ")";
  } else if (c.fail.empty()) {
    v += cg + " meets " + t + " at every lambda tested, so there is no threshold in this range";
  } else if (c.pass.empty()) {
    v += cg + " fails " + t + " at every lambda tested";
  } else {
    v += cg + " meets " + t + " at some lambdas and not others (no single threshold)";
  }
  if (p.fail.empty()) return v + "; " + px + " stays within it at every lambda (worst " + at_lambda(p.worst()) + ")";
  return v + "; " + px + " does NOT stay within it (worst " + at_lambda(p.worst()) + ")";
}

// One series' rows of a group, in the group's order.
std::vector<const Result*> rows_of(const std::vector<const Result*>& group, Method m, Precision p) {
  std::vector<const Result*> out;
  for (const auto* r : group)
    if (r->method == m && r->config.precision == p) out.push_back(r);
  return out;
}

void lambda_findings(const Plan& plan, const std::vector<const Result*>& results, std::vector<Finding>& out) {
  for (const auto& group : group_by(results, {Axis::lambda, Axis::precision})) {
    if (distinct(group, Axis::lambda).size() < 2) continue;
    for (const bool grads : {false, true}) {
      if (grads && !plan.gradients) continue;
      Finding f{grads ? "gradients" : "lambda",
                "[" + group.front()->config.panel + "] " +
                    (grads ? "Gradients (worst of dq, dk, dv, dr)" : "Output o") + ", " +
                    describe(group.front()->config, {Axis::lambda, Axis::precision}),
                {}};
      std::optional<Precision> coarsest;
      for (const auto& [m, p] : series_in(plan, group, false)) {
        const auto sentence =
            lambda_sentence(std::string(to_string(m)) + " " + to_string(p),
                            split_by_tolerance(rows_of(group, m, p), plan.tolerance, grads), plan.tolerance);
        if (!sentence.empty()) f.items.push_back(sentence);
        if (!coarsest || format_of(p).significand_bits < format_of(*coarsest).significand_bits) coarsest = p;
      }
      if (coarsest) {
        const std::string prec = to_string(*coarsest);
        const auto v = verdict("lla_cg " + prec,
                               split_by_tolerance(rows_of(group, Method::lla_cg, *coarsest), plan.tolerance, grads),
                               "parallax " + prec,
                               split_by_tolerance(rows_of(group, Method::parallax, *coarsest), plan.tolerance, grads),
                               plan.tolerance);
        if (!v.empty()) f.items.insert(f.items.begin(), v);
      }
      if (!f.items.empty()) out.push_back(f);
    }
  }
}

// Along an axis other than lambda: every series' error at each value.
void axis_findings(const Plan& plan, const std::vector<const Result*>& results, Axis axis, const std::string& topic,
                   std::vector<Finding>& out) {
  for (const auto& group : group_by(results, {axis, Axis::precision})) {
    const auto values = distinct(group, axis);
    if (values.size() < 2) continue;
    Finding f{topic,
              "[" + group.front()->config.panel + "] Output o by " + column_of(axis) + ", " +
                  describe(group.front()->config, {axis, Axis::precision}),
              {}};
    for (const auto& [m, p] : series_in(plan, group, false)) {
      std::vector<std::string> points;
      std::set<std::string> errors;
      for (const auto* r : rows_of(group, m, p)) {
        if (!r->available) continue;
        const std::string e = short_number(r->metrics.o_max_rel_err);
        errors.insert(e);
        std::string note;
        if (axis == Axis::cg_iters && r->metrics.cg_not_converged_frac) {
          char pct[48];
          std::snprintf(pct, sizeof pct, "; %.0f%% of rows not converged", 100 * *r->metrics.cg_not_converged_frac);
          note = pct;
        }
        points.push_back(e + " (" + axis_value(r->config, axis) + note + ")");
      }
      if (points.empty()) continue;
      std::string line = std::string(to_string(m)) + " " + to_string(p) + ": ";
      if (errors.size() == 1 && !is_cg(m)) {
        line += *errors.begin() + " at every " + column_of(axis);  // e.g. Parallax along the iterations
      } else {
        for (size_t i = 0; i < points.size(); ++i) line += (i ? ", " : "") + points[i];
      }
      f.items.push_back(line);
    }
    if (!f.items.empty()) out.push_back(f);
  }
}

// --- tables --------------------------------------------------------------------------

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  std::string text() const {
    std::vector<size_t> w(header.size());
    for (size_t i = 0; i < header.size(); ++i) w[i] = header[i].size();
    for (const auto& r : rows)
      for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], r[i].size());
    std::string s;
    auto line = [&](const std::vector<std::string>& cells) {
      for (size_t i = 0; i < cells.size(); ++i) {
        const std::string pad(w[i] - cells[i].size(), ' ');
        s += i == 0 ? cells[i] + pad : "  " + pad + cells[i];
      }
      s += "\n";
    };
    line(header);
    for (const auto& r : rows) line(r);
    return s;
  }
  std::string markdown() const {
    std::string s = "|";
    for (const auto& h : header) s += " " + h + " |";
    s += "\n|";
    for (size_t i = 0; i < header.size(); ++i) s += i == 0 ? "---|" : "---:|";
    s += "\n";
    for (const auto& r : rows) {
      s += "|";
      for (const auto& c : r) s += " " + c + " |";
      s += "\n";
    }
    return s;
  }
};

const char* short_name(Method m) {
  switch (m) {
    case Method::lla_direct_fp32: return "direct-fp32";
    case Method::lla_cg: return "cg";
    case Method::lla_cg_jacobi: return "cg-jacobi";
    case Method::parallax: return "parallax";
    case Method::parallax_gpu: return "parallax-gpu";
    case Method::softmax: return "softmax";
  }
  return "?";
}

// A panel's errors: one row per combination of its varying axes, one column per
// series. `all_series` = false keeps the CG methods at every precision and the
// others at the panel's lowest precision only (the headline).
Table panel_table(const Plan& plan, const std::vector<const Result*>& rows, bool gradients, bool all_series) {
  std::vector<Axis> varying;
  for (Axis a : kAxes)
    if (a != Axis::precision && distinct(rows, a).size() > 1) varying.push_back(a);
  const auto series = series_in(plan, rows, all_series);
  Table t;
  for (Axis a : varying) t.header.push_back(column_of(a));
  if (varying.empty()) t.header.push_back("configuration");
  for (const auto& [m, p] : series) t.header.push_back(std::string(short_name(m)) + " " + to_string(p));
  std::vector<std::string> seen;
  for (const auto* r : rows) {
    std::string key;
    for (Axis a : varying) key += axis_value(r->config, a) + "|";
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) continue;
    seen.push_back(key);
    std::vector<std::string> line;
    for (Axis a : varying) line.push_back(axis_value(r->config, a));
    if (varying.empty()) line.push_back(describe(r->config, {Axis::precision}));
    for (const auto& [m, p] : series) {
      const Result* hit = nullptr;
      for (const auto* x : rows) {
        std::string k;
        for (Axis a : varying) k += axis_value(x->config, a) + "|";
        if (k == key && x->method == m && x->config.precision == p) hit = x;
      }
      std::string cell = "n/a";
      if (hit && hit->available) {
        const auto e = gradients ? hit->metrics.grad_max_rel_err() : std::optional<double>(hit->metrics.o_max_rel_err);
        if (e) cell = short_number(*e) + (*e > plan.tolerance ? "*" : "");
      }
      line.push_back(cell);
    }
    t.rows.push_back(line);
  }
  return t;
}

}  // namespace

const std::vector<std::string>& csv_columns() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& c : columns()) n.push_back(c.name);
    return n;
  }();
  return names;
}

std::string csv_text(const Plan& plan, const std::vector<Result>& results) {
  std::string s;
  for (const auto& c : columns()) s += std::string(s.empty() ? "" : ",") + c.name;
  s += "\n";
  for (const auto& r : results) {
    std::string line;
    for (const auto& c : columns()) line += std::string(line.empty() ? "" : ",") + csv_field(c.value(plan, r));
    s += line + "\n";
  }
  return s;
}

std::vector<Finding> findings(const Plan& plan, const std::vector<Result>& results) {
  std::vector<Finding> out;
  for (const auto& name : panel_names(plan)) {
    const auto rows = panel_rows(results, name);
    const auto focus = focus_of(plan, name, rows);
    if (!focus) continue;
    if (*focus == Axis::lambda) {
      lambda_findings(plan, rows, out);
    } else {
      axis_findings(plan, rows, *focus, column_of(*focus), out);
    }
  }
  return out;
}

std::string headline_table(const Plan& plan, const std::vector<Result>& results) {
  const auto names = panel_names(plan);
  if (names.empty()) return "";
  const auto rows = panel_rows(results, names.front());
  std::string s = "max-norm relative error of o against the fp64 oracle of the same problem (* = over " +
                  format_number(plan.tolerance) + "), panel '" + names.front() + "'";
  if (!rows.empty()) {
    std::string fixed;
    for (Axis a : kAxes)
      if (a != Axis::precision && distinct(rows, a).size() == 1)
        fixed += std::string(fixed.empty() ? "" : " ") + column_of(a) + "=" + axis_value(rows.front()->config, a);
    s += ": " + fixed;
  }
  return s + "\n\n" + panel_table(plan, rows, false, false).text();
}

std::vector<PlotSpec> plot_specs(const Plan& plan, const std::vector<Result>& results) {
  std::vector<PlotSpec> out;
  for (const auto& name : panel_names(plan)) {
    const auto rows = panel_rows(results, name);
    // Along the focus when it is lambda or the iterations, else along lambda.
    const auto focus = focus_of(plan, name, rows);
    const Axis x = focus && *focus == Axis::cg_iters ? Axis::cg_iters : Axis::lambda;
    for (const auto& group : group_by(rows, {x, Axis::precision})) {
      if (distinct(group, x).size() < 2) continue;
      const auto series = series_in(plan, group, true);
      if (series.empty()) continue;
      for (const bool grads : {false, true}) {
        if (grads && !plan.gradients) continue;
        PlotSpec p;
        const Config& c = group.front()->config;
        char number[16];
        std::snprintf(number, sizeof number, "plot_%02zu_", out.size() + 1);
        p.file = number + safe_file_part(c.panel) + (grads ? "_grad" : "_o") + "_vs_" + column_of(x) + ".svg";
        p.title = c.panel + ": " + (grads ? "gradients" : "output o") + ", " + describe(c, {x, Axis::precision});
        p.x_column = column_of(x);
        p.y_column = grads ? "grad_max_rel_err" : "o_max_rel_err";
        p.where.emplace_back("panel", c.panel);
        for (Axis a : kAxes)
          if (a != x && a != Axis::precision) p.where.emplace_back(column_of(a), axis_value(c, a));
        for (const auto& [m, prec] : series) {
          if (grads && m == Method::parallax_gpu) continue;  // forward only
          p.series.push_back(std::string(to_string(m)) + ":" + to_string(prec));
        }
        out.push_back(p);
      }
    }
  }
  return out;
}

std::string json_summary(const Plan& plan, const std::vector<Result>& results, double elapsed_s,
                         const std::string& plots_status) {
  using cli::json_number;
  using cli::json_string;
  std::ostringstream js;
  js << "{\n  \"tool\": \"lla compare\",\n  \"version\": " << json_string(kVersion)
     << ",\n  \"preset\": " << json_string(plan.preset) << ",\n  \"seed\": " << plan.seed
     << ",\n  \"tolerance\": " << json_number(plan.tolerance)
     << ",\n  \"gradients\": " << (plan.gradients ? "true" : "false") << ",\n  \"methods\": [";
  for (size_t i = 0; i < plan.methods.size(); ++i) js << (i ? ", " : "") << json_string(to_string(plan.methods[i]));
  js << "],\n  \"configurations\": " << plan.configs().size() << ",\n  \"csv_rows\": " << results.size()
     << ",\n  \"elapsed_s\": " << json_number(elapsed_s);
  const auto why = gpu_availability();
  js << ",\n  \"gpu_kernel\": " << (why.empty() ? json_string("available") : json_string("not available (" + why + ")"))
     << ",\n  \"plots\": " << json_string(plots_status) << ",\n  \"panels\": [";
  for (size_t i = 0; i < plan.sweeps.size(); ++i) {
    const Sweep& s = plan.sweeps[i];
    auto list = [&](const auto& v, auto fmt) {
      std::string o = "[";
      for (size_t k = 0; k < v.size(); ++k) o += (k ? ", " : "") + fmt(v[k]);
      return o + "]";
    };
    auto num = [](double x) { return json_number(x); };
    auto str = [](auto e) { return json_string(to_string(e)); };
    js << (i ? "," : "") << "\n    {\"name\": " << json_string(s.name) << ", \"lambda\": " << list(s.lambdas, num)
       << ", \"cg_iters\": " << list(s.cg_iters, [](int64_t x) { return std::to_string(x); })
       << ", \"cg_tol\": " << list(s.cg_tols, num) << ", \"precision\": " << list(s.precisions, str)
       << ", \"L\": " << list(s.lengths, [](int64_t x) { return std::to_string(x); })
       << ", \"D\": " << list(s.head_dims, [](int64_t x) { return std::to_string(x); })
       << ", \"position\": " << list(s.positions, str) << ", \"distribution\": " << list(s.distributions, str) << "}";
  }
  js << "\n  ],\n  \"findings\": [";
  const auto f = findings(plan, results);
  for (size_t i = 0; i < f.size(); ++i) {
    js << (i ? "," : "") << "\n    {\"topic\": " << json_string(f[i].topic)
       << ", \"context\": " << json_string(f[i].context) << ", \"items\": [";
    for (size_t k = 0; k < f[i].items.size(); ++k) js << (k ? ", " : "") << json_string(f[i].items[k]);
    js << "]}";
  }
  js << "\n  ]\n}\n";
  return js.str();
}

std::string markdown_report(const Plan& plan, const std::vector<Result>& results, double elapsed_s,
                            const std::vector<PlotSpec>& plots, const std::string& plots_status) {
  std::ostringstream md;
  md << "# lla compare: the solver (LLA) against the projector (Parallax)\n\n"
     << "Preset: " << (plan.preset.empty() ? "none (axes from the command line)" : "`" + plan.preset + "`")
     << "; seed " << plan.seed << "; tolerance " << format_number(plan.tolerance) << "; gradients "
     << (plan.gradients ? "on" : "off") << "; " << plan.configs().size() << " configurations x "
     << plan.methods.size() << " methods = " << results.size() << " rows of `compare.csv`; ";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f s.\n\n", elapsed_s);
  md << buf;
  const auto why = gpu_availability();
  md << "GPU kernel: " << (why.empty() ? "available" : "not available (" + why + ")") << ". Plots: " << plots_status
     << ".\n\n"
     << "Every error is measured against the fp64 oracle of exactly the same problem: the same inputs, already "
        "rounded to the configuration's precision, the same lambda for LLA, the same upstream gradient. "
        "`compare.csv` holds every number; docs/compare.md defines the methods and columns.\n\n";
  md << "## Findings\n\n";
  const auto f = findings(plan, results);
  if (f.empty()) md << "No axis other than the method varies, so there is nothing to compare along; see the table.\n";
  for (const auto& x : f) {
    md << "- " << x.context << ":\n";
    for (const auto& item : x.items) md << "  - " << item << "\n";
  }
  md << "\n";
  for (const auto& name : panel_names(plan)) {
    const auto rows = panel_rows(results, name);
    md << "## Panel `" << name << "`\n\nMax-norm relative error of o (* = over " << format_number(plan.tolerance)
       << "; n/a = method not available):\n\n"
       << panel_table(plan, rows, false, true).markdown() << "\n";
    if (plan.gradients) {
      md << "Worst max-norm relative error of the gradients (dq, dk, dv, and dr for Parallax):\n\n"
         << panel_table(plan, rows, true, true).markdown() << "\n";
    }
  }
  if (!plots.empty()) {
    md << "## Plots\n\n";
    for (const auto& p : plots) md << "![" << p.title << "](" << p.file << ")\n\n" << p.title << "\n\n";
  }
  std::set<std::string> notes;
  for (const auto& r : results)
    if (!r.note.empty()) notes.insert(std::string(to_string(r.method)) + ": " + r.note);
  if (!notes.empty()) {
    md << "## Notes\n\n";
    for (const auto& n : notes) md << "- " << n << "\n";
  }
  return md.str();
}

}  // namespace lla::compare
