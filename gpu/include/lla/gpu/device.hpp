#pragma once
// The GPU lane's view of the machine: is there a usable CUDA device, and which.
// Host-only header (no CUDA types), so CPU-only code and tests can include it.

#include <string>

namespace lla::gpu {

enum class DeviceState {
  available,  // a device and a working driver
  absent,     // the runtime reports no device or no driver: the only reason to skip GPU tests
  error,      // anything else (a device fault is not an absent device): a failure
};

struct DeviceInfo {
  DeviceState state = DeviceState::absent;
  std::string message;  // why absent / what failed, or the device description
  int device_count = 0;
  std::string name;
  int sm_count = 0;
  int compute_major = 0;
  int compute_minor = 0;
  size_t global_memory_bytes = 0;
};

// Queries device 0 (CUDA_VISIBLE_DEVICES selects which physical device that is).
DeviceInfo query_device();

// Launches a tiny kernel that writes a known pattern and reads it back; returns
// an empty string on success, otherwise what went wrong. Proves that code built
// for the configured architecture actually runs on the device.
std::string launch_self_test(int elements);

}  // namespace lla::gpu
