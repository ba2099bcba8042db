// Compile-time description of the fused MoE up-projection (gather + SwiGLU).
//
// For the permuted rows p of expert e (rows [offs[e-1], offs[e]) in routing
// order), with x (T, H) row-major and w (E, 2F, H) (gate rows [0, F), up rows
// [F, 2F)):
//   gate = x[gather_idx[p]] @ w[e, :F]^T,  up = x[gather_idx[p]] @ w[e, F:]^T
//   h[p] = silu(gate) * up                  (T*k, F)
//   pre[p] = [gate | up]                    (T*k, 2F), kept for the backward
// A rows are gathered from x by the producer warpgroup with cp.async (TMA
// cannot gather rows on sm_90); B is loaded by TMA as two 128-row boxes per
// stage, the gate rows [f0, f0+128) and the same rows of the up half, so the
// 64x256 accumulator holds gate in columns [0, 128) and the matching up
// columns in [128, 256): a thread holding column j also holds j + 128.
//
// The weights are viewed as (F rows, H, 2E batch): batch 2e is expert e's
// gate half, 2e+1 its up half, so a box past row F is zero-filled by TMA
// instead of reading the other half.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/numeric_types.h>

#include "cute/warp_roles.hpp"
#include "kernels/grouped_gemm/ggemm_traits.hpp"

namespace cd42::moe {

template <class Element_, int Stages_>
struct MoeUpTraits {
  using Element = Element_;
  // The grouped GEMM's scheduler reads these: rows are cut by the offsets.
  static constexpr ggemm::Ragged kMode = ggemm::Ragged::kM;
  static constexpr int kConsumerWGs = 2;
  static constexpr int kWgM = 64;
  static constexpr int kTileM = kConsumerWGs * kWgM;  // 128 gathered rows per tile
  static constexpr int kHalfN = 128;                  // h columns per tile (gate and up: 128 each)
  static constexpr int kTileN = 2 * kHalfN;           // wgmma N
  static constexpr int kTileK = 64;
  static constexpr int kStages = Stages_;
  static constexpr int kThreads = (1 + kConsumerWGs) * kWarpGroupThreads;
  static constexpr int kChunkN = 64;  // epilogue chunk: one 128B swizzle row of 16-bit outputs

  // Gather: a K tile row is 128 bytes = 8 chunks of 16 bytes; the producer
  // warpgroup's 128 threads cover 16 rows per pass (8 threads per row, so a
  // warp reads 4 whole 128-byte rows), 8 passes per 128-row tile.
  static constexpr int kChunkElems = 16 / sizeof(Element);
  static constexpr int kChunksPerRow = kTileK / kChunkElems;
  static constexpr int kRowsPerPass = kWarpGroupThreads / kChunksPerRow;
  static constexpr int kPasses = kTileM / kRowsPerPass;

  // Full barrier: every producer thread arrives once its copies of the stage
  // landed (128), plus the B issuer's arrive-with-expected-bytes (1).
  static constexpr uint32_t kFullArrivals = kWarpGroupThreads + 1;
  static constexpr uint32_t kEmptyArrivals = kConsumerWGs * kWarpGroupThreads;
  static constexpr uint32_t kTmaBytesPerStage = uint32_t(kTileN * kTileK * sizeof(Element));

  static_assert(kTileK * sizeof(Element) == 128, "one 128B swizzle span per K tile");
  static_assert(kChunksPerRow == 8 && kPasses == 8, "gather pattern assumes 16-bit elements");

  using SmemAtom = cute::GMMA::Layout_K_SW128_Atom<Element>;
  using SmemLayoutA = decltype(cute::tile_to_shape(
      SmemAtom{}, cute::Shape<cute::Int<kWgM>, cute::Int<kTileK>, cute::Int<kStages>>{}));
  using SmemLayoutB = decltype(cute::tile_to_shape(
      SmemAtom{}, cute::Shape<cute::Int<kTileN>, cute::Int<kTileK>, cute::Int<kStages>>{}));
  using SmemHalfB = decltype(cute::tile_to_shape(SmemAtom{}, cute::Shape<cute::Int<kHalfN>, cute::Int<kTileK>>{}));

  using TiledMma = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float, cute::Shape<cute::_64, cute::Int<kTileN>, cute::Int<kTileK>>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::K>()));

  // Epilogue staging: (WgM, 64, 2 buffers) per warpgroup, 128B-swizzled rows.
  using SmemLayoutC = decltype(cute::tile_to_shape(
      SmemAtom{}, cute::Shape<cute::Int<kWgM>, cute::Int<kChunkN>, cute::_2>{}));
  using SmemChunkC = decltype(cute::tile_to_shape(SmemAtom{}, cute::Shape<cute::Int<kWgM>, cute::Int<kChunkN>>{}));

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutA>> A[kConsumerWGs];
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutB>> B;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutC>> C[kConsumerWGs];
    cutlass::arch::ClusterTransactionBarrier full[kStages];
    cutlass::arch::ClusterBarrier empty[kStages];
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "config exceeds Hopper's 227 KB of shared memory per block");

  // Weights as (F, H, 2E): see the header comment.
  static auto make_tma_w(Element const* w, int F, int H, int E, int64_t ldw) {
    using namespace cute;
    auto mW = make_tensor(make_gmem_ptr(w), make_shape(F, H, 2 * E), make_stride(ldw, _1{}, int64_t(F) * ldw));
    return make_tma_copy(SM90_TMA_LOAD{}, mW, SmemHalfB{}, Shape<Int<kHalfN>, Int<kTileK>>{}, Int<1>{});
  }
  // An output (rows, cols, 1) view: h is (T*k, F), pre (T*k, 2F). Only whole
  // 64-column chunks go out by TMA (the epilogue stores the others itself),
  // so a gate chunk never spills into pre's up columns.
  static auto make_tma_out(Element* c, int rows, int cols, int batch, int64_t ld, int64_t bs) {
    using namespace cute;
    auto mC = make_tensor(make_gmem_ptr(c), make_shape(rows, cols, batch), make_stride(ld, _1{}, bs));
    return make_tma_copy(SM90_TMA_STORE{}, mC, SmemChunkC{}, Shape<Int<kWgM>, Int<kChunkN>>{}, Int<1>{});
  }
  using TmaW = decltype(make_tma_w(nullptr, 1, 1, 1, 1));
  using TmaOut = decltype(make_tma_out(nullptr, 1, 1, 1, 1, 1));
};

// Device problem. prob (the grouped GEMM's) carries M = T*k permuted rows,
// N = F, K = H, groups = E, the offsets and the zero tail: rows past
// offs[E-1] (sentinel ids) get h = 0 and pre = 0.
template <class T>
struct MoeUpParams {
  typename T::TmaW tma_w;
  typename T::TmaOut tma_h;
  typename T::TmaOut tma_pre;
  ggemm::GroupedProblem prob;
  typename T::Element const* x;  // (tokens, H) row-major
  int64_t ldx;
  int tokens;
  int const* gather_idx;         // (T*k,) token of each permuted row
  typename T::Element* h;        // predicated stores on group-boundary chunks
  typename T::Element* pre;
  int64_t ldh, ldpre;
};

}  // namespace cd42::moe
