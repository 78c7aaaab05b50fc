// `lla fixtures generate`, `lla fixtures oracle-candidate`, `lla verify`, `lla inspect`.
#include <unistd.h>

#include <array>
#include <functional>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>
#include <sstream>

#include "args.hpp"
#include "commands.hpp"
#include "lla/fixtures/schema.hpp"
#include "lla/fixtures/suites.hpp"
#include "lla/fixtures/verify.hpp"
#include "lla/version.hpp"

namespace lla::cli {
namespace {

namespace fs = std::filesystem;
using fixtures::FixtureError;

// The commit recorded in generated files: --commit, else LLA_FIXTURE_COMMIT, else
// `git rev-parse HEAD` in the source tree, else "unknown".
std::string git_commit(const Args& a) {
  if (a.has("commit")) return a.get("commit");
  if (const char* env = std::getenv("LLA_FIXTURE_COMMIT")) return env;
  const std::string cmd = std::string("git -C '") + kSourceDir + "' rev-parse HEAD 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "unknown";
  std::array<char, 128> buf{};
  std::string out;
  while (fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.size() == 40 ? out : "unknown";
}

std::vector<fixtures::CaseSpec> selected(const std::string& suite, const std::string& filter) {
  auto specs = fixtures::suite(suite);
  if (filter.empty()) return specs;
  std::regex re;
  try {
    re = std::regex(filter);
  } catch (const std::regex_error& e) {
    throw UsageError("--filter '" + filter + "' is not a valid regular expression");
  }
  std::vector<fixtures::CaseSpec> out;
  for (auto& s : specs)
    if (std::regex_search(s.name, re)) out.push_back(std::move(s));
  return out;
}

int generate(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv, {"suite", "out", "filter", "commit"}, {"force", "json", "help"});
  if (a.has("help")) {
    std::printf(
        "usage: lla fixtures generate --suite NAME --out DIR [--filter REGEX] [--force] [--json] [--commit SHA]\n\n"
        "Writes one HDF5 fixture per case of a built-in suite (smoke, golden, full), then DIR/MANIFEST.sha256.\n"
        "Existing files are never replaced without --force; each file is written under a temporary name and\n"
        "renamed when complete. --commit (or LLA_FIXTURE_COMMIT) sets the git commit recorded in the files.\n");
    return kOk;
  }
  const std::string out = a.require("out");
  const auto specs = selected(a.require("suite"), a.get("filter"));
  if (specs.empty()) throw UsageError("no case of suite " + a.get("suite") + " matches --filter " + a.get("filter"));
  fs::create_directories(out);
  const bool force = a.has("force");
  // Refuse up front, before spending time, if anything would be overwritten.
  if (!force) {
    for (const auto& s : specs) {
      const auto path = fs::path(out) / (s.name + ".h5");
      if (fs::exists(path)) throw FixtureError(path.string() + " exists; pass --force to replace it");
    }
  }
  const std::string commit = git_commit(a);
  std::ostringstream json;
  json << "{\"suite\": " << json_string(a.get("suite")) << ", \"out\": " << json_string(out) << ", \"cases\": [";
  for (size_t i = 0; i < specs.size(); ++i) {
    progress(i, specs.size(), specs[i].name);
    const auto c = fixtures::make_case(specs[i], commit);
    const auto path = (fs::path(out) / (specs[i].name + ".h5")).string();
    fixtures::write_fixture(path, c, force);
    json << (i ? ", " : "") << "{\"case\": " << json_string(specs[i].name) << ", \"file\": " << json_string(path)
         << ", \"error_bar_o\": " << json_number(c.error_bar.o) << "}";
  }
  progress(specs.size(), specs.size(), "done");
  fixtures::write_manifest(out);
  json << "]}";
  if (a.has("json")) {
    std::printf("%s\n", json.str().c_str());
  } else {
    std::printf("wrote %zu fixtures and %s to %s\n", specs.size(), fixtures::kManifestName, out.c_str());
  }
  return kOk;
}

// Writes the oracle's own outputs as candidate files: the reference point for
// `lla verify` (and a template of the candidate format).
int oracle_candidate(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv, {"fixtures", "out", "filter"}, {"force", "help"});
  if (a.has("help")) {
    std::printf(
        "usage: lla fixtures oracle-candidate --fixtures DIR --out DIR [--filter REGEX] [--force]\n\n"
        "Recomputes every fixture with the current fp64 oracle and writes the outputs as candidate files\n"
        "(one <case>.h5 per fixture, datasets o, lse, ..., dq, dk, dv, dr at the root). `lla verify` on them\n"
        "checks the oracle against the committed golden values (drift).\n");
    return kOk;
  }
  const std::string dir = a.require("fixtures"), out = a.require("out");
  const auto files = fixtures::check_manifest(dir);
  fs::create_directories(out);
  std::regex re(a.get("filter", ".*"));
  size_t n = 0;
  for (const auto& f : files) {
    const auto fx = fixtures::read_fixture((fs::path(dir) / f).string());
    if (!std::regex_search(fx.spec.name, re)) continue;
    // Recomputed from the stored inputs: the file, not the generator, is the truth.
    std::vector<fixtures::NamedArray> tensors;
    for (auto& e : fixtures::oracle_expected(fx.spec, fx.inputs, fx.dout))
      if (fixtures::is_verified_tensor(e.name)) tensors.push_back(std::move(e));
    fixtures::write_candidate((fs::path(out) / f).string(), tensors, a.has("force"));
    ++n;
  }
  std::printf("wrote %zu oracle candidate files to %s\n", n, out.c_str());
  return kOk;
}

int verify(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv, {"fixtures", "candidate", "filter", "tensors"}, {"json", "help"});
  if (a.has("help")) {
    std::printf(
        "usage: lla verify --fixtures DIR --candidate DIR [--filter REGEX] [--tensors o,dq,...] [--json]\n\n"
        "Checks the fixture folder's MANIFEST.sha256, then judges DIR/<case>.h5 of the candidate folder\n"
        "against each fixture, tensor by tensor:\n"
        "  max|candidate - expected| <= k * max|fp32 baseline - expected| + floor\n"
        "with k and floor (= units * u(input element type) * max|expected|) taken from the fixture.\n"
        "Candidate datasets sit at the file's root, named like the fixture's /expected tensors, in float64,\n"
        "float32, or uint16 with element_type bfloat16/float16. o (and dq, dk, dv, dr for forward_backward\n"
        "cases) are required unless --tensors names the ones to judge (e.g. --tensors o for a forward-only\n"
        "kernel). Exit 0 all pass, 1 a check failed, 2 usage or input error (missing, malformed or tampered\n"
        "fixtures).\n");
    return kOk;
  }
  const std::string dir = a.require("fixtures"), cand = a.require("candidate");
  std::vector<std::string> only;
  {
    std::stringstream ss(a.get("tensors"));
    std::string t;
    while (std::getline(ss, t, ',')) {
      if (t.empty()) continue;
      if (!fixtures::is_verified_tensor(t)) throw UsageError("--tensors: '" + t + "' is not a verified tensor name");
      only.push_back(t);
    }
  }
  const auto files = fixtures::check_manifest(dir);
  std::regex re(a.get("filter", ".*"));
  fixtures::Verdict verdict;
  for (const auto& f : files) {
    // Listed in a checked manifest, and parsed in a sandbox all the same.
    const auto fx = fixtures::read_fixture_sandboxed((fs::path(dir) / f).string());
    if (!std::regex_search(fx.spec.name, re)) continue;
    auto rows = fixtures::verify_case(fx, (fs::path(cand) / f).string(), only);
    verdict.rows.insert(verdict.rows.end(), rows.begin(), rows.end());
  }
  if (verdict.rows.empty()) throw UsageError("no fixture was verified (empty folder or --filter matched nothing)");
  if (a.has("json")) {
    std::ostringstream js;
    js << "{\"ok\": " << (verdict.ok() ? "true" : "false") << ", \"rows\": [";
    for (size_t i = 0; i < verdict.rows.size(); ++i) {
      const auto& r = verdict.rows[i];
      js << (i ? ", " : "") << "{\"case\": " << json_string(r.case_name) << ", \"tensor\": " << json_string(r.tensor)
         << ", \"pass\": " << (r.pass ? "true" : "false") << ", \"max_error\": " << json_number(r.max_error)
         << ", \"max_norm_relative_error\": " << json_number(r.max_rel) << ", \"rms_ratio\": " << json_number(r.rms_ratio)
         << ", \"baseline_error\": " << json_number(r.baseline_error) << ", \"bound\": " << json_number(r.bound)
         << ", \"worst_index\": " << json_string(r.worst_index) << ", \"message\": " << json_string(r.message) << "}";
    }
    js << "]}";
    std::printf("%s\n", js.str().c_str());
  } else {
    std::printf("%-44s %-6s %-5s %10s %10s %10s %10s %s\n", "case", "tensor", "ok", "max rel", "rms ratio",
                "err/bound", "bound", "worst (b, l, h, d) / note");
    size_t failed = 0;
    for (const auto& r : verdict.rows) {
      failed += !r.pass;
      const double ratio = r.bound > 0 ? r.max_error / r.bound : (r.max_error == 0 ? 0.0 : INFINITY);
      std::printf("%-44s %-6s %-5s %10.2e %10.2e %10.3f %10.2e %s\n", r.case_name.c_str(), r.tensor.c_str(),
                  r.pass ? "pass" : "FAIL", r.max_rel, r.rms_ratio, ratio, r.bound,
                  r.message.empty() ? r.worst_index.c_str() : r.message.c_str());
    }
    std::printf("\n%zu of %zu tensors pass\n", verdict.rows.size() - failed, verdict.rows.size());
  }
  return verdict.ok() ? kOk : kCheckFailed;
}

int inspect(const std::vector<std::string>& argv) {
  const Args a = parse_args(argv, {}, {"json", "help"});
  if (a.has("help") || a.positional.size() != 1) {
    std::printf("usage: lla inspect FILE [--json]\n\nValidates one fixture and prints its attributes, datasets, "
                "shapes and the oracle's error bar.\n");
    return a.has("help") ? kOk : kUsageError;
  }
  const auto fx = fixtures::read_fixture_sandboxed(a.positional[0]);
  const auto& s = fx.spec;
  if (a.has("json")) {
    std::ostringstream js;
    js << "{\"file\": " << json_string(a.positional[0]) << ", \"case\": " << json_string(s.name)
       << ", \"problem\": " << json_string(s.problem.describe())
       << ", \"direction\": " << json_string(s.backward ? "forward_backward" : "forward")
       << ", \"input_element_type\": " << json_string(fixtures::element_type_name(s.input_type))
       << ", \"input_distribution\": " << json_string(to_string(s.magnitude)) << ", \"seed\": " << s.seed
       << ", \"git_commit\": " << json_string(fx.git_commit) << ", \"generator_version\": " << json_string(fx.generator_version)
       << ", \"oracle_error_bar\": {\"bits\": " << fx.error_bar.bits << ", \"o\": " << json_number(fx.error_bar.o)
       << ", \"grad\": " << json_number(fx.error_bar.dq) << "}, \"tolerance_k\": " << json_number(fx.tolerance_k)
       << ", \"tolerance_floor_units\": " << json_number(fx.tolerance_floor_units) << ", \"expected\": [";
    for (size_t i = 0; i < fx.expected.size(); ++i) {
      js << (i ? ", " : "") << "{\"name\": " << json_string(fx.expected[i].name) << ", \"shape\": [";
      for (size_t d = 0; d < fx.expected[i].shape.size(); ++d) js << (d ? ", " : "") << fx.expected[i].shape[d];
      js << "]}";
    }
    js << "]}";
    std::printf("%s\n", js.str().c_str());
    return kOk;
  }
  std::printf("file:        %s\ncase:        %s\nproblem:     %s\ndirection:   %s\n", a.positional[0].c_str(),
              s.name.c_str(), s.problem.describe().c_str(), s.backward ? "forward + backward" : "forward");
  std::printf("inputs:      %s values, distribution %s, seed %llu\n", fixtures::element_type_name(s.input_type),
              to_string(s.magnitude), static_cast<unsigned long long>(s.seed));
  std::printf("provenance:  %s %s, commit %s\n", "lla fixtures generate", fx.generator_version.c_str(),
              fx.git_commit.c_str());
  std::printf("error bar:   fp64 oracle vs %d-bit MPFR: o %.2e, gradients %.2e (max-norm relative)\n", fx.error_bar.bits,
              fx.error_bar.o, fx.error_bar.dq);
  std::printf("tolerance:   max|c - e| <= %g * max|fp32 baseline - e| + %g * u(%s) * max|e|\n", fx.tolerance_k,
              fx.tolerance_floor_units, fixtures::element_type_name(s.input_type));
  auto shape = [](const std::vector<int64_t>& v) {
    std::string o = "(";
    for (size_t i = 0; i < v.size(); ++i) o += (i ? ", " : "") + std::to_string(v[i]);
    return o + ")";
  };
  std::printf("datasets:\n  /inputs/q %s, /inputs/k %s, /inputs/v %s%s%s\n", shape({fx.inputs.q.shape().begin(), fx.inputs.q.shape().end()}).c_str(),
              shape({fx.inputs.k.shape().begin(), fx.inputs.k.shape().end()}).c_str(),
              shape({fx.inputs.v.shape().begin(), fx.inputs.v.shape().end()}).c_str(),
              fx.inputs.r.empty() ? "" : ", /inputs/r", s.backward ? ", /inputs/do" : "");
  for (const auto& e : fx.expected) {
    double m = 0;
    for (double x : e.values)
      if (std::isfinite(x)) m = std::max(m, std::fabs(x));
    std::printf("  /expected/%-14s %-20s max|.| %.3e\n", e.name.c_str(), shape(e.shape).c_str(), m);
  }
  for (const auto& b : fx.baseline) std::printf("  /baseline/%-14s %s (float32)\n", b.name.c_str(), shape(b.shape).c_str());
  return kOk;
}

void fixtures_help() {
  std::printf(
      "usage: lla fixtures <generate|oracle-candidate> [options]\n\n"
      "  generate          write a built-in suite (smoke, golden, full) as HDF5 fixtures\n"
      "  oracle-candidate  write the current oracle's outputs as candidate files for `lla verify`\n\n"
      "'lla fixtures <command> --help' describes a command. The schema is in docs/fixtures.md.\n");
}

// Runs fn, mapping errors to exit codes: usage and input errors are 2.
int guarded(const char* what, const std::function<int()>& fn) {
  try {
    return fn();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "lla %s: usage error: %s (see --help)\n", what, e.what());
  } catch (const FixtureError& e) {
    std::fprintf(stderr, "lla %s: error: %s\n", what, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lla %s: error: %s\n", what, e.what());
  }
  return kUsageError;
}

}  // namespace

int run_fixtures(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    fixtures_help();
    return args.empty() ? kUsageError : kOk;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "generate") return guarded("fixtures generate", [&] { return generate(rest); });
  if (args[0] == "oracle-candidate") return guarded("fixtures oracle-candidate", [&] { return oracle_candidate(rest); });
  std::fprintf(stderr, "lla fixtures: unknown command '%s'\n\n", args[0].c_str());
  fixtures_help();
  return kUsageError;
}

int run_verify(const std::vector<std::string>& args) { return guarded("verify", [&] { return verify(args); }); }
int run_inspect(const std::vector<std::string>& args) { return guarded("inspect", [&] { return inspect(args); }); }

}  // namespace lla::cli
