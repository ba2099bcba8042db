// Compile-time description of one grouped-GEMM config (torch._grouped_mm forms).
//
// Every operand is viewed as a rank-3 (MN, K, batch) tensor: A as (M, K, G_a),
// B as (N, K, G_b), C as (M, N, G_c), each K-major or MN-major. A group is a
// window of those views: which of M, N or K is ragged (cut by device-side
// offsets) and which operand carries the group as its batch index depends on
// the form (see Ragged below). That keeps one mainloop and one epilogue for
// all four forms; only the scheduler's decode of a work tile differs.
//
// CTA tile = (2 consumer warpgroups * WgM) x TileN x TileK, like the dense GEMM.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/warp_roles.hpp"

namespace cd42::ggemm {

// Which dimension the offsets cut (torch._grouped_mm's four forms):
//   kM: a (T, K) 2-D, b (G, K, N), out (T, N): rows of a and out per group.
//   kN: a (G, M, K), b (K, T) 2-D, out (M, T): columns of b and out per group.
//   kK: a (M, T), b (T, N) both 2-D, out (G, M, N): the reduction per group.
//   kNone: a (G, M, K), b (G, K, N), out (G, M, N): plain batched GEMM.
enum class Ragged : int { kNone = 0, kM = 1, kN = 2, kK = 3 };

template <class Element_, bool AIsKMajor_, bool BIsKMajor_, Ragged Mode_, int WgM_, int TileN_, int TileK_,
          int Stages_>
struct GroupedGemmTraits {
  using Element = Element_;
  static constexpr bool kAIsKMajor = AIsKMajor_;
  static constexpr bool kBIsKMajor = BIsKMajor_;
  static constexpr Ragged kMode = Mode_;
  static constexpr int kConsumerWGs = 2;
  static constexpr int kWgM = WgM_;
  static constexpr int kTileM = kConsumerWGs * WgM_;
  static constexpr int kTileN = TileN_;
  static constexpr int kTileK = TileK_;
  static constexpr int kStages = Stages_;
  static constexpr int kThreads = (1 + kConsumerWGs) * kWarpGroupThreads;
  static constexpr int kChunkN = 64;  // epilogue chunk: one 128B swizzle row of 16-bit outputs
  // Named barrier of both consumer warpgroups (ragged-K tail zeroing); the
  // epilogue uses kEpilogueBase + warpgroup before it.
  static constexpr int kKTailZeroBarrier = BarrierIds::kEpilogueBase + kConsumerWGs;

  static_assert(kTileK * sizeof(Element) == 128, "one 128B swizzle span per K tile");
  static_assert(kWgM == 64 || kWgM == 128, "warpgroup rows: one or two wgmma atoms");
  static_assert(kTileN % 64 == 0 && kTileN <= 256, "wgmma N <= 256, epilogue chunks of 64");
  static_assert(kWgM * kTileN / kWarpGroupThreads <= 128, "accumulators must fit the register budget");

  static constexpr cute::GMMA::Major kMajorA = kAIsKMajor ? cute::GMMA::Major::K : cute::GMMA::Major::MN;
  static constexpr cute::GMMA::Major kMajorB = kBIsKMajor ? cute::GMMA::Major::K : cute::GMMA::Major::MN;

  // An MN-major operand tiles its 64(MN)x8(K) atoms along K first, so each
  // 64-wide MN slab of a stage is one contiguous TMA box (128B inner extent).
  template <bool KMajor>
  using SmemAtom = std::conditional_t<KMajor, cute::GMMA::Layout_K_SW128_Atom<Element>,
                                      cute::GMMA::Layout_MN_SW128_Atom<Element>>;
  template <bool KMajor>
  using Order = std::conditional_t<KMajor, cute::Step<cute::_1, cute::_2, cute::_3>,
                                   cute::Step<cute::_2, cute::_1, cute::_3>>;
  template <bool KMajor, int Rows>
  using SmemLayout = decltype(cute::tile_to_shape(
      SmemAtom<KMajor>{}, cute::Shape<cute::Int<Rows>, cute::Int<kTileK>, cute::Int<kStages>>{}, Order<KMajor>{}));
  template <bool KMajor, int Rows>
  using SmemStage = decltype(cute::tile_to_shape(SmemAtom<KMajor>{}, cute::Shape<cute::Int<Rows>, cute::Int<kTileK>>{},
                                                 cute::take<0, 2>(Order<KMajor>{})));
  using SmemLayoutA = SmemLayout<kAIsKMajor, kWgM>;
  using SmemLayoutB = SmemLayout<kBIsKMajor, kTileN>;
  using SmemStageA = SmemStage<kAIsKMajor, kWgM>;
  using SmemStageB = SmemStage<kBIsKMajor, kTileN>;

  using TiledMma = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float,
                                 cute::Shape<cute::_64, cute::Int<kTileN>, cute::Int<kTileK>>, kMajorA, kMajorB>()));

  // Epilogue staging: (WgM, 64, 2 buffers) per warpgroup, 128B-swizzled rows.
  using SmemLayoutC = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<Element>{}, cute::Shape<cute::Int<kWgM>, cute::Int<kChunkN>, cute::_2>{}));
  using SmemChunkC = decltype(cute::tile_to_shape(
      cute::GMMA::Layout_K_SW128_Atom<Element>{}, cute::Shape<cute::Int<kWgM>, cute::Int<kChunkN>>{}));

  using Pipeline = cutlass::PipelineTmaAsync<kStages>;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutA>> A[kConsumerWGs];
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutB>> B;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutC>> C[kConsumerWGs];
    typename Pipeline::SharedStorage pipeline;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "config exceeds Hopper's 227 KB of shared memory per block");

  static constexpr uint32_t kTmaBytesPerStage =
      uint32_t((kConsumerWGs * kWgM + kTileN) * kTileK * sizeof(Element));

  // (rows, K, batch) view of an operand; `ld` is the stride of the strided
  // one of rows/K, `bs` the batch stride (any valid value when batch == 1).
  template <bool KMajor, class Ptr>
  static auto operand_view(Ptr ptr, int rows, int k, int batch, int64_t ld, int64_t bs) {
    using namespace cute;
    auto stride = [&] {
      if constexpr (KMajor) return make_stride(ld, _1{}, bs);
      else return make_stride(_1{}, ld, bs);
    }();
    return make_tensor(make_gmem_ptr(ptr), make_shape(rows, k, batch), stride);
  }
  static auto make_tma_a(Element const* a, int M, int K, int G, int64_t ld, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, operand_view<kAIsKMajor>(a, M, K, G, ld, bs), SmemStageA{},
                         Shape<Int<kWgM>, Int<kTileK>>{}, Int<1>{});
  }
  static auto make_tma_b(Element const* b, int N, int K, int G, int64_t ld, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, operand_view<kBIsKMajor>(b, N, K, G, ld, bs), SmemStageB{},
                         Shape<Int<kTileN>, Int<kTileK>>{}, Int<1>{});
  }
  static auto make_tma_c(Element* c, int M, int N, int G, int64_t ld, int64_t bs) {
    using namespace cute;
    auto mC = make_tensor(make_gmem_ptr(c), make_shape(M, N, G), make_stride(ld, _1{}, bs));
    return make_tma_copy(SM90_TMA_STORE{}, mC, SmemChunkC{}, Shape<Int<kWgM>, Int<kChunkN>>{}, Int<1>{});
  }
  using TmaA = decltype(make_tma_a(nullptr, 1, 1, 1, 1, 1));
  using TmaB = decltype(make_tma_b(nullptr, 1, 1, 1, 1, 1));
  using TmaC = decltype(make_tma_c(nullptr, 1, 1, 1, 1, 1));
};

// Problem description shared by host and device. Extents are those of the
// (rows, K, batch) views above; `total` is the extent of the ragged
// dimension (T); `groups` the number of groups G.
struct GroupedProblem {
  int M, N, K;      // C is M x N; K the reduction (ragged dims hold T here)
  int groups;
  int tiles_m, tiles_n;  // tile grid of one group's non-ragged dims (ragged one: per group)
  int const* offs;       // device: G cumulative ends of the ragged dim (nullptr for kNone)
  // Ragged M/N: also write zeros past offs[G-1] (a gradient's rows that no
  // group reads), as one more group with an empty reduction. The forward
  // leaves them untouched, as torch._grouped_mm does.
  int zero_tail;
  // Predicated epilogue (group-boundary chunks) writes C directly.
  void* c_ptr;
  int64_t ldc, c_batch_stride;
};

template <class T>
struct GroupedParams {
  typename T::TmaA tma_a;
  typename T::TmaB tma_b;
  typename T::TmaC tma_c;
  GroupedProblem prob;
};

}  // namespace cd42::ggemm
