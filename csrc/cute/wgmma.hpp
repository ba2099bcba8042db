// Warpgroup MMA helpers shared by the kernels.
#pragma once

#include <cute/tensor.hpp>

namespace cd42 {

// C = A B over the K mode of the fragments, overwriting C (no clear needed),
// issued as one committed wgmma batch; the caller waits (warpgroup_wait)
// and fences C before reading it.
template <class TiledMma, class FragA, class FragB, class FragC>
CUTE_DEVICE void wgmma_overwrite(TiledMma& mma, FragA const& a, FragB const& b, FragC& c) {
  using namespace cute;
  mma.accumulate_ = GMMA::ScaleOut::Zero;
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  CUTE_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(mma, a(_, _, kb), b(_, _, kb), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
}

// wgmma.wait_group<N> that ptxas cannot move above the computation of
// `after`. ptxas treats a wgmma wait as free to schedule anywhere past its
// program-order predecessors that touch the in-flight registers, and in the
// attention forward it hoisted the PV wait above the whole softmax (all 64
// MUFU.EX2 of a block ran after the PV wgmma retired: no overlap left). A
// branch on a warp vote over `after` makes the wait control-dependent on it;
// the test is always true for the values callers pass (sums of
// exponentials: >= 0, +inf or NaN are all "not < 0"), and the vote keeps the
// branch warp-uniform as the .aligned wait requires.
template <int N>
CUTE_DEVICE void warpgroup_wait_after(float after) {
  if (__any_sync(0xffffffffu, !(after < 0.f))) {
    cute::warpgroup_wait<N>();
  } else {  // never taken; a distinct asm string so the branches are not merged
    asm volatile("{\n\twgmma.wait_group.sync.aligned %0;\n}\n" ::"n"(N) : "memory");
  }
}

}  // namespace cd42
