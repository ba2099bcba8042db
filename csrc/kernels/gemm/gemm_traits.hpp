// Compile-time description of one GEMM config: C[M,N] = A[M,K] @ B[K,N].
//
// A is row-major (K contiguous). B is either K-major (an [N,K] row-major
// weight, i.e. B^T stored contiguously) or N-major ([K,N] row-major). Output C
// is row-major in the input dtype; accumulation is fp32.
//
// CTA tile = (2 consumer warpgroups * WgM) x TileN x TileK. Each consumer
// warpgroup owns WgM rows of the tile with its own A buffer and shares the B
// buffer, so one 64xTileN wgmma atom (or two stacked, WgM=128) covers it.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/epilogue_tma_store.hpp"
#include "cute/tile_scheduler.hpp"
#include "cute/warp_roles.hpp"

namespace cd42::gemm {

template <class Element_, bool BIsKMajor_, int WgM_, int TileN_, int TileK_, int Stages_, int GroupM_>
struct GemmTraits {
  using Element = Element_;
  static constexpr bool kBIsKMajor = BIsKMajor_;
  static constexpr int kConsumerWGs = 2;
  static constexpr int kWgM = WgM_;
  static constexpr int kTileM = kConsumerWGs * WgM_;
  static constexpr int kTileN = TileN_;
  static constexpr int kTileK = TileK_;
  static constexpr int kStages = Stages_;
  static constexpr int kThreads = (1 + kConsumerWGs) * kWarpGroupThreads;

  static_assert(kTileK * sizeof(Element) == 128, "one 128B swizzle span per K tile");
  static_assert(kWgM == 64 || kWgM == 128, "warpgroup rows: one or two wgmma atoms");
  static_assert(kTileN % 64 == 0 && kTileN <= 256, "wgmma N <= 256, epilogue chunks of 64");
  static_assert(kWgM * kTileN / kWarpGroupThreads <= 128, "accumulators must fit the register budget");

  static constexpr cute::GMMA::Major kMajorB = kBIsKMajor ? cute::GMMA::Major::K : cute::GMMA::Major::MN;

  // Shared-memory layouts, one slot per pipeline stage; the TMA descriptors
  // are built from the single-stage layouts (the box of one stage's copy).
  using SmemAtomA = cute::GMMA::Layout_K_SW128_Atom<Element>;
  using SmemAtomB = std::conditional_t<kBIsKMajor, cute::GMMA::Layout_K_SW128_Atom<Element>,
                                       cute::GMMA::Layout_MN_SW128_Atom<Element>>;
  using SmemLayoutA = decltype(cute::tile_to_shape(
      SmemAtomA{}, cute::Shape<cute::Int<kWgM>, cute::Int<kTileK>, cute::Int<kStages>>{}));
  // An N-major B tiles its 64(N)x8(K) atoms along K first, so each 64-wide
  // N slab of a stage is one contiguous TMA box (128B inner extent).
  using OrderB = std::conditional_t<kBIsKMajor, cute::Step<cute::_1, cute::_2, cute::_3>,
                                    cute::Step<cute::_2, cute::_1, cute::_3>>;
  using SmemLayoutB = decltype(cute::tile_to_shape(
      SmemAtomB{}, cute::Shape<cute::Int<kTileN>, cute::Int<kTileK>, cute::Int<kStages>>{}, OrderB{}));
  using SmemStageA = decltype(cute::tile_to_shape(SmemAtomA{}, cute::Shape<cute::Int<kWgM>, cute::Int<kTileK>>{}));
  using SmemStageB = decltype(cute::tile_to_shape(SmemAtomB{}, cute::Shape<cute::Int<kTileN>, cute::Int<kTileK>>{},
                                                  cute::take<0, 2>(OrderB{})));

  // One warpgroup's MMA: a 64 x TileN x 16 atom, repeated WgM/64 times on M.
  using TiledMma = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float,
                                 cute::Shape<cute::_64, cute::Int<kTileN>, cute::Int<kTileK>>,
                                 cute::GMMA::Major::K, kMajorB>()));

  using Epilogue = TmaStoreEpilogue<Element, kWgM, kTileN>;
  using Pipeline = cutlass::PipelineTmaAsync<kStages>;
  using Scheduler = GroupedPersistentScheduler<GroupM_>;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutA>> A[kConsumerWGs];
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutB>> B;
    typename Epilogue::SharedStorage C[kConsumerWGs];
    typename Pipeline::SharedStorage pipeline;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "config exceeds Hopper's 227 KB of shared memory per block");

  static constexpr uint32_t kTmaBytesPerStage =
      uint32_t((kConsumerWGs * kWgM + kTileN) * kTileK * sizeof(Element));

  // TMA descriptors are built on the host from the runtime shapes/strides;
  // these helpers also give the descriptor types for the kernel parameters.
  // Note make_tma_copy's 4-argument form takes a cluster size, not a tiler:
  // always pass (tiler, cluster) explicitly.
  static auto make_tma_a(Element const* a, int M, int K, int64_t lda) {
    using namespace cute;
    auto mA = make_tensor(make_gmem_ptr(a), make_shape(M, K), make_stride(lda, _1{}));
    return make_tma_copy(SM90_TMA_LOAD{}, mA, SmemStageA{}, Shape<Int<kWgM>, Int<kTileK>>{}, Int<1>{});
  }
  static auto make_tma_b(Element const* b, int N, int K, int64_t ldb) {
    using namespace cute;
    auto stride = [&] {
      if constexpr (kBIsKMajor) return make_stride(ldb, _1{});  // [N,K] row-major
      else return make_stride(_1{}, ldb);                       // [K,N] row-major
    }();
    auto mB = make_tensor(make_gmem_ptr(b), make_shape(N, K), stride);
    return make_tma_copy(SM90_TMA_LOAD{}, mB, SmemStageB{}, Shape<Int<kTileN>, Int<kTileK>>{}, Int<1>{});
  }
  static auto make_tma_c(Element* c, int M, int N, int64_t ldc) {
    using namespace cute;
    auto mC = make_tensor(make_gmem_ptr(c), make_shape(M, N), make_stride(ldc, _1{}));
    return make_tma_copy(SM90_TMA_STORE{}, mC, typename Epilogue::SmemLayoutChunk{},
                         Shape<Int<kWgM>, Int<Epilogue::kChunkN>>{}, Int<1>{});
  }
  using TmaA = decltype(make_tma_a(nullptr, 1, 1, 1));
  using TmaB = decltype(make_tma_b(nullptr, 1, 1, 1));
  using TmaC = decltype(make_tma_c(nullptr, 1, 1, 1));

  struct Params {
    TmaA tma_a;
    TmaB tma_b;
    TmaC tma_c;
    int M, N, K;
    int tiles_m, tiles_n;
  };
};

}  // namespace cd42::gemm
