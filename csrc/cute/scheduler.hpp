// The one tile-scheduler interface of every kernel here (GEMM, attention
// forward and backward). A kernel is mainloop + epilogue + scheduler; its
// roles (producer, consumers) only ask the scheduler for work, and the
// scheduler alone decides the order and how work is claimed.
//
//   struct WorkTile {
//     ...coordinates...;
//     CUTE_HOST_DEVICE bool is_valid() const;   // false: no more work
//   };
//   struct SomeScheduler {
//     // Constructed on the device from the kernel parameters (plus, where
//     // one role claims work for the others, the shared memory and pipeline
//     // it publishes the claimed work through).
//     CUTE_DEVICE WorkTile initial_work();                  // this CTA's first tile
//     CUTE_DEVICE WorkTile next_work(WorkTile const& cur);  // owns claiming: a static
//                                                           // stride, or an atomic counter
//     static dim3 / int grid_size(...);                     // host: the (persistent) grid
//   };
//
// A role walks its work as
//
//   for (auto w = sched.initial_work(); w.is_valid(); w = sched.next_work(w)) { ... }
//
// or in an equivalent shape. A scheduler whose claim is an atomic may let the
// claiming role call next_work() before the current tile's loads are issued,
// so the atomic's latency hides under them (the attention forward does).
// A non-persistent scheduler (one CTA per tile) returns an invalid tile from
// next_work().
//
// Implementations: cute/tile_scheduler.hpp (dense GEMM), kernels/attention/
// fwd_scheduler.hpp (forward: longest-first sections, split tail, atomic
// claims), kernels/attention/bwd_scheduler.hpp (backward: one key block per
// CTA in L2-sized groups).
#pragma once

#include <cute/config.hpp>

namespace cd42 {

// A persistent grid never needs more CTAs than work items.
CUTE_HOST_DEVICE constexpr int persistent_grid_size(int work_items, int num_sms) {
  return work_items < num_sms ? work_items : num_sms;
}

// gridDim.x read afresh at each call (volatile): a role that claims work in
// a loop does not keep it in a register for the whole loop, which a
// register-starved producer (24 registers) cannot afford.
CUTE_DEVICE int fresh_grid_dim_x() {
  int grid;
  asm volatile("mov.u32 %0, %%nctaid.x;" : "=r"(grid));
  return grid;
}

}  // namespace cd42
