#pragma once
// A tuning build's view of where a decode CTA spends its time (-DLLA_DECODE_TIMELINE):
// per CTA, clock64 at the phase points LLA_TL(0..7) of the tensor-core body and the
// global timer at entry and exit, stored in g_decode_timeline and printed by
// bench_parallax_decode after each shape (decode_timeline_report in launch.cu). In a
// normal build the macros are empty. docs/gpu.md ("What the time goes to") has what it found.
//   0 entry  1 first copies issued  2 q, r staged  3 tile 0 ready  4 key loop done
//   5 warps combined  6 split merge synchronised (cluster) or counted (global)  7 end
//   8 barriers initialised  9 q, r loads issued  10 CTA planned (prologue detail)

namespace lla::gpu::decode {

#ifdef LLA_DECODE_TIMELINE
inline constexpr int kTimelineCtas = 8192, kTimelinePoints = 11;
// Per CTA: the points, the global timer at entry and exit, the SM it ran on.
__device__ unsigned long long g_decode_timeline[kTimelineCtas][kTimelinePoints + 3];
__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}
#define LLA_TL(i) \
  do {            \
    if (threadIdx.x == 0) tl_clk[i] = clock64(); \
  } while (0)
#define LLA_TL_FLUSH()                                                                                         \
  do {                                                                                                        \
    if (threadIdx.x == 0) {                                                                                   \
      const long long cta = (static_cast<long long>(blockIdx.z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x; \
      if (cta < kTimelineCtas) {                                                                              \
        for (int i_ = 0; i_ < kTimelinePoints; ++i_) g_decode_timeline[cta][i_] = tl_clk[i_];                \
        g_decode_timeline[cta][kTimelinePoints] = tl_start_ns;                                               \
        g_decode_timeline[cta][kTimelinePoints + 1] = global_timer_ns();                                     \
        unsigned sm_;                                                                                         \
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm_));                                                     \
        g_decode_timeline[cta][kTimelinePoints + 2] = sm_;                                                    \
      }                                                                                                       \
    }                                                                                                         \
  } while (0)
#else
#define LLA_TL(i) do {} while (0)
#define LLA_TL_FLUSH() do {} while (0)
#endif

}  // namespace lla::gpu::decode
