// Persistent warp-specialized fused MoE up-projection for sm_90a.
//
// Warpgroup 0 is the producer (moe_up_producer.hpp): all 128 threads gather
// A rows from x with cp.async, thread 0 also loads the paired gate/up B
// boxes with TMA. Warpgroups 1..2 are the consumers: each runs wgmma on its
// 64 rows of the 128-row tile against the 256-column B tile, keeps one wgmma
// batch in flight while waiting for the next stage, and writes h and the
// pre-activation through moe_up_epilogue.hpp. Both roles walk the grouped
// GEMM's ragged-M schedule (ggemm_scheduler.hpp), one warp at a time.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/grouped_gemm/ggemm_scheduler.hpp"
#include "kernels/moe/moe_up_epilogue.hpp"
#include "kernels/moe/moe_up_producer.hpp"

namespace cd42::moe {

// The gather producer keeps 8 token ids, addresses and a pipeline state live:
// a TMA-only producer's 40 registers would spill. 56 + 2 * 224 = 504 <= 512.
struct MoeUpRegisters {
  static constexpr int kProducerRegs = 56;
  static constexpr int kConsumerRegs = 224;
};
static_assert(setmaxnreg_pool_ok(168, MoeUpRegisters::kProducerRegs, 2, MoeUpRegisters::kConsumerRegs),
              "consumers must not take more registers than the producer frees (launch: 65536 / 384 -> 168)");

template <class T>
CUTE_DEVICE void consumer_loop(MoeUpParams<T> const& p, typename T::SharedStorage& ss, int wg) {
  using namespace cute;
  ggemm::GroupedProblem const& prob = p.prob;
  int const t = threadIdx.x % kWarpGroupThreads;
  typename T::TiledMma mma;
  auto thr = mma.get_thread_slice(t);
  Tensor sA = make_tensor(make_smem_ptr(ss.A[wg].begin()), typename T::SmemLayoutA{});  // (WgM,BK,S)
  Tensor sB = make_tensor(make_smem_ptr(ss.B.begin()), typename T::SmemLayoutB{});      // (BN,BK,S)
  Tensor tCrA = thr.make_fragment_A(thr.partition_A(sA));  // smem descriptors
  Tensor tCrB = thr.make_fragment_B(thr.partition_B(sB));
  Tensor acc = partition_fragment_C(mma, Shape<Int<T::kWgM>, Int<T::kTileN>>{});  // fp32 registers

  auto mma_k_tile = [&](int s) {
    warpgroup_fence_operand(acc);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int kb = 0; kb < size<2>(tCrA); ++kb) {
      cute::gemm(mma, tCrA(_, _, kb, s), tCrB(_, _, kb, s), acc);
      mma.accumulate_ = GMMA::ScaleOut::One;
    }
    warpgroup_commit_batch();
  };

  cutlass::PipelineState<T::kStages> read_state;     // stage to wait on next
  cutlass::PipelineState<T::kStages> release_state;  // oldest stage still read by wgmma
  int epi_chunks = 0;
  int const k_tiles = (prob.K + T::kTileK - 1) / T::kTileK;
  ggemm::GroupedScheduler<T> sched(prob);
  for (ggemm::WorkTile w = sched.initial_work(); w.is_valid(); w = sched.next_work(w)) {
    RowWindow const out{w.start + w.m_blk * T::kTileM + wg * T::kWgM, w.end, w.n_blk * T::kHalfN};
    bool const store = out.row0 < out.row_end;  // warpgroup-uniform: rows wholly past the expert
    if (w.group == prob.groups || k_tiles == 0) {
      // The tail rows past offs[-1] (or H == 0): zeros, without touching the
      // accumulators, so no path merges wgmma-defined registers with others.
      if (store) MoeUpEpilogue<T>::template store<true>(p, acc, ss.C[wg].begin(), out, t, wg, epi_chunks);
      continue;
    }
    mma.accumulate_ = GMMA::ScaleOut::Zero;  // the first K block overwrites the accumulators
    ss.full[read_state.index()].wait(read_state.phase());
    mma_k_tile(read_state.index());
    warpgroup_fence_operand(acc);
    ++read_state;
    for (int k = 1; k < k_tiles; ++k) {
      ss.full[read_state.index()].wait(read_state.phase());
      mma_k_tile(read_state.index());
      // The batch before this one is done: its stage may be refilled.
      warpgroup_wait<1>();
      warpgroup_fence_operand(acc);
      ss.empty[release_state.index()].arrive();
      ++release_state;
      ++read_state;
    }
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc);
    ss.empty[release_state.index()].arrive();
    ++release_state;
    if (store) MoeUpEpilogue<T>::template store<false>(p, acc, ss.C[wg].begin(), out, t, wg, epi_chunks);
  }
  MoeUpEpilogue<T>::drain(t);
}

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) moe_up_swiglu_kernel(CUTE_GRID_CONSTANT MoeUpParams<T> const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);

  int const warp_group = threadIdx.x / kWarpGroupThreads;
  if (threadIdx.x == 0) {
    cute::prefetch_tma_descriptor(p.tma_w.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_h.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_pre.get_tma_descriptor());
    CUTE_UNROLL
    for (int s = 0; s < T::kStages; ++s) {
      ss.full[s].init(T::kFullArrivals);
      ss.empty[s].init(T::kEmptyArrivals);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();  // barrier init visible to all roles

  if (warp_group == 0) {
    cutlass::arch::warpgroup_reg_dealloc<MoeUpRegisters::kProducerRegs>();
    gather_producer_loop<T>(p, ss);
  } else {
    cutlass::arch::warpgroup_reg_alloc<MoeUpRegisters::kConsumerRegs>();
    consumer_loop<T>(p, ss, warp_group - 1);
  }
}

}  // namespace cd42::moe
