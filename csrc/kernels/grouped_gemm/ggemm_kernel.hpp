// Persistent warp-specialized grouped GEMM for sm_90a.
//
// Warp 0 is the producer: it walks the scheduler's work tiles and one lane
// streams each tile's A and B K-blocks with TMA into a kStages-deep
// PipelineTmaAsync ring (the whole warp walks the schedule: the ragged
// scheduler's group search is warp-cooperative). Warpgroups 1..2 are the
// consumers: each runs wgmma on its WgM rows of the tile, keeps one wgmma
// batch in flight while waiting for the next stage, and writes its rows
// through the grouped epilogue. Producer and consumers walk the same
// schedule, so the producer fills the next tile while consumers store.
//
// Ragged K (the weight-gradient form): a group's last K block may hold rows
// of the next group. The consumers zero those K rows of both operands in
// shared memory before the block's wgmma, so nothing past the group's end
// is accumulated (TMA zero-fills only past the tensor, not past a group).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/grouped_gemm/ggemm_epilogue.hpp"
#include "kernels/grouped_gemm/ggemm_scheduler.hpp"

namespace cd42::ggemm {

// Where a work tile reads and writes: the (row, k, batch) origin of its A and
// B windows, its K length, and C's window. One place decodes the four forms.
struct TileGeom {
  int a_row, a_batch, b_row, b_batch;
  int k0, k_len;
  int c_row, c_col, c_batch, row_end, col_end;
};

template <class T>
CUTE_DEVICE TileGeom tile_geom(GroupedProblem const& p, WorkTile const& w) {
  TileGeom g;
  int const m0 = w.m_blk * T::kTileM;
  int const n0 = w.n_blk * T::kTileN;
  g.a_row = m0; g.a_batch = 0; g.b_row = n0; g.b_batch = 0;
  g.k0 = 0; g.k_len = p.K;
  g.c_row = m0; g.c_col = n0; g.c_batch = 0; g.row_end = p.M; g.col_end = p.N;
  if constexpr (T::kMode == Ragged::kNone) {
    g.a_batch = g.b_batch = g.c_batch = w.group;
  } else if constexpr (T::kMode == Ragged::kM) {
    g.a_row = g.c_row = w.start + m0;
    g.row_end = w.end;
    g.b_batch = w.group;
  } else if constexpr (T::kMode == Ragged::kN) {
    g.b_row = g.c_col = w.start + n0;
    g.col_end = w.end;
    g.a_batch = w.group;
  } else {
    g.k0 = w.start;
    g.k_len = w.end - w.start;
    g.c_batch = w.group;
  }
  if (w.group == p.groups) g.k_len = 0;  // the zero tail past offs[G-1]
  return g;
}

template <class T>
CUTE_DEVICE void producer_loop(GroupedParams<T> const& p, typename T::SharedStorage& ss,
                               typename T::Pipeline& pipeline) {
  using namespace cute;
  GroupedProblem const& prob = p.prob;
  int const ga = T::kMode == Ragged::kNone || T::kMode == Ragged::kN ? prob.groups : 1;
  int const gb = T::kMode == Ragged::kNone || T::kMode == Ragged::kM ? prob.groups : 1;
  Tensor mA = p.tma_a.get_tma_tensor(make_shape(prob.M, prob.K, ga));
  Tensor mB = p.tma_b.get_tma_tensor(make_shape(prob.N, prob.K, gb));
  Tensor sA0 = make_tensor(make_smem_ptr(ss.A[0].begin()), typename T::SmemLayoutA{});
  Tensor sA1 = make_tensor(make_smem_ptr(ss.A[1].begin()), typename T::SmemLayoutA{});
  Tensor sB = make_tensor(make_smem_ptr(ss.B.begin()), typename T::SmemLayoutB{});
  bool const issuer = cute::elect_one_sync();

  GroupedScheduler<T> sched(prob);
  auto state = cutlass::make_producer_start_state<typename T::Pipeline>();
  for (WorkTile w = sched.initial_work(); w.is_valid(); w = sched.next_work(w)) {
    TileGeom const g = tile_geom<T>(prob, w);
    int const k_tiles = (g.k_len + T::kTileK - 1) / T::kTileK;
    Tensor gA = local_tile(domain_offset(make_coord(g.a_row, g.k0), mA(_, _, g.a_batch)),
                           Shape<Int<T::kWgM>, Int<T::kTileK>>{}, make_coord(_, _));  // (WgM,BK,m,k)
    Tensor gB = local_tile(domain_offset(make_coord(g.b_row, g.k0), mB(_, _, g.b_batch)),
                           Shape<Int<T::kTileN>, Int<T::kTileK>>{}, make_coord(_0{}, _));  // (BN,BK,k)
    auto [tAgA, tAsA0] = tma_partition(p.tma_a, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sA0), group_modes<0, 2>(gA));
    auto [tAgA_, tAsA1] = tma_partition(p.tma_a, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sA1), group_modes<0, 2>(gA));
    auto [tBgB, tBsB] = tma_partition(p.tma_b, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sB), group_modes<0, 2>(gB));
    for (int k = 0; k < k_tiles; ++k) {
      pipeline.producer_acquire(state);
      if (issuer) {
        auto* bar = pipeline.producer_get_barrier(state);
        int const s = state.index();
        // Rows past the tensor are zero-filled by TMA and still count toward
        // the stage's transaction bytes.
        copy(p.tma_a.with(*bar), tAgA(_, 0, k), tAsA0(_, s));
        copy(p.tma_a.with(*bar), tAgA(_, 1, k), tAsA1(_, s));
        copy(p.tma_b.with(*bar), tBgB(_, k), tBsB(_, s));
      }
      ++state;
    }
  }
  // Keep the CTA alive until consumers released every stage we filled.
  pipeline.producer_tail(state);
}

// Zeroes K rows [k_valid, TileK) of stage `s`: this warpgroup's A block and
// its half of the B block; then both consumer warpgroups meet, so each sees
// the other's half of B before its wgmma reads it.
template <class T, class SA, class SB>
CUTE_DEVICE void zero_k_tail(SA& sA, SB& sB, int s, int k_valid, int t, int wg) {
  constexpr int kHalfN = T::kTileN / 2;
  int const k_rest = T::kTileK - k_valid;
  using E = typename T::Element;
  for (int i = t; i < T::kWgM * k_rest; i += kWarpGroupThreads) {
    sA(i % T::kWgM, k_valid + i / T::kWgM, s) = E(0);
  }
  for (int i = t; i < kHalfN * k_rest; i += kWarpGroupThreads) {
    sB(wg * kHalfN + i % kHalfN, k_valid + i / kHalfN, s) = E(0);
  }
  cutlass::arch::fence_view_async_shared();
  cutlass::arch::NamedBarrier::sync(T::kConsumerWGs * kWarpGroupThreads, T::kKTailZeroBarrier);
}

template <class T>
CUTE_DEVICE void consumer_loop(GroupedParams<T> const& p, typename T::SharedStorage& ss,
                               typename T::Pipeline& pipeline, int wg) {
  using namespace cute;
  GroupedProblem const& prob = p.prob;
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
  // Ragged K: the group's last block may hold the next group's rows.
  auto wait_block = [&](auto& st, int k, TileGeom const& g, int k_tiles) {
    pipeline.consumer_wait(st);
    if constexpr (T::kMode == Ragged::kK) {
      int const k_valid = g.k_len - k * T::kTileK;
      if (k == k_tiles - 1 && k_valid < T::kTileK) zero_k_tail<T>(sA, sB, st.index(), k_valid, t, wg);
    }
  };

  typename T::Pipeline::PipelineState read_state;     // stage to wait on next
  typename T::Pipeline::PipelineState release_state;  // oldest stage still read by wgmma
  int epi_chunks = 0;
  GroupedScheduler<T> sched(prob);
  for (WorkTile w = sched.initial_work(); w.is_valid(); w = sched.next_work(w)) {
    TileGeom const g = tile_geom<T>(prob, w);
    int const k_tiles = (g.k_len + T::kTileK - 1) / T::kTileK;
    OutWindow const out{g.c_row + wg * T::kWgM, g.c_col, g.c_batch, g.row_end, g.col_end};
    bool const store = out.row0 < out.row_end;  // warpgroup-uniform: rows wholly past the window
    if (k_tiles == 0) {
      // An empty reduction (an empty ragged-K group, the zero tail): zeros
      // are stored without touching the accumulators, so no path merges
      // wgmma-defined registers with others (ptxas would inject a wait).
      if (store) GroupedEpilogue<T>::template store<true>(p, acc, ss.C[wg].begin(), out, t, wg, epi_chunks);
      continue;
    }
    {
      // First K block overwrites the accumulators (no separate clear).
      mma.accumulate_ = GMMA::ScaleOut::Zero;
      wait_block(read_state, 0, g, k_tiles);
      mma_k_tile(read_state.index());
      warpgroup_fence_operand(acc);
      ++read_state;
      for (int k = 1; k < k_tiles; ++k) {
        wait_block(read_state, k, g, k_tiles);
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
    }
    if (store) GroupedEpilogue<T>::template store<false>(p, acc, ss.C[wg].begin(), out, t, wg, epi_chunks);
  }
  GroupedEpilogue<T>::drain(t);
}

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) grouped_gemm_kernel(CUTE_GRID_CONSTANT GroupedParams<T> const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);
  using Pipeline = typename T::Pipeline;
  using Regs = RegisterSplit<T::kConsumerWGs>;

  int const warp_group = threadIdx.x / kWarpGroupThreads;
  int const warp_idx = cutlass::canonical_warp_idx_sync();
  if (warp_idx == 0 && cute::elect_one_sync()) {
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
    if (warp_idx == 0) producer_loop<T>(p, ss, pipeline);
  } else {
    cutlass::arch::warpgroup_reg_alloc<Regs::kConsumerRegs>();
    consumer_loop<T>(p, ss, pipeline, warp_group - 1);
  }
}

}  // namespace cd42::ggemm
