// Chunked TMA-store epilogue for one consumer warpgroup.
//
// The warpgroup's fp32 accumulators (WgM x TileN, wgmma C layout) are
// converted to the output type and written, 64 columns at a time, into one of
// two 128B-swizzled shared-memory buffers, then a single thread issues the TMA
// store of that chunk. Double buffering lets the conversion of chunk j overlap
// the bulk store of chunk j-1, and keeps the epilogue's shared memory at
// 2 * WgM * 64 elements instead of a whole tile, which leaves room for a
// deeper mainloop pipeline.
//
// Why per-chunk indexing into the accumulator is valid: a 64xN wgmma C
// fragment holds, per thread, values ordered ((2 cols, 2 row-halves), N/8
// column blocks) with the column-block mode outermost (PTX ISA, wgmma D
// fragment layout). So columns [64j, 64j+64) are exactly values
// [32j, 32j+32) of each M-atom, laid out like a 64x64 atom's fragment.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>

#include "cute/warp_roles.hpp"

namespace cd42 {

template <class Element, int WgM, int TileN>
struct TmaStoreEpilogue {
  static constexpr int kChunkN = 64;
  static constexpr int kChunks = TileN / kChunkN;
  static constexpr int kBuffers = 2;
  static_assert(TileN % kChunkN == 0, "epilogue chunks are 64 columns");
  static_assert(WgM % 64 == 0, "warpgroup M is a multiple of the 64-row wgmma atom");

  // (WgM, 64, buffer): rows of 64 x 2 bytes = one 128B swizzle span.
  using SmemLayout = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<Element>{},
      cute::Shape<cute::Int<WgM>, cute::Int<kChunkN>, cute::Int<kBuffers>>{}));
  // The box one TMA store covers.
  using SmemLayoutChunk = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<Element>{}, cute::Shape<cute::Int<WgM>, cute::Int<kChunkN>>{}));

  // Only the C layout of a 64x64 atom matters here: it describes where each
  // thread's values sit inside one 64-column chunk.
  using ChunkMma = decltype(cute::make_tiled_mma(
      cute::SM90_64x64x16_F32BF16BF16_SS<cute::GMMA::Major::K, cute::GMMA::Major::K>{}));

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayout>> data;
  };

  template <class TmaStore>
  struct State {
    int chunk_count = 0;  // chunks issued so far by this warpgroup
  };

  // Stores accumulators `acc` (MMA, MMA_M, MMA_N=1) of output tile
  // (m_blk in WgM rows, n_blk in TileN columns). `wg` selects the barrier.
  template <class TmaStore, class Accum>
  CUTE_DEVICE static void store(TmaStore const& tma_c, Accum const& acc, SharedStorage& smem,
                                int M, int N, int m_blk, int n_blk, int thread_in_wg, int wg,
                                int& chunk_count) {
    using namespace cute;
    Tensor sC = make_tensor(make_smem_ptr(smem.data.begin()), SmemLayout{});  // (WgM,64,2)
    Tensor mC = tma_c.get_tma_tensor(make_shape(M, N));
    Tensor gC = local_tile(mC, Shape<Int<WgM>, Int<kChunkN>>{}, make_coord(_, _));  // (WgM,64,m,n)
    auto cta_tma = tma_c.get_slice(Int<0>{});
    Tensor tCsC = cta_tma.partition_S(sC);  // (TMA,1,1,buf)
    Tensor tCgC = cta_tma.partition_D(gC);  // (TMA,1,1,m,n)

    ChunkMma chunk_mma;
    Tensor tEsC = chunk_mma.get_thread_slice(thread_in_wg).partition_C(sC);  // (MMA,MMA_M,1,buf)
    static_assert(decltype(size<0>(acc))::value == TileN / 2, "64xN wgmma fragment");
    static_assert(decltype(size<0>(tEsC))::value * kChunks == TileN / 2, "chunk fragment");

    CUTE_UNROLL
    for (int j = 0; j < kChunks; ++j) {
      int const buf = chunk_count & 1;
      // The store issued two chunks ago read this buffer: wait until it has.
      if (thread_in_wg == 0) tma_store_wait<kBuffers - 1>();
      cutlass::arch::NamedBarrier::sync(kWarpGroupThreads, BarrierIds::kEpilogueBase + wg);
      CUTE_UNROLL
      for (int mm = 0; mm < size<1>(acc); ++mm) {
        CUTE_UNROLL
        for (int v = 0; v < size<0>(tEsC); ++v) {
          tEsC(v, mm, 0, buf) = static_cast<Element>(acc(j * size<0>(tEsC) + v, mm, 0));
        }
      }
      // Generic-proxy smem writes must be visible to the TMA (async proxy).
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(kWarpGroupThreads, BarrierIds::kEpilogueBase + wg);
      if (thread_in_wg == 0) {
        copy(tma_c, tCsC(_, 0, 0, buf), tCgC(_, 0, 0, m_blk, n_blk * kChunks + j));
        tma_store_arrive();
      }
      ++chunk_count;
    }
  }

  // Smem must outlive every bulk store that reads it.
  CUTE_DEVICE static void drain(int thread_in_wg) {
    if (thread_in_wg == 0) cute::tma_store_wait<0>();
  }
};

}  // namespace cd42
