#pragma once
// Honest GPU skips. A GPU test calls LLA_REQUIRE_DEVICE() first:
//  - no device or no driver  -> GTEST_SKIP with the reason, unless LLA_REQUIRE_GPU=1
//                               (the GPU lane), where it is a failure;
//  - any other CUDA error    -> a failure (a device fault is not an absent device).

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "lla/gpu/device.hpp"

namespace lla::test {

inline bool gpu_required() {
  const char* v = std::getenv("LLA_REQUIRE_GPU");
  return v != nullptr && std::string(v) == "1";
}

inline const gpu::DeviceInfo& device_info() {
  static const gpu::DeviceInfo info = gpu::query_device();
  return info;
}

}  // namespace lla::test

#define LLA_REQUIRE_DEVICE()                                                                       \
  do {                                                                                             \
    const auto& lla_info_ = ::lla::test::device_info();                                            \
    if (lla_info_.state == ::lla::gpu::DeviceState::error) {                                       \
      FAIL() << "CUDA error while looking for a device: " << lla_info_.message;                    \
    }                                                                                              \
    if (lla_info_.state == ::lla::gpu::DeviceState::absent) {                                      \
      if (::lla::test::gpu_required()) {                                                           \
        FAIL() << "LLA_REQUIRE_GPU=1 but " << lla_info_.message;                                   \
      }                                                                                            \
      GTEST_SKIP() << "GPU test skipped: " << lla_info_.message                                    \
                   << " (set LLA_REQUIRE_GPU=1 to make this a failure)";                           \
    }                                                                                              \
  } while (0)
