// Producer warpgroup of the fused MoE up-projection: gathers A rows from x
// with cp.async and loads the paired gate/up B boxes with TMA.
//
// Stage protocol (one full and one empty mbarrier per stage):
//  - every producer thread waits on the stage's empty barrier;
//  - thread 0 arms the full barrier with B's transaction bytes (one arrival)
//    and issues the two B boxes;
//  - every thread issues its 8 gathered 16-byte copies of the stage (rows
//    past the group's end, or K past H, are zero-filled: src-size 0) and
//    commits them as one cp.async group;
//  - one stage later, once that group has landed (cp.async.wait_group 1),
//    the thread makes its writes visible to the async proxy (wgmma reads
//    shared memory through it) with fence.proxy.async and arrives on the
//    stage's full barrier. Deferring the arrival by one stage keeps two
//    stages of copies in flight per thread without blocking on the newest.
// The full barrier thus expects 128 + 1 arrivals plus B's bytes.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/grouped_gemm/ggemm_scheduler.hpp"
#include "kernels/moe/moe_up_traits.hpp"

namespace cd42::moe {

CUTE_DEVICE void cp_async_16_zfill(void* smem_dst, void const* gmem_src, bool valid) {
  uint32_t const dst = cute::cast_smem_ptr_to_uint(smem_dst);
  int const src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes)
               : "memory");
}
CUTE_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
CUTE_DEVICE void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

template <class T>
CUTE_DEVICE void gather_producer_loop(MoeUpParams<T> const& p, typename T::SharedStorage& ss) {
  using namespace cute;
  using E = typename T::Element;
  ggemm::GroupedProblem const& prob = p.prob;
  int const t = threadIdx.x % kWarpGroupThreads;
  int const chunk = t % T::kChunksPerRow;    // which 16-byte piece of a 128-byte K row
  int const row_in_pass = t / T::kChunksPerRow;

  Tensor mW = p.tma_w.get_tma_tensor(make_shape(prob.N, prob.K, 2 * prob.groups));
  Tensor sA0 = make_tensor(make_smem_ptr(ss.A[0].begin()), typename T::SmemLayoutA{});  // (WgM,BK,S)
  Tensor sA1 = make_tensor(make_smem_ptr(ss.A[1].begin()), typename T::SmemLayoutA{});
  Tensor sB = make_tensor(make_smem_ptr(ss.B.begin()), typename T::SmemLayoutB{});      // (2*HalfN,BK,S)
  using HalfTile = Shape<Int<T::kHalfN>, Int<T::kTileK>, Int<T::kStages>>;
  Tensor sGate = local_tile(sB, HalfTile{}, make_coord(0, 0, 0));  // rows [0, 128) of every stage
  Tensor sUp = local_tile(sB, HalfTile{}, make_coord(1, 0, 0));    // rows [128, 256)

  ggemm::GroupedScheduler<T> sched(prob);
  cutlass::PipelineState<T::kStages> state{0, 1, 0};  // empty barriers start released (parity 1 done)
  int pending = -1;  // stage whose copies this thread still has to arrive for
  for (ggemm::WorkTile w = sched.initial_work(); w.is_valid(); w = sched.next_work(w)) {
    if (w.group == prob.groups) continue;  // the zero tail: consumers store zeros, nothing to load
    int const m0 = w.start + w.m_blk * T::kTileM;
    int const k_tiles = (prob.K + T::kTileK - 1) / T::kTileK;
    // Source token of each of this thread's 8 rows (-1: zero-fill).
    int tok[T::kPasses];
    CUTE_UNROLL
    for (int i = 0; i < T::kPasses; ++i) {
      int const row = m0 + i * T::kRowsPerPass + row_in_pass;
      int v = row < w.end ? __ldg(p.gather_idx + row) : -1;
      tok[i] = v >= 0 && v < p.tokens ? v : -1;
    }
    Tensor gGate = local_tile(mW(_, _, 2 * w.group), Shape<Int<T::kHalfN>, Int<T::kTileK>>{},
                              make_coord(w.n_blk, _));  // (HalfN,BK,k)
    Tensor gUp = local_tile(mW(_, _, 2 * w.group + 1), Shape<Int<T::kHalfN>, Int<T::kTileK>>{},
                            make_coord(w.n_blk, _));
    auto [tGg, tGs] = tma_partition(p.tma_w, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sGate), group_modes<0, 2>(gGate));
    auto [tUg, tUs] = tma_partition(p.tma_w, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sUp), group_modes<0, 2>(gUp));

    for (int k = 0; k < k_tiles; ++k) {
      int const s = state.index();
      ss.empty[s].wait(state.phase());
      if (t == 0) {
        ss.full[s].arrive_and_expect_tx(T::kTmaBytesPerStage);
        uint64_t* bar = reinterpret_cast<uint64_t*>(&ss.full[s]);
        copy(p.tma_w.with(*bar), tGg(_, k), tGs(_, s));
        copy(p.tma_w.with(*bar), tUg(_, k), tUs(_, s));
      }
      int const col = k * T::kTileK + chunk * T::kChunkElems;
      bool const col_ok = col < prob.K;  // H % 8 == 0: a chunk is wholly inside or past H
      CUTE_UNROLL
      for (int i = 0; i < T::kPasses; ++i) {
        int const r = i * T::kRowsPerPass + row_in_pass;
        bool const ok = col_ok && tok[i] >= 0;
        E const* src = ok ? p.x + int64_t(tok[i]) * p.ldx + col : p.x;
        // The swizzled smem address comes from the CuTe layout (8 elements of
        // one 16-byte chunk stay contiguous under the 128B swizzle).
        E* dst = i < T::kPasses / 2 ? &sA0(r, chunk * T::kChunkElems, s)
                                    : &sA1(r - T::kWgM, chunk * T::kChunkElems, s);
        cp_async_16_zfill(dst, src, ok);
      }
      cp_async_commit();
      if (pending >= 0) {
        cp_async_wait<1>();
        cutlass::arch::fence_view_async_shared();
        ss.full[pending].arrive();
      }
      pending = s;
      ++state;
    }
  }
  if (pending >= 0) {
    cp_async_wait<0>();
    cutlass::arch::fence_view_async_shared();
    ss.full[pending].arrive();
  }
}

}  // namespace cd42::moe
