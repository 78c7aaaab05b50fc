// `lla compare`, method parallax_gpu: the CUDA decode kernel (gpu/, docs/gpu.md) on the
// configuration's inputs, when this build has it and the machine has a device.
// Prefill of length L is the kernel's end-aligned causal case with Lq = Lk = L.
#include <mutex>

#include "compare.hpp"

#if LLA_COMPARE_GPU
#include <cuda_runtime.h>

#include <memory>

#include "lla/gpu/device.hpp"
#include "lla/gpu/parallax_decode.hpp"
#endif

namespace lla::compare {

#if LLA_COMPARE_GPU

namespace {
const gpu::DeviceInfo& device() {
  static const gpu::DeviceInfo info = gpu::query_device();
  return info;
}
}  // namespace

std::string gpu_availability() {
  if (device().state == gpu::DeviceState::available) return "";
  // query_device's message already says what is missing ("no CUDA device: ...").
  return device().state == gpu::DeviceState::absent ? device().message : "CUDA error: " + device().message;
}

Forward gpu_parallax_forward(const Config& c, const oracle::AttentionInputs<double>& in) {
  Forward f;
  f.available = false;
  if (c.precision != Precision::bf16 && c.precision != Precision::fp16) {
    f.note = "gpu kernel: not available (it takes bf16 or fp16 inputs)";
    return f;
  }
  if (const auto why = gpu_availability(); !why.empty()) {
    f.note = "gpu kernel: not available (" + why + ")";
    return f;
  }
  static std::mutex one_at_a_time;  // the sweep's worker threads share the device
  std::lock_guard<std::mutex> lock(one_at_a_time);
  const bool bf16 = c.precision == Precision::bf16;
  auto check = [](cudaError_t e) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("gpu kernel: ") + cudaGetErrorString(e));
  };
  auto allocate = [&](size_t elements) {
    void* p = nullptr;
    check(cudaMalloc(&p, elements * sizeof(uint16_t)));
    return std::unique_ptr<void, decltype(&cudaFree)>(p, cudaFree);
  };
  auto upload = [&](const Tensor4<double>& t) {
    std::vector<uint16_t> bits(static_cast<size_t>(t.size()));
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = bf16 ? bf16_bits(t.data()[i]) : fp16_bits(t.data()[i]);
    auto d = allocate(bits.size());
    check(cudaMemcpy(d.get(), bits.data(), bits.size() * sizeof(uint16_t), cudaMemcpyHostToDevice));
    return d;
  };
  const auto q = upload(in.q), k = upload(in.k), v = upload(in.v), r = upload(in.r);
  const auto o = allocate(static_cast<size_t>(in.q.size()));
  gpu::DecodeArgs a;
  a.problem = config_problem(c, Variant::parallax);
  a.dtype = bf16 ? gpu::DType::bf16 : gpu::DType::fp16;
  a.q = q.get();
  a.k = k.get();
  a.v = v.get();
  a.r = r.get();
  a.o = o.get();
  a.num_splits = 1;  // no workspace; the split count changes only the summation order
  const auto status = gpu::parallax_decode(a, nullptr, device().sm_count);
  if (!status.ok) {
    f.note = "gpu kernel: refused (" + status.message + ")";
    return f;
  }
  check(cudaDeviceSynchronize());
  std::vector<uint16_t> bits(static_cast<size_t>(in.q.size()));
  check(cudaMemcpy(bits.data(), o.get(), bits.size() * sizeof(uint16_t), cudaMemcpyDeviceToHost));
  f.o = Tensor4<double>(in.q.shape());
  for (size_t i = 0; i < bits.size(); ++i) f.o.data()[i] = bf16 ? bf16_value(bits[i]) : fp16_value(bits[i]);
  f.available = true;
  f.note = "gpu kernel: " + device().name;
  return f;
}

#else

std::string gpu_availability() { return "this build has no CUDA: nvcc was not found when it was configured"; }

Forward gpu_parallax_forward(const Config&, const oracle::AttentionInputs<double>&) {
  Forward f;
  f.available = false;
  f.note = "gpu kernel: not available (" + gpu_availability() + ")";
  return f;
}

#endif

}  // namespace lla::compare
