#pragma once
// Types shared by the GPU entry points (host-only: no CUDA types).
#include <string>

namespace lla::gpu {

enum class DType { bf16, fp16 };
const char* to_string(DType d);

// The outcome of a launch request: ok, or why the call was refused (unsupported or
// invalid arguments), in which case nothing was launched.
struct Status {
  bool ok = true;
  std::string message;
};

}  // namespace lla::gpu
