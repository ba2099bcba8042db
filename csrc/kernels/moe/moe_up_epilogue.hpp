// Epilogue of one consumer warpgroup of the fused MoE up-projection.
//
// The 64x256 accumulator holds gate in columns [0, 128) and the matching up
// columns in [128, 256). A 64xN wgmma fragment keeps, per thread, values
// ((2 cols, 2 row-halves), N/8 column blocks) with the column-block mode
// outermost (PTX ISA, wgmma D fragment layout), so column c and c + 128 are
// values i and i + 64 of the same thread: SwiGLU is computed in registers.
// Six 64-column chunks leave per warpgroup and tile: h (2), gate (2), up (2),
// each through a double-buffered 128B-swizzled staging buffer and a TMA
// store; a chunk that crosses its group's last row (the next expert's rows)
// or F goes out by predicated stores from the same buffer instead, as in the
// grouped GEMM's epilogue.
#pragma once

#include <cute/tensor.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>

#include "cute/warp_roles.hpp"
#include "kernels/moe/moe_up_traits.hpp"

namespace cd42::moe {

struct RowWindow {
  int row0, row_end;  // first row of the warpgroup's block; end of its expert's rows
  int col0;           // first h column (f0) of the tile
};

CUTE_DEVICE float silu(float g) { return g / (1.0f + __expf(-g)); }

template <class T>
struct MoeUpEpilogue {
  using Element = typename T::Element;
  static constexpr int kWgM = T::kWgM;
  static constexpr int kChunkN = T::kChunkN;
  static constexpr int kChunksPerHalf = T::kHalfN / kChunkN;  // 2
  using ChunkMma = decltype(cute::make_tiled_mma(
      cute::SM90_64x64x16_F32BF16BF16_SS<cute::GMMA::Major::K, cute::GMMA::Major::K>{}));

  // What a chunk holds: h = silu(gate) * up, the gate or the up pre-activation.
  enum class Part { kH, kGate, kUp };

  // kZeros: zeros instead of the accumulators (the tail rows past offs[-1]).
  template <bool kZeros, class Accum>
  CUTE_DEVICE static void store(MoeUpParams<T> const& p, Accum const& acc, Element* smem_c, RowWindow const& w,
                                int thread_in_wg, int wg, int& chunk_count) {
    CUTE_UNROLL
    for (int j = 0; j < kChunksPerHalf; ++j) {
      store_chunk<kZeros, Part::kH>(p, acc, smem_c, w, j, thread_in_wg, wg, chunk_count);
      store_chunk<kZeros, Part::kGate>(p, acc, smem_c, w, j, thread_in_wg, wg, chunk_count);
      store_chunk<kZeros, Part::kUp>(p, acc, smem_c, w, j, thread_in_wg, wg, chunk_count);
    }
  }

  template <bool kZeros, Part kPart, class Accum>
  CUTE_DEVICE static void store_chunk(MoeUpParams<T> const& p, Accum const& acc, Element* smem_c,
                                      RowWindow const& w, int j, int thread_in_wg, int wg, int& chunk_count) {
    using namespace cute;
    ggemm::GroupedProblem const& prob = p.prob;
    int const M = prob.M, F = prob.N;
    int const c0 = w.col0 + j * kChunkN;
    if (c0 >= F) return;  // warpgroup-uniform
    auto const& tma = kPart == Part::kH ? p.tma_h : p.tma_pre;
    int const out_col = c0 + (kPart == Part::kUp ? F : 0);  // pre: gate columns [0, F), up [F, 2F)

    Tensor sC = make_tensor(make_smem_ptr(smem_c), typename T::SmemLayoutC{});  // (WgM,64,2)
    Tensor mC = tma.get_tma_tensor(make_shape(M, kPart == Part::kH ? F : 2 * F, 1));
    auto cta_tma = tma.get_slice(Int<0>{});
    Tensor tCsC = cta_tma.partition_S(sC);  // (TMA,1,1,buf)
    ChunkMma chunk_mma;
    Tensor tEsC = chunk_mma.get_thread_slice(thread_in_wg).partition_C(sC);  // (MMA,MMA_M,1,buf)
    constexpr int kV = decltype(size<0>(tEsC))::value;                         // 32 values per chunk
    static_assert(decltype(size<0>(acc))::value == 4 * kV, "64x256 wgmma fragment: gate chunks then up chunks");

    int const buf = chunk_count & 1;
    // The store issued two chunks ago read this buffer: wait until it has.
    if (thread_in_wg == 0) tma_store_wait<1>();
    cutlass::arch::NamedBarrier::sync(kWarpGroupThreads, BarrierIds::kEpilogueBase + wg);
    CUTE_UNROLL
    for (int mm = 0; mm < size<1>(acc); ++mm) {
      CUTE_UNROLL
      for (int v = 0; v < kV; ++v) {
        float val = 0.0f;
        if constexpr (!kZeros) {
          float const g = acc(j * kV + v, mm, 0);
          float const u = acc(2 * kV + j * kV + v, mm, 0);
          val = kPart == Part::kH ? silu(g) * u : kPart == Part::kGate ? g : u;
        }
        tEsC(v, mm, 0, buf) = static_cast<Element>(val);
      }
    }
    // Generic-proxy smem writes must be visible to the TMA (async proxy).
    cutlass::arch::fence_view_async_shared();
    cutlass::arch::NamedBarrier::sync(kWarpGroupThreads, BarrierIds::kEpilogueBase + wg);
    // TMA clips at the tensor's own extents, so only an expert's end inside it needs care.
    bool const rows_whole = w.row0 + kWgM <= w.row_end || w.row_end == M;
    bool const cols_whole = c0 + kChunkN <= F;
    if (rows_whole && cols_whole) {
      if (thread_in_wg == 0) {
        Tensor gChunk = local_tile(domain_offset(make_coord(w.row0, out_col), mC(_, _, 0)),
                                   Shape<Int<kWgM>, Int<kChunkN>>{}, make_coord(_0{}, _0{}));
        copy(tma, tCsC(_, 0, 0, buf), cta_tma.partition_D(gChunk)(_, 0, 0));
        tma_store_arrive();
      }
    } else {
      int const rows_valid = min(w.row_end - w.row0, kWgM);
      int const cols_valid = min(F - c0, kChunkN);
      int64_t const ld = kPart == Part::kH ? p.ldh : p.ldpre;
      Element* out = (kPart == Part::kH ? p.h : p.pre) + int64_t(w.row0) * ld + out_col;
      // Consecutive threads take consecutive columns: each warp store is one
      // contiguous 64-byte run of a row.
      for (int i = thread_in_wg; i < rows_valid * kChunkN; i += kWarpGroupThreads) {
        int const r = i / kChunkN;
        int const c = i % kChunkN;
        if (c < cols_valid) out[int64_t(r) * ld + c] = sC(r, c, buf);
      }
    }
    ++chunk_count;
  }

  // Staging buffers must outlive every bulk store that reads them.
  CUTE_DEVICE static void drain(int thread_in_wg) {
    if (thread_in_wg == 0) cute::tma_store_wait<0>();
  }
};

}  // namespace cd42::moe
