// Epilogue of one consumer warpgroup for grouped GEMMs: fp32 accumulators ->
// 16-bit chunks of 64 columns in a double-buffered 128B-swizzled staging
// buffer, then out by TMA store. A chunk that crosses its group's window
// (rows of the next group in ragged-M, columns in ragged-N, or rows past
// offs[-1]) must not be stored whole: those chunks go out by predicated
// per-element stores from the same staging buffer. Chunks wholly past the
// window are skipped. Only the tiles on a group boundary take that path.
//
// Per-chunk indexing into the accumulator: a 64xN wgmma C fragment holds,
// per thread, values ((2 cols, 2 row-halves), N/8 column blocks) with the
// column-block mode outermost (PTX ISA, wgmma D fragment layout), so columns
// [64j, 64j+64) are values [32j, 32j+32) of each M-atom, laid out like a
// 64x64 atom's fragment.
#pragma once

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>

#include "cute/warp_roles.hpp"
#include "kernels/grouped_gemm/ggemm_traits.hpp"

namespace cd42::ggemm {

// Output window of one warpgroup's rows of a work tile, in C's coordinates.
struct OutWindow {
  int row0, col0, batch;   // first row/column of the warpgroup's block
  int row_end, col_end;    // exclusive ends of the valid window (<= C's extents)
};

template <class T>
struct GroupedEpilogue {
  using Element = typename T::Element;
  static constexpr int kWgM = T::kWgM;
  static constexpr int kChunkN = T::kChunkN;
  static constexpr int kChunks = T::kTileN / kChunkN;
  using ChunkMma = decltype(cute::make_tiled_mma(
      cute::SM90_64x64x16_F32BF16BF16_SS<cute::GMMA::Major::K, cute::GMMA::Major::K>{}));

  // kZeros: store zeros instead of the accumulators (empty reductions).
  template <bool kZeros, class Accum>
  CUTE_DEVICE static void store(GroupedParams<T> const& p, Accum const& acc, Element* smem_c, OutWindow const& w,
                                int thread_in_wg, int wg, int& chunk_count) {
    using namespace cute;
    GroupedProblem const& prob = p.prob;
    Tensor sC = make_tensor(make_smem_ptr(smem_c), typename T::SmemLayoutC{});  // (WgM,64,2)
    Tensor mC = p.tma_c.get_tma_tensor(make_shape(prob.M, prob.N, prob.groups));
    Tensor gC = local_tile(domain_offset(make_coord(w.row0, w.col0), mC(_, _, w.batch)),
                           Shape<Int<kWgM>, Int<kChunkN>>{}, make_coord(_0{}, _));  // (WgM,64,chunks)
    auto cta_tma = p.tma_c.get_slice(Int<0>{});
    Tensor tCsC = cta_tma.partition_S(sC);  // (TMA,1,1,buf)
    Tensor tCgC = cta_tma.partition_D(gC);  // (TMA,1,1,chunk)

    ChunkMma chunk_mma;
    Tensor tEsC = chunk_mma.get_thread_slice(thread_in_wg).partition_C(sC);  // (MMA,MMA_M,1,buf)
    static_assert(decltype(size<0>(acc))::value == T::kTileN / 2, "64xN wgmma fragment");

    // TMA clips at C's own extents, so only a window end inside C needs care.
    bool const rows_whole = w.row0 + kWgM <= w.row_end || w.row_end == prob.M;
    int const rows_valid = min(w.row_end - w.row0, kWgM);
    CUTE_UNROLL
    for (int j = 0; j < kChunks; ++j) {
      int const c0 = w.col0 + j * kChunkN;
      if (c0 >= w.col_end) break;  // warpgroup-uniform
      int const buf = chunk_count & 1;
      // The store issued two chunks ago read this buffer: wait until it has.
      if (thread_in_wg == 0) tma_store_wait<1>();
      cutlass::arch::NamedBarrier::sync(kWarpGroupThreads, BarrierIds::kEpilogueBase + wg);
      CUTE_UNROLL
      for (int mm = 0; mm < size<1>(acc); ++mm) {
        CUTE_UNROLL
        for (int v = 0; v < size<0>(tEsC); ++v) {
          if constexpr (kZeros) tEsC(v, mm, 0, buf) = Element(0);
          else tEsC(v, mm, 0, buf) = static_cast<Element>(acc(j * size<0>(tEsC) + v, mm, 0));
        }
      }
      // Generic-proxy smem writes must be visible to the TMA (async proxy).
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(kWarpGroupThreads, BarrierIds::kEpilogueBase + wg);
      bool const cols_whole = c0 + kChunkN <= w.col_end || w.col_end == prob.N;
      if (rows_whole && cols_whole) {
        if (thread_in_wg == 0) {
          copy(p.tma_c, tCsC(_, 0, 0, buf), tCgC(_, 0, 0, j));
          tma_store_arrive();
        }
      } else {
        // Consecutive threads take consecutive columns: each warp store is
        // one contiguous 64-byte run of a row.
        int const cols_valid = min(w.col_end - c0, kChunkN);
        Element* out = static_cast<Element*>(prob.c_ptr) + int64_t(w.batch) * prob.c_batch_stride +
                       int64_t(w.row0) * prob.ldc + c0;
        for (int i = thread_in_wg; i < rows_valid * kChunkN; i += kWarpGroupThreads) {
          int const r = i / kChunkN;
          int const c = i % kChunkN;
          if (c < cols_valid) out[int64_t(r) * prob.ldc + c] = sC(r, c, buf);
        }
      }
      ++chunk_count;
    }
  }

  // Staging buffers must outlive every bulk store that reads them.
  CUTE_DEVICE static void drain(int thread_in_wg) {
    if (thread_in_wg == 0) cute::tma_store_wait<0>();
  }
};

}  // namespace cd42::ggemm
