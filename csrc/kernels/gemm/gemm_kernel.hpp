// Persistent warp-specialized GEMM kernel for sm_90a.
//
// Warpgroup 0 is the producer: one elected thread streams A and B K-tiles
// with TMA into a kStages-deep PipelineTmaAsync ring. Warpgroups 1..2 are
// consumers: each runs wgmma on its WgM rows, keeps one wgmma batch in flight
// while waiting for the next stage, and writes its rows through the chunked
// TMA-store epilogue. All roles walk the same static tile schedule, so while
// consumers run an epilogue the producer is already filling the next tile.
//
// The kernel is mainloop (producer_loop / consumer_loop) + epilogue
// (T::Epilogue) + scheduler: `Scheduler` is a template parameter with
// cute/scheduler.hpp's interface, constructed from the kernel parameters,
// and the loops only ask it for work tiles and their block coordinates; another order or
// claiming scheme plugs in at launch<T, Scheduler> without touching the
// mainloop. The default is T::Scheduler (cute/tile_scheduler.hpp).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/gemm/gemm_traits.hpp"

namespace cd42::gemm {

template <class T, class Scheduler>
CUTE_DEVICE void producer_loop(typename T::Params const& p, typename T::SharedStorage& ss,
                               typename T::Pipeline& pipeline) {
  using namespace cute;
  Tensor mA = p.tma_a.get_tma_tensor(make_shape(p.M, p.K));
  Tensor mB = p.tma_b.get_tma_tensor(make_shape(p.N, p.K));
  Tensor gA = local_tile(mA, Shape<Int<T::kWgM>, Int<T::kTileK>>{}, make_coord(_, _));    // (WgM,BK,m,k)
  Tensor gB = local_tile(mB, Shape<Int<T::kTileN>, Int<T::kTileK>>{}, make_coord(_, _));  // (BN,BK,n,k)
  Tensor sA0 = make_tensor(make_smem_ptr(ss.A[0].begin()), typename T::SmemLayoutA{});
  Tensor sA1 = make_tensor(make_smem_ptr(ss.A[1].begin()), typename T::SmemLayoutA{});
  Tensor sB = make_tensor(make_smem_ptr(ss.B.begin()), typename T::SmemLayoutB{});

  auto [tAgA, tAsA0] = tma_partition(p.tma_a, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sA0), group_modes<0, 2>(gA));
  auto [tAgA_, tAsA1] = tma_partition(p.tma_a, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sA1), group_modes<0, 2>(gA));
  auto [tBgB, tBsB] = tma_partition(p.tma_b, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sB), group_modes<0, 2>(gB));

  int const k_tiles = (p.K + T::kTileK - 1) / T::kTileK;
  Scheduler sched(p);
  auto state = cutlass::make_producer_start_state<typename T::Pipeline>();
  for (auto work = sched.initial_work(); work.is_valid(); work = sched.next_work(work)) {
    int m_blk, n_blk;
    sched.block_coords(work, m_blk, n_blk);
    for (int k = 0; k < k_tiles; ++k) {
      pipeline.producer_acquire(state);
      auto* bar = pipeline.producer_get_barrier(state);
      int const s = state.index();
      // Rows past M (or a whole second half past M) are zero-filled by TMA and
      // still count toward the stage's transaction bytes.
      copy(p.tma_a.with(*bar), tAgA(_, 2 * m_blk, k), tAsA0(_, s));
      copy(p.tma_a.with(*bar), tAgA(_, 2 * m_blk + 1, k), tAsA1(_, s));
      copy(p.tma_b.with(*bar), tBgB(_, n_blk, k), tBsB(_, s));
      ++state;
    }
  }
  // Keep the CTA alive until consumers released every stage we filled.
  pipeline.producer_tail(state);
}

template <class T, class Scheduler>
CUTE_DEVICE void consumer_loop(typename T::Params const& p, typename T::SharedStorage& ss,
                               typename T::Pipeline& pipeline, int wg) {
  using namespace cute;
  int const t = threadIdx.x % kWarpGroupThreads;
  typename T::TiledMma mma;
  auto thr = mma.get_thread_slice(t);
  Tensor sA = make_tensor(make_smem_ptr(ss.A[wg].begin()), typename T::SmemLayoutA{});  // (WgM,BK,S)
  Tensor sB = make_tensor(make_smem_ptr(ss.B.begin()), typename T::SmemLayoutB{});      // (BN,BK,S)
  Tensor tCrA = thr.make_fragment_A(thr.partition_A(sA));  // (MMA,MMA_M,MMA_K,S) smem descriptors
  Tensor tCrB = thr.make_fragment_B(thr.partition_B(sB));  // (MMA,MMA_N,MMA_K,S)
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

  int const k_tiles = (p.K + T::kTileK - 1) / T::kTileK;
  Scheduler sched(p);
  typename T::Pipeline::PipelineState read_state;     // stage to wait on next
  typename T::Pipeline::PipelineState release_state;  // oldest stage still read by wgmma
  int epi_chunks = 0;
  for (auto work = sched.initial_work(); work.is_valid(); work = sched.next_work(work)) {
    int m_blk, n_blk;
    sched.block_coords(work, m_blk, n_blk);
    int const m_rows = 2 * m_blk + wg;  // this warpgroup's block of WgM rows

    // First K tile overwrites the accumulators (no separate clear).
    mma.accumulate_ = GMMA::ScaleOut::Zero;
    pipeline.consumer_wait(read_state);
    mma_k_tile(read_state.index());
    warpgroup_fence_operand(acc);
    ++read_state;
    for (int k = 1; k < k_tiles; ++k) {
      pipeline.consumer_wait(read_state);
      mma_k_tile(read_state.index());
      // The batch before this one is done: its stage may be refilled.
      warpgroup_wait<1>();
      warpgroup_fence_operand(acc);
      pipeline.consumer_release(release_state);
      ++release_state;
      ++read_state;
    }
    warpgroup_wait<0>();
    warpgroup_fence_operand(acc);
    pipeline.consumer_release(release_state);
    ++release_state;

    if (m_rows * T::kWgM < p.M) {  // warpgroup-uniform: skip rows wholly past M
      T::Epilogue::store(p.tma_c, acc, ss.C[wg], p.M, p.N, m_rows, n_blk, t, wg, epi_chunks);
    }
  }
  T::Epilogue::drain(t);
}

template <class T, class Scheduler>
__global__ void __launch_bounds__(T::kThreads, 1) gemm_kernel(CUTE_GRID_CONSTANT typename T::Params const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);
  using Pipeline = typename T::Pipeline;
  using Regs = RegisterSplit<T::kConsumerWGs>;

  int const warp_group = threadIdx.x / kWarpGroupThreads;
  int const warp_idx = cutlass::canonical_warp_idx_sync();
  int const lane_leader = cute::elect_one_sync();
  if (warp_idx == 0 && lane_leader) {
    cute::prefetch_tma_descriptor(p.tma_a.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_b.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_c.get_tma_descriptor());
  }

  Pipeline pipeline(ss.pipeline,
                    tma_pipeline_params<Pipeline>(warp_group == 0, T::kTmaBytesPerStage,
                                                  T::kConsumerWGs * kWarpGroupThreads),
                    cute::Shape<cute::_1, cute::_1, cute::_1>{});
  __syncthreads();  // barrier init visible to all roles

  if (warp_group == 0) {
    cutlass::arch::warpgroup_reg_dealloc<Regs::kProducerRegs>();
    if (warp_idx == 0 && lane_leader) producer_loop<T, Scheduler>(p, ss, pipeline);
  } else {
    cutlass::arch::warpgroup_reg_alloc<Regs::kConsumerRegs>();
    consumer_loop<T, Scheduler>(p, ss, pipeline, warp_group - 1);
  }
}

}  // namespace cd42::gemm
