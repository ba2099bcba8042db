// Compile-time description of one attention-backward config.
//
// One CTA per (key block of kBlockN = 128 keys, KV head, batch): it holds K
// and V of its block in shared memory, walks every query block (kBlockM =
// 64 rows, or 128 at D = 64) of every query head of its GQA group that can see those keys,
// and accumulates dK and dV in registers (so the group reduction happens in
// the kernel, in a fixed order). Per query block, consumer warpgroup w owns
// keys [64w, 64w + 64):
//   S^T  = K Q^T          SS wgmma 64 x M x D
//   dP^T = V dO^T         SS wgmma 64 x M x D
//   P^T  = exp2(S^T * scale*log2e - LSE*log2e),  dS^T = P^T (dP^T - Dsum)
//   dV  += P^T dO         RS wgmma 64 x D x M (P^T from registers)
//   dK  += dS^T Q         RS wgmma 64 x D x M (dS^T from registers)
//   dQ   = dS K           SS wgmma M x D/2 x N, dS^T through shared memory,
//                         each warpgroup one half of D (64 rows each when M = 128); each
//                         warpgroup's fp32 half goes to shared memory and one
//                         warp of the producer warpgroup adds it to the global
//                         accumulator with a bulk reduce (cp.reduce.async.bulk),
//                         so the consumers never wait on global atomics.
// Transposed operands (dO^T, Q^T, K^T, dS) are views of the same shared
// buffers through a transposing composition, as FlashAttention-3 does.
#pragma once

#include <cute/tensor.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/atom/copy_traits_sm90_tma.hpp>
#include <cutlass/numeric_types.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/warp_roles.hpp"
#include "kernels/attention/bwd_args.h"
#include "kernels/attention/fwd_traits.hpp"  // MaskKind

namespace cd42::attn {

// What the producer loads (layouts of Q / dO (M, D, stages) and K / V (N, D),
// D contiguous, their TMA copies) and the kernel parameters: shared by the
// two backward variants (BwdTraits here, BwdWideTraits for head dims 192/256).
template <class Element, int HeadDim, int BlockM, int BlockN, int Stages, class SmemAtom>
struct BwdOperands {
  using SmemLayoutQ = decltype(cute::tile_to_shape(
      SmemAtom{}, cute::Shape<cute::Int<BlockM>, cute::Int<HeadDim>, cute::Int<Stages>>{}));
  using SmemStageQ = decltype(cute::tile_to_shape(SmemAtom{}, cute::Shape<cute::Int<BlockM>, cute::Int<HeadDim>>{}));
  using SmemLayoutK = decltype(cute::tile_to_shape(SmemAtom{}, cute::Shape<cute::Int<BlockN>, cute::Int<HeadDim>>{}));
  // Transposed views: (D, M, stages) of Q / dO, (D, N) of K.
  using SmemLayoutQt = decltype(cute::composition(
      SmemLayoutQ{}, cute::make_layout(cute::Shape<cute::Int<HeadDim>, cute::Int<BlockM>, cute::Int<Stages>>{},
                                       cute::Stride<cute::Int<BlockM>, cute::_1, cute::Int<BlockM * HeadDim>>{})));
  using SmemLayoutKt = decltype(cute::composition(
      SmemLayoutK{}, cute::make_layout(cute::Shape<cute::Int<HeadDim>, cute::Int<BlockN>>{},
                                       cute::Stride<cute::Int<BlockN>, cute::_1>{})));

  static constexpr uint32_t kRowStatBytes = uint32_t(BlockM * sizeof(float));
  static constexpr uint32_t kQdOBytes = uint32_t(2 * BlockM * HeadDim * sizeof(Element)) + 2 * kRowStatBytes;
  static constexpr uint32_t kKVBytes = uint32_t(2 * BlockN * HeadDim * sizeof(Element));

  static auto make_tma_q(Element const* p, int rows, int heads, int batch, int64_t rs, int64_t hs, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, rows_dim_tensor<HeadDim>(p, rows, heads, batch, rs, hs, bs), SmemStageQ{},
                         Shape<Int<BlockM>, Int<HeadDim>>{}, Int<1>{});
  }
  static auto make_tma_k(Element const* p, int rows, int heads, int batch, int64_t rs, int64_t hs, int64_t bs) {
    using namespace cute;
    return make_tma_copy(SM90_TMA_LOAD{}, rows_dim_tensor<HeadDim>(p, rows, heads, batch, rs, hs, bs), SmemLayoutK{},
                         Shape<Int<BlockN>, Int<HeadDim>>{}, Int<1>{});
  }
  using TmaQ = decltype(make_tma_q(nullptr, 1, 1, 1, 1, 1, 1));
  using TmaK = decltype(make_tma_k(nullptr, 1, 1, 1, 1, 1, 1));

  // The pipelines the shared producer fills: K and V once per CTA, Q and dO
  // (with their rows' LSE and dsum) per query block.
  using PipelineKV = cutlass::PipelineTmaAsync<1>;
  using PipelineQ = cutlass::PipelineTmaAsync<Stages>;

  struct Params {
    TmaQ tma_q;
    TmaQ tma_do;
    TmaK tma_k;
    TmaK tma_v;
    cd42_attn_bwd_args args;
    float scale_log2;    // softmax_scale * log2(e): raw score -> exp2 argument (no softcap)
    float softcap_in;    // softcap: softmax_scale / softcap, raw score -> tanh argument
    float softcap_log2;  // softcap: softcap * log2(e), tanh -> exp2 argument
  };
};

// Swizzle atom of the Q / dO / K / V tiles: 128-byte rows where the head dim
// (or, split between two warpgroups, its half) is a multiple of 64 elements.
template <class Element, int Width>
using BwdSmemAtom = std::conditional_t<Width % 64 == 0, cute::GMMA::Layout_K_SW128_Atom<Element>,
                                       cute::GMMA::Layout_K_SW64_Atom<Element>>;

template <class Element_, int HeadDim_, MaskKind Mask_, bool Deterministic_ = false, int Stages_ = 2,
          int BlockM_ = 64, bool Softcap_ = false, bool Varlen_ = false>
struct BwdTraits : BwdOperands<Element_, HeadDim_, BlockM_, 128, Stages_, BwdSmemAtom<Element_, HeadDim_>> {
  using Base = BwdOperands<Element_, HeadDim_, BlockM_, 128, Stages_, BwdSmemAtom<Element_, HeadDim_>>;
  using typename Base::SmemLayoutQ;
  using typename Base::SmemLayoutK;
  static constexpr bool kWide = false;  // see bwd_wide_traits.hpp
  using Element = Element_;
  static constexpr int kHeadDim = HeadDim_;
  // Query rows per step: 64, or 128 at D = 64, where the step's fixed costs
  // (barriers, dS^T / dQ stores, pipeline waits) would otherwise weigh
  // against half-size GEMMs (dK/dV take only 64 registers there).
  static constexpr int kBlockM = BlockM_;
  static constexpr int kBlockN = 128;  // keys per CTA (64 per consumer warpgroup)
  static constexpr int kStages = Stages_;  // Q / dO pipeline depth
  static constexpr MaskKind kMask = Mask_;
  static constexpr bool kHasWindow = Mask_ != MaskKind::kNone;
  // Deterministic: the key blocks that add into one query block's dQ take
  // turns in ascending order (a per-query-block counter), so the float32
  // sums happen in the same order on every run. Cost: CTAs wait on each other.
  static constexpr bool kDeterministic = Deterministic_;
  static constexpr int kConsumerWGs = 2;
  static constexpr int kConsumerThreads = kConsumerWGs * kWarpGroupThreads;
  static constexpr int kThreads = kConsumerThreads + kWarpGroupThreads;
  static constexpr int kProducerRegs = 24;   // one TMA-issuing thread
  static constexpr int kConsumerRegs = 240;  // dK + dV accumulators next to S/dP/dQ
  static_assert(setmaxnreg_pool_ok(168, kProducerRegs, kConsumerWGs, kConsumerRegs), "setmaxnreg.inc would wait forever");
  // dK and dV accumulators: 2 x 64 x D fp32 per warpgroup = D registers per
  // thread; D = 256 does not fit next to S, dP and dQ (not supported in v1).
  static_assert(kHeadDim == 64 || kHeadDim == 96 || kHeadDim == 128, "backward: head dim 64, 96 or 128");
  static_assert(kBlockM == 64 || (kBlockM == 128 && kHeadDim == 64), "backward: 128-row steps only at D = 64");
  static constexpr bool kdQSplitsRows = kBlockM == 128;  // dQ: warpgroups take 64 rows each (else D halves)
  // Softcap: the forward's scores are c * tanh(scale * q.k / c), so dS picks
  // up the factor 1 - tanh^2 (the scale itself is applied to dK and dQ at
  // the end, as without softcap).
  static constexpr bool kSoftcap = Softcap_;
  // Varlen: packed sequences (cu_seqlens); a CTA finds its sequence's
  // offsets and lengths from its batch index, the TMA tensors span all
  // tokens (batch 1), and the row statistics / dQ chunks use the padded
  // packing of bwd_args.h.
  static constexpr bool kVarlen = Varlen_;

  // dS^T as written from registers: (N keys, M rows, buffer), rows
  // contiguous; read back as dS (M, N, buffer) for the dQ wgmma through the
  // transposed view. Two buffers (step parity): a warpgroup may write this
  // step's dS^T while the other's dQ wgmma still reads the last one, so one
  // barrier per step suffices (the one that publishes dS^T). Softcap keeps
  // one buffer and a second barrier (the parity's addressing spills there).
  static constexpr int kdSBuffers = Softcap_ ? 1 : 2;
  using SmemAtomdS = cute::GMMA::Layout_K_SW128_Atom<Element>;  // M = 64 elements = 128 bytes
  using SmemLayoutdSt = decltype(cute::tile_to_shape(
      SmemAtomdS{}, cute::Shape<cute::Int<kBlockN>, cute::Int<kBlockM>, cute::Int<kdSBuffers>>{}));
  using SmemLayoutdS = decltype(cute::composition(
      SmemLayoutdSt{}, cute::make_layout(cute::Shape<cute::Int<kBlockM>, cute::Int<kBlockN>, cute::Int<kdSBuffers>>{},
                                         cute::Stride<cute::Int<kBlockN>, cute::_1, cute::Int<kBlockM * kBlockN>>{})));

  // Warpgroups stacked along the keys (M of the first four GEMMs).
  using TiledMmaSdP = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float,
                                 cute::Shape<cute::_64, cute::Int<kBlockM>, cute::Int<kHeadDim>>>(),
      cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>{}));
  using TiledMmadKV = decltype(cute::make_tiled_mma(
      cute::GMMA::rs_op_selector<Element, Element, float,
                                 cute::Shape<cute::_64, cute::Int<kHeadDim>, cute::Int<kBlockM>>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::MN>(),
      cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>{}));
  // dQ: both warpgroups on the same 64 rows, splitting D (halves at D=64/128;
  // at D=96 the N=48 atom is an extended shape, so CuTe tiles 16-column
  // atoms and the warpgroups take alternate 16-column chunks - still exact).
  using TiledMmadQ = std::conditional_t<
      kdQSplitsRows,
      decltype(cute::make_tiled_mma(
          cute::GMMA::ss_op_selector<Element, Element, float,
                                     cute::Shape<cute::_64, cute::Int<kHeadDim>, cute::Int<kBlockN>>,
                                     cute::GMMA::Major::MN, cute::GMMA::Major::MN>(),
          cute::Layout<cute::Shape<cute::_2, cute::_1, cute::_1>>{})),
      decltype(cute::make_tiled_mma(
          cute::GMMA::ss_op_selector<Element, Element, float,
                                     cute::Shape<cute::_64, cute::Int<kHeadDim / 2>, cute::Int<kBlockN>>,
                                     cute::GMMA::Major::MN, cute::GMMA::Major::MN>(),
          cute::Layout<cute::Shape<cute::_1, cute::_2, cute::_1>>{}))>;

  using typename Base::PipelineKV;
  using typename Base::PipelineQ;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutQ>> Q;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutQ>> dO;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutK>> K;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutK>> V;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutdSt>> dS;
    // dQ tile in register order (dq_float4_slot: one half per warpgroup), the source of the bulk reduces.
    alignas(128) float dQ[kBlockM * kHeadDim];
    alignas(16) float lse_log2[kStages][kBlockM];  // bulk-copied with Q / dO
    alignas(16) float dsum[kStages][kBlockM];
    typename PipelineKV::SharedStorage pipe_kv;
    typename PipelineQ::SharedStorage pipe_q;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "backward config exceeds 227 KB of shared memory");

  static constexpr int kdQPerThread = kBlockM * kHeadDim / kConsumerThreads;  // fp32 values of the dQ tile
  static_assert(kdQPerThread % 4 == 0, "dQ tile is moved as float4s");
  static constexpr int kdQWriterThreads = 32;  // warp 1 of the producer warpgroup
  // A dQ half changes hands between one consumer warpgroup and the writer warp.
  static constexpr int kdQHandoffThreads = kWarpGroupThreads + kdQWriterThreads;
};

}  // namespace cd42::attn
