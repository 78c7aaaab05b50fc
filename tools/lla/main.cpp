// lla: the project's command-line tool (git-style subcommands).
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

struct Command {
  const char* summary;
  std::function<int(const std::vector<std::string>&)> run;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> table{
      {"demo", {"run the fp64 oracle on a representative problem set and print a summary", lla::cli::run_demo}},
      {"fixtures", {"generate golden HDF5 fixtures (generate, oracle-candidate)", lla::cli::run_fixtures}},
      {"verify", {"judge candidate outputs against a fixture folder", lla::cli::run_verify}},
      {"inspect", {"validate one fixture and print its attributes, datasets and error bar", lla::cli::run_inspect}},
      {"compare", {"measure LLA's solvers and Parallax against the fp64 oracle over a sweep", lla::cli::run_compare}},
  };
  return table;
}

void print_usage(FILE* to) {
  std::fprintf(to,
               "usage: lla <command> [options]\n\n"
               "The ground truth for softmax attention, Parallax and local linear attention.\n\n"
               "commands:\n");
  for (const auto& [name, cmd] : commands()) std::fprintf(to, "  %-10s %s\n", name.c_str(), cmd.summary);
  std::fprintf(to, "\n'lla <command> --help' describes a command. Exit codes: 0 ok, 1 a check failed, "
                   "2 usage or input error.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_usage(stderr);
    return lla::cli::kUsageError;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage(stdout);
    return lla::cli::kOk;
  }
  const auto it = commands().find(args[0]);
  if (it == commands().end()) {
    std::fprintf(stderr, "lla: unknown command '%s'\n\n", args[0].c_str());
    print_usage(stderr);
    return lla::cli::kUsageError;
  }
  try {
    return it->second.run(std::vector<std::string>(args.begin() + 1, args.end()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lla %s: error: %s\n", args[0].c_str(), e.what());
    return lla::cli::kUsageError;
  }
}
