#pragma once
// The accuracy lines of the GPU suites (max-norm relative errors against the fp64
// oracle): printed, and appended to the file LLA_ACCURACY_LOG names, if it is set.
// ctest shows a passing test's output to no one; the GPU lane (tools/gpu-check.sh)
// collects the lines from that file instead of running the accuracy tests twice.

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace lla::test {

[[gnu::format(printf, 1, 2)]] inline void accuracy_line(const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof line, format, args);
  va_end(args);
  std::fputs(line, stdout);
  if (const char* path = std::getenv("LLA_ACCURACY_LOG"); path != nullptr && *path != '\0') {
    // One fputs of a whole line to a file opened for appending: test processes running
    // side by side do not interleave within a line.
    if (std::FILE* f = std::fopen(path, "a")) {
      std::fputs(line, f);
      std::fclose(f);
    }
  }
}

}  // namespace lla::test
