#pragma once
// Subcommands of the `lla` tool. Each takes its own arguments (after the
// subcommand name) and returns the process exit code:
//   0 success, 1 a check failed, 2 usage or input error.

#include <string>
#include <vector>

namespace lla::cli {

inline constexpr int kOk = 0;
inline constexpr int kCheckFailed = 1;
inline constexpr int kUsageError = 2;

int run_demo(const std::vector<std::string>& args);
int run_fixtures(const std::vector<std::string>& args);
int run_verify(const std::vector<std::string>& args);
int run_inspect(const std::vector<std::string>& args);
int run_compare(const std::vector<std::string>& args);

}  // namespace lla::cli
