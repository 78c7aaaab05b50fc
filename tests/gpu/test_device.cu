// The GPU lane itself: a device is found, and code built for the configured
// architecture runs on it and produces the expected values.
#include <gtest/gtest.h>

#include "gpu/gpu_gate.hpp"

namespace lla::test {
namespace {

TEST(GpuLane, DeviceRunsOurCode) {
  LLA_REQUIRE_DEVICE();
  const auto& info = device_info();
  EXPECT_GE(info.sm_count, 1);
  std::cout << "device: " << info.message << "\n";
  // 2^20 elements: many blocks, so a wrong grid or index shows in the pattern.
  EXPECT_EQ(gpu::launch_self_test(1 << 20), "");
}

}  // namespace
}  // namespace lla::test
