#pragma once
// A minimal option parser for the lla subcommands: --name value, --flag, and
// positional arguments. Unknown options are usage errors (exit code 2).

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace lla::cli {

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Args {
  std::map<std::string, std::string> values;
  std::set<std::string> flags;
  std::vector<std::string> positional;

  bool has(const std::string& k) const { return values.count(k) || flags.count(k); }
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
  std::string require(const std::string& k) const {
    auto it = values.find(k);
    if (it == values.end()) throw UsageError("missing --" + k);
    return it->second;
  }
};

// value_options take a value; flag_options do not.
inline Args parse_args(const std::vector<std::string>& argv, const std::set<std::string>& value_options,
                       const std::set<std::string>& flag_options) {
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s.rfind("--", 0) == 0) {
      std::string key = s.substr(2), value;
      const auto eq = key.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) {
        value = key.substr(eq + 1);
        key = key.substr(0, eq);
      }
      if (flag_options.count(key) && !inline_value) {
        a.flags.insert(key);
      } else if (value_options.count(key)) {
        if (!inline_value) {
          if (i + 1 >= argv.size()) throw UsageError("--" + key + " needs a value");
          value = argv[++i];
        }
        a.values[key] = value;
      } else {
        throw UsageError("unknown option --" + key);
      }
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

// A progress bar on stderr: redrawn in place on a terminal, one line per call
// otherwise (logs).
inline void progress(size_t done, size_t total, const std::string& name) {
  const bool tty = isatty(fileno(stderr));
  const int width = 30;
  const int filled = total ? static_cast<int>(width * done / total) : width;
  std::fprintf(stderr, "%s[%.*s%*s] %zu/%zu %s%s", tty ? "\r" : "", filled, "##############################",
               width - filled, "", done, total, name.c_str(), tty ? "\033[K" : "\n");
  if (tty && done == total) std::fprintf(stderr, "\n");
}

// JSON string escaping for the --json outputs.
inline std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}

inline std::string json_number(double x) {
  if (!std::isfinite(x)) return std::isnan(x) ? "null" : (x > 0 ? "\"inf\"" : "\"-inf\"");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

}  // namespace lla::cli
