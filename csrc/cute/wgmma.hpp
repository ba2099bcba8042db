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

}  // namespace cd42
