// Compile-time description of one attention-forward config.
//
// CTA tile: kBlockM = 128 query rows (two consumer warpgroups x 64 rows) of
// one (batch, head), streaming kBlockN keys per step through kStages-deep K
// and V pipelines. Per warpgroup and K/V block:
//   S = Q K^T        SS wgmma 64 x kBlockN x D   (Q, K: D contiguous)
//   P = softmax(S)   fp32 online softmax in registers, exp2 with folded scale
//   O += P V         RS wgmma 64 x D x kBlockN   (P from registers, V^T MN-major)
// Shared memory: Q, O (when it fits), K and V stages. D=128, N=128, 2
// stages: Q 32 + O 32 + K 2*32 + V 2*32 = 192 KB; D=256, N=64: Q 64 +
// K 2*32 + V 2*32 = 192 KB, no room for O's 64 KB (stored from registers).
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/warp_roles.hpp"
#include "kernels/attention/fwd_args.h"
#include "kernels/attention/split_tail.hpp"
#include "kernels/attention/tile_scheduler.hpp"

namespace cd42::attn {

enum class MaskKind : int { kNone = 0, kCausal = 1, kLocal = 2 };

// 4-D global view (rows, dim, head, batch) of a (batch, seqlen, heads, dim)
// tensor, dim contiguous: what the forward's and backward's TMA copies of
// Q, K, V, O, dO are built on. Varlen uses batch = 1 over the packed token
// axis and offsets rows by cu_seqlens in the kernel.
template <int HeadDim, class Ptr>
auto rows_dim_tensor(Ptr ptr, int rows, int heads, int batch, int64_t row_s, int64_t head_s, int64_t batch_s) {
  using namespace cute;
  return make_tensor(make_gmem_ptr(ptr), make_shape(rows, Int<HeadDim>{}, heads, batch),
                     make_stride(row_s, _1{}, head_s, batch_s));
}

template <class Element_, int HeadDim_, int BlockN_, int Stages_, MaskKind Mask_, bool Softcap_, bool Varlen_,
          bool SoftmaxUnderPV_ = true>
struct FwdTraits {
  using Element = Element_;
  static constexpr int kHeadDim = HeadDim_;
  static constexpr int kBlockM = 128;
  static constexpr int kBlockN = BlockN_;
  static constexpr int kStages = Stages_;
  static constexpr MaskKind kMask = Mask_;
  static constexpr bool kHasWindow = Mask_ != MaskKind::kNone;
  static constexpr bool kSoftcap = Softcap_;
  static constexpr bool kVarlen = Varlen_;
  // The overlapped step waits for its PV wgmma only after the softmax
  // (warpgroup_wait_after); false lets ptxas hoist that wait. Which is
  // faster depends on the head dim (H200: off 2-10% faster at D=64, on
  // 2-11% faster at D=128 and D=256), so it is a config field.
  static constexpr bool kSoftmaxUnderPV = SoftmaxUnderPV_;
  // Warps whose rows kept their running max skip O's rescale (softmax.hpp,
  // kStaleMaxLog2). Only with the softmax under PV: where ptxas places the
  // PV wait the skip's branch measured -1% (D=64) to -3% (D=128 causal), and
  // +3-11% at D=128 non-causal and D=256 with it (H200).
  static constexpr bool kSkipUnmovedRescale = SoftmaxUnderPV_;
  // Register split (setmaxnreg) between the producer warpgroup and the two
  // consumers. The kernel is compiled at 168 registers/thread (384 threads,
  // 1 CTA/SM), and a consumer's setmaxnreg.inc only completes once the
  // producer has freed enough of the CTA's pool: 128 x (168 - P) must cover
  // 256 x (C - 168), so 24/240 and 40/232 are the two full splits. The
  // producer fits 24 registers only without window/softcap/varlen state, so
  // only plain configs take 24/240.
  static constexpr bool kPlain = Mask_ == MaskKind::kNone && !Softcap_ && !Varlen_;
  static constexpr int kProducerRegs = kPlain ? 24 : 40;
  static constexpr int kConsumerRegs = kPlain ? 240 : 232;
  static_assert(setmaxnreg_pool_ok(168, kProducerRegs, 2, kConsumerRegs), "setmaxnreg.inc would wait forever");
  // Overlapping the softmax of block n with the PV wgmma of block n+1 keeps S
  // (N/2 fp32), P (N/4) and O (D/2) live together per thread. Measured with
  // nvcc 13.0 (ptxas spill reports), for the loop over clean blocks:
  //  - 240 registers (plain): up to 196 (D=128 N=176, D=256 N=80 fit);
  //  - 232 registers: up to 188 less 6 per feature among window, softcap
  //    and varlen (D=256 N=64 fits with one or two, spills with all three);
  //  - with the element mask inside the overlapped loop, up to 176 fit
  //    (D=256 N=64 in all its variants, since the mask compares each column
  //    against a per-row range; it spilled 48 bytes with the earlier
  //    per-element bounds), so above that the masked blocks run serially
  //    (consumer_loop peels them). Between 168 and 176 only windowed configs
  //    take the one-loop path: it made D=256 causal 2-3% faster, and plain
  //    D=256, whose only masked block is a ragged key end, 1-2% slower
  //    (H200).
  static constexpr int kFeatures = int(Mask_ != MaskKind::kNone) + int(Softcap_) + int(Varlen_);
  static constexpr int kOverlapFragRegs = BlockN_ * 3 / 4 + HeadDim_ / 2;
  static constexpr bool kIntraWGOverlap = kOverlapFragRegs + 6 * kFeatures <= (kPlain ? 196 : 188);
  static constexpr bool kOverlapMaskedBlocks =
      kIntraWGOverlap && (kOverlapFragRegs <= 168 || (kHasWindow && kOverlapFragRegs <= 176));
  // Equal tiles (no window, not varlen): the last partial wave is split by
  // key range over all SMs (split_tail.hpp).
  static constexpr bool kSplitTail = !kHasWindow && !Varlen_;
  static constexpr int kConsumerWGs = 2;
  static constexpr int kConsumerThreads = kConsumerWGs * kWarpGroupThreads;
  static constexpr int kThreads = kConsumerThreads + kWarpGroupThreads;

  static_assert(kHeadDim % 32 == 0, "head dim must tile into 64-byte (SW64) or 128-byte (SW128) swizzle spans");
  static_assert(kBlockN % 16 == 0 && kBlockN <= 256, "kBlockN: wgmma N and the PV k-steps of 16");

  // Q/K rows are D-contiguous: K-major atoms, 128B swizzle when D allows.
  using SmemAtomQK = std::conditional_t<kHeadDim % 64 == 0, cute::GMMA::Layout_K_SW128_Atom<Element>,
                                        cute::GMMA::Layout_K_SW64_Atom<Element>>;
  // V is read as V^T (D x keys) with D contiguous: MN-major atoms, tiled
  // along keys first so each D slab of a stage is one TMA box.
  using SmemAtomVt = std::conditional_t<kHeadDim % 64 == 0, cute::GMMA::Layout_MN_SW128_Atom<Element>,
                                        cute::GMMA::Layout_MN_SW64_Atom<Element>>;

  using SmemLayoutQ = decltype(cute::tile_to_shape(SmemAtomQK{}, cute::Shape<cute::Int<kBlockM>, cute::Int<kHeadDim>>{}));
  using SmemLayoutK = decltype(cute::tile_to_shape(
      SmemAtomQK{}, cute::Shape<cute::Int<kBlockN>, cute::Int<kHeadDim>, cute::Int<kStages>>{}));
  using SmemStageK = decltype(cute::tile_to_shape(SmemAtomQK{}, cute::Shape<cute::Int<kBlockN>, cute::Int<kHeadDim>>{}));
  using SmemLayoutVt = decltype(cute::tile_to_shape(
      SmemAtomVt{}, cute::Shape<cute::Int<kHeadDim>, cute::Int<kBlockN>, cute::Int<kStages>>{},
      cute::Step<cute::_2, cute::_1, cute::_3>{}));
  using SmemStageVt = decltype(cute::tile_to_shape(SmemAtomVt{}, cute::Shape<cute::Int<kHeadDim>, cute::Int<kBlockN>>{},
                                                   cute::Step<cute::_2, cute::_1>{}));

  // Two consumer warpgroups stacked along M; each issues its own wgmmas.
  using TiledMmaQK = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float,
                                 cute::Shape<cute::_64, cute::Int<kBlockN>, cute::Int<kHeadDim>>>(),
      cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>{}));
  using TiledMmaPV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<Element, Element, float,
                                 cute::Shape<cute::_64, cute::Int<kHeadDim>, cute::Int<kBlockN>>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::MN>(),
      cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>{}));

  using PipelineQ = cutlass::PipelineTmaAsync<1>;
  using PipelineKV = cutlass::PipelineTmaAsync<kStages>;
  using PipelineSched = cutlass::PipelineAsync<2>;  // tile ids, producer -> consumers

  static constexpr int kQElems = cute::cosize_v<SmemLayoutQ>;
  static constexpr int kKVBytesAllStages =
      2 * int(cute::cosize_v<SmemLayoutK> * sizeof(Element));
  // O gets its own buffer, for a staged TMA store, when it fits and D > 64.
  // Otherwise O is stored from registers (fwd_epilogue.hpp): at D=256 for
  // lack of room; at D=64 because the staged store's two barriers over both
  // consumer warpgroups put them in lockstep at every tile's end, which cost
  // more than the 4-byte stores (H200: +1-6% from registers at
  // D=64, short tiles and causal most; -2-4% at D=128).
  static constexpr bool kSeparateO =
      kHeadDim > 64 && 2 * kQElems * int(sizeof(Element)) + kKVBytesAllStages + 2048 <= 227 * 1024;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, kQElems> Q;
    alignas(1024) cute::ArrayEngine<Element, kSeparateO ? kQElems : 64> O;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutK>> K;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutVt>> V;
    typename PipelineQ::SharedStorage pipe_q;
    typename PipelineKV::SharedStorage pipe_k;
    typename PipelineKV::SharedStorage pipe_v;
    typename PipelineSched::SharedStorage pipe_sched;
    WorkPiece work[2];  // one per PipelineSched slot
    int split_last;     // this CTA's split piece arrived last at its tile (combine, then store)
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "config exceeds Hopper's 227 KB of shared memory per block");

  static constexpr uint32_t kQBytes = uint32_t(kBlockM * kHeadDim * sizeof(Element));
  static constexpr uint32_t kKVBytes = uint32_t(kBlockN * kHeadDim * sizeof(Element));

  // V^T's 4-D view (dim, rows, head, batch) for the MN-major V tile (the
  // others use rows_dim_tensor).
  template <class Ptr>
  static auto vt_tensor(Ptr ptr, int rows, int heads, int batch, int64_t row_s, int64_t head_s, int64_t batch_s) {
    using namespace cute;
    return make_tensor(make_gmem_ptr(ptr), make_shape(Int<kHeadDim>{}, rows, heads, batch),
                       make_stride(_1{}, row_s, head_s, batch_s));
  }
  static auto make_tma_q(Element const* p, int rows, int heads, int batch, int64_t rs, int64_t hs, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, rows_dim_tensor<kHeadDim>(p, rows, heads, batch, rs, hs, bs), SmemLayoutQ{},
                         Shape<Int<kBlockM>, Int<kHeadDim>>{}, Int<1>{});
  }
  static auto make_tma_k(Element const* p, int rows, int heads, int batch, int64_t rs, int64_t hs, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, rows_dim_tensor<kHeadDim>(p, rows, heads, batch, rs, hs, bs), SmemStageK{},
                         Shape<Int<kBlockN>, Int<kHeadDim>>{}, Int<1>{});
  }
  static auto make_tma_v(Element const* p, int rows, int heads, int batch, int64_t rs, int64_t hs, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, vt_tensor(p, rows, heads, batch, rs, hs, bs), SmemStageVt{},
                         Shape<Int<kHeadDim>, Int<kBlockN>>{}, Int<1>{});
  }
  static auto make_tma_o(Element* p, int rows, int heads, int batch, int64_t rs, int64_t hs, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_STORE{}, rows_dim_tensor<kHeadDim>(p, rows, heads, batch, rs, hs, bs), SmemLayoutQ{},
                         Shape<Int<kBlockM>, Int<kHeadDim>>{}, Int<1>{});
  }
  using TmaQ = decltype(make_tma_q(nullptr, 1, 1, 1, 1, 1, 1));
  using TmaK = decltype(make_tma_k(nullptr, 1, 1, 1, 1, 1, 1));
  using TmaV = decltype(make_tma_v(nullptr, 1, 1, 1, 1, 1, 1));
  using TmaO = decltype(make_tma_o(nullptr, 1, 1, 1, 1, 1, 1));

  struct Params {
    TmaQ tma_q;
    TmaK tma_k;
    TmaV tma_v;
    TmaO tma_o;
    cd42_attn_fwd_args args;
    int num_m_blocks;       // per (batch, head), from (max) seqlen_q
    AttnTileScheduler sched;
    SplitTail split;        // items == 0: no split (windowed or varlen configs, or no gain)
    cutlass::FastDivmod group_div;  // query heads per KV head
    float score_scale_log2; // multiplies raw (or softcapped) scores before exp2
    float score_scale;      // natural-log counterpart, for the LSE
    float softcap_in;       // softmax_scale / softcap (scores pre-tanh)
  };
};

}  // namespace cd42::attn
