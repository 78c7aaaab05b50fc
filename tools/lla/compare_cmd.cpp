// `lla compare`: the command line around the compare library (compare.hpp).
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "args.hpp"
#include "commands.hpp"
#include "compare.hpp"
#include "lla/version.hpp"

extern char** environ;

namespace lla::cli {
namespace {

namespace fs = std::filesystem;
using namespace lla::compare;

void print_help() {
  std::printf(
      "usage: lla compare --out DIR [--preset demo|paper] [axes] [--methods LIST] [--seed N]\n"
      "                   [--tolerance X] [--no-gradients] [--jobs N] [--no-plots] [--quiet]\n\n"
      "Measures how far LLA's solvers and Parallax land from the fp64 oracle of the same problem, over a\n"
      "sweep, and writes DIR/compare.csv (one row per configuration and method), DIR/summary.json,\n"
      "DIR/report.md (findings written from the numbers) and DIR/plot_*.svg (gnuplot; skipped with the\n"
      "reason when gnuplot is missing). Prints the headline table. docs/compare.md explains everything.\n\n"
      "Axes (each replaces that axis in every panel of the preset; lists are comma separated, ranges\n"
      "are a..b*F (geometric) or a..b+S (arithmetic)):\n"
      "  --lambda LIST        LLA ridge lambda (lambda*omega*I)               default 10\n"
      "  --iters LIST         CG iteration budget, 1..%lld                     default 32\n"
      "  --cg-tol LIST        CG atol = rtol on squared norms (0 = never stop) default 1e-6\n"
      "  --precision LIST     fp64, fp32, fp16, bf16: inputs and products     default bf16,fp32\n"
      "  --length LIST        sequence length L, 1..%lld                       default 256\n"
      "  --head-dim LIST      head dim D, 1..%lld                               default 64\n"
      "  --position LIST      all, early (rows < D), late (rows >= L/2)       default all\n"
      "  --distribution LIST  normal, rms_normed, large, large_logits, near_duplicate_keys,\n"
      "                       heavy_keys, clustered_keys                      default normal\n"
      "Other options:\n"
      "  --methods LIST       lla_direct_fp32, lla_cg, lla_cg_jacobi, parallax, parallax_gpu, softmax\n"
      "  --seed N             input seed (default 1)\n"
      "  --tolerance X        per-row error threshold of the findings (default 1e-2)\n"
      "  --no-gradients       outputs only (the backward costs about twice the forward)\n"
      "  --jobs N             worker threads (default: all cores)\n"
      "Presets: demo (seconds), paper (the public FlashLLA test regime D=64, L<=1024, lambda=10,\n"
      "32 iterations, and lambda down to 1e-3, iterations 1..256, early/late rows, four input\n"
      "distributions; minutes on two cores). Exit codes: 0 done, 2 usage or input error.\n",
      static_cast<long long>(kItersMax), static_cast<long long>(kLengthMax), static_cast<long long>(kHeadDimMax));
}

Plan plan_from(const Args& a) {
  Plan plan;
  if (a.has("preset")) plan = preset(a.get("preset"));
  for (auto& s : plan.sweeps) {
    if (a.has("lambda")) s.lambdas = parse_real_axis("lambda", a.get("lambda"), kLambdaMin, kLambdaMax);
    if (a.has("iters")) s.cg_iters = parse_integer_axis("iters", a.get("iters"), 1, kItersMax);
    if (a.has("cg-tol")) s.cg_tols = parse_real_axis("cg-tol", a.get("cg-tol"), 0, 1);
    if (a.has("precision")) s.precisions = parse_precision_axis("precision", a.get("precision"));
    if (a.has("length")) s.lengths = parse_integer_axis("length", a.get("length"), 1, kLengthMax);
    if (a.has("head-dim")) s.head_dims = parse_integer_axis("head-dim", a.get("head-dim"), 1, kHeadDimMax);
    if (a.has("position")) s.positions = parse_position_axis("position", a.get("position"));
    if (a.has("distribution")) s.distributions = parse_distribution_axis("distribution", a.get("distribution"));
  }
  if (a.has("methods")) plan.methods = parse_method_list("methods", a.get("methods"));
  if (a.has("seed")) {
    const auto s = parse_integer_axis("seed", a.get("seed"), 0, int64_t{1} << 53);
    if (s.size() != 1) throw SweepError("--seed takes one value");
    plan.seed = static_cast<uint64_t>(s.front());
  }
  if (a.has("tolerance")) {
    const auto t = parse_real_axis("tolerance", a.get("tolerance"), 0, 1e6);
    if (t.size() != 1) throw SweepError("--tolerance takes one value");
    plan.tolerance = t.front();
  }
  plan.gradients = !a.has("no-gradients");
  return plan;
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

// Runs a program without a shell (paths and titles need no quoting), stdout and
// stderr to `log`; returns its exit status, or -1 when it could not be started.
int spawn(const std::vector<std::string>& argv, const fs::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A gnuplot string literal: single quotes, '' for a quote inside.
std::string gp_string(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("''") : std::string(1, c);
  return o + "'";
}

// Draws every plot with tools/compare/plot.gp, which reads the CSV. Returns the
// status line for the report: done, or skipped and why.
std::string draw_plots(const fs::path& out, const std::vector<PlotSpec>& plots, double tolerance) {
  if (plots.empty()) return "none (no panel varies lambda or the CG iterations)";
  const char* env = std::getenv("LLA_COMPARE_PLOT_SCRIPT");
  const fs::path script = env ? fs::path(env) : fs::path(kSourceDir) / "tools" / "compare" / "plot.gp";
  if (!fs::exists(script)) return "skipped: the plot script " + script.string() + " is missing";
  const fs::path log = out / "plot.log";
  fs::remove(log);
  if (spawn({"gnuplot", "--version"}, log) != 0) {
    fs::remove(log);
    return "skipped: gnuplot was not found on PATH (tools/deps.sh installs gnuplot-nox)";
  }
  size_t failed = 0;
  for (const auto& p : plots) {
    std::string where, series;
    for (const auto& [col, val] : p.where) where += (where.empty() ? "" : " ") + col + "=" + val;
    for (const auto& s : p.series) series += (series.empty() ? "" : " ") + s;
    const std::string vars = "csv=" + gp_string((out / "compare.csv").string()) +
                             "; out=" + gp_string((out / p.file).string()) + "; xcol=" + gp_string(p.x_column) +
                             "; ycol=" + gp_string(p.y_column) + "; where=" + gp_string(where) +
                             "; series=" + gp_string(series) + "; tol=" + format_number(tolerance) +
                             "; plot_title=" + gp_string(p.title);
    failed += spawn({"gnuplot", "-e", vars, script.string()}, log) != 0 || !fs::exists(out / p.file);
  }
  if (failed) return "partial: " + std::to_string(failed) + " of " + std::to_string(plots.size()) +
                     " plots failed (see plot.log)";
  return std::to_string(plots.size()) + " SVG plots drawn by gnuplot from compare.csv";
}

}  // namespace

int run_compare(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv,
                            {"out", "preset", "lambda", "iters", "cg-tol", "precision", "length", "head-dim",
                             "position", "distribution", "methods", "seed", "tolerance", "jobs"},
                            {"no-gradients", "no-plots", "quiet", "help"});
  if (a.has("help")) {
    print_help();
    return kOk;
  }
  if (!a.positional.empty()) throw UsageError("unexpected argument '" + a.positional.front() + "'");
  Plan plan;
  int jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  try {
    plan = plan_from(a);
    if (a.has("jobs")) {
      const auto j = parse_integer_axis("jobs", a.get("jobs"), 1, 256);
      if (j.size() != 1) throw SweepError("--jobs takes one value");
      jobs = static_cast<int>(j.front());
    }
  } catch (const SweepError& e) {
    throw UsageError(e.what());
  }
  const fs::path out = a.require("out");
  fs::create_directories(out);
  // Plots of an earlier run in the same folder would be mistaken for this one's.
  const std::regex old_plot(R"(plot_\d+_.*\.svg)");
  for (const auto& e : fs::directory_iterator(out))
    if (std::regex_match(e.path().filename().string(), old_plot)) fs::remove(e.path());

#ifdef __GLIBC__
  // The oracle allocates per-row matrices of a few hundred kB; glibc serves those with
  // mmap/munmap by default, whose kernel lock serialises the worker threads (measured:
  // 7 s of system time in an 18 s run). Keep them on the heap.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  const size_t n_configs = plan.configs().size();
  const bool quiet = a.has("quiet");
  if (!quiet) {
    std::fprintf(stderr, "lla compare: %zu configurations x %zu methods, %d threads\n", n_configs,
                 plan.methods.size(), jobs);
  }
  RunOptions opt;
  opt.jobs = jobs;
  const bool tty = isatty(fileno(stderr));
  if (!quiet) {
    opt.progress = [&](size_t done, size_t total, const Config& c) {
      // On a log, one line per tenth of the run.
      if (!tty && done != total && done * 10 / total == (done - 1) * 10 / total) return;
      progress(done, total,
               c.panel + " lambda=" + format_number(c.lambda) + " iters=" + std::to_string(c.cg_iters) + " " +
                   to_string(c.precision) + " L=" + std::to_string(c.length) + " D=" + std::to_string(c.head_dim));
    };
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto results = run(plan, emulated_methods(), opt);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  write_file(out / "compare.csv", csv_text(plan, results));
  const auto plots = plot_specs(plan, results);
  const std::string plots_status =
      a.has("no-plots") ? "skipped: --no-plots" : draw_plots(out, plots, plan.tolerance);
  const bool drawn = plots_status.find("drawn") != std::string::npos || plots_status.rfind("partial", 0) == 0;
  write_file(out / "summary.json", json_summary(plan, results, elapsed, plots_status));
  write_file(out / "report.md",
             markdown_report(plan, results, elapsed, drawn ? plots : std::vector<PlotSpec>{}, plots_status));

  std::printf("%s\n", headline_table(plan, results).c_str());
  for (const auto& f : findings(plan, results)) {
    if (f.topic != "lambda") continue;
    std::printf("%s:\n", f.context.c_str());
    for (const auto& item : f.items) std::printf("  - %s\n", item.c_str());
  }
  const auto why = gpu_availability();
  std::printf("\ngpu kernel: %s\nplots: %s\nwrote %s/{compare.csv, summary.json, report.md} in %.1f s\n",
              why.empty() ? "available" : ("not available (" + why + ")").c_str(), plots_status.c_str(),
              out.c_str(), elapsed);
  return kOk;
}

}  // namespace lla::cli
