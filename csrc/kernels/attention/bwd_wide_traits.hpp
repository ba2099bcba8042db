// Compile-time description of the attention backward for head dims 192 and
// 256 ("wide"), where BwdTraits' layout (dK and dV of 64 keys x D per
// warpgroup in registers: 2 D fp32 registers per thread) cannot fit.
//
// One CTA per (key block of kBlockN = 64 keys, KV head, batch), 2 consumer
// warpgroups that split the head dim for every GEMM whose output is D wide:
//   S^T  = K Q^T      SS wgmma 64 x 32 x D: warpgroup w takes query rows [32w, 32w + 32)
//   dP^T = V dO^T     the same split
//   P^T, dS^T         as BwdTraits, then stored to shared memory (both
//                     warpgroups' row halves make the whole 64 x 64 tiles)
//   dV  += P^T dO     SS wgmma 64 x D/2 x M: warpgroup w owns head-dim half w
//   dK  += dS^T Q     the same split
//   dQ   = dS K       SS wgmma M x D/2 x N, the same split; each thread adds its
//                     fp32 fragment to the global accumulator with float4
//                     atomics (a 64 x D fp32 staging tile would not fit in
//                     shared memory next to two stages of Q and dO).
// Registers per consumer thread: dK, dV and dQ D/4 each (64 at D = 256),
// S^T and dP^T 16 each. Shared memory at D = 256, 2 stages: 209 KB.
// Deterministic mode: the key blocks take turns per query block as in
// BwdTraits, with the turn taken by the consumers themselves.
#pragma once

#include "kernels/attention/bwd_traits.hpp"

namespace cd42::attn {

template <class Element_, int HeadDim_, MaskKind Mask_, bool Deterministic_ = false, int Stages_ = 2,
          bool Softcap_ = false, bool Varlen_ = false>
struct BwdWideTraits : BwdOperands<Element_, HeadDim_, 64, 64, Stages_, BwdSmemAtom<Element_, HeadDim_ / 2>> {
  // The swizzle atom follows the half head dim so that each warpgroup's half
  // of a D-contiguous tile starts on an atom boundary (D = 192: 96 = 3 x 32).
  using Base = BwdOperands<Element_, HeadDim_, 64, 64, Stages_, BwdSmemAtom<Element_, HeadDim_ / 2>>;
  using typename Base::SmemLayoutQ;
  using typename Base::SmemLayoutK;
  static constexpr bool kWide = true;
  using Element = Element_;
  static constexpr int kHeadDim = HeadDim_;
  static constexpr int kHalfD = kHeadDim / 2;
  static constexpr int kBlockM = 64;
  static constexpr int kBlockN = 64;
  static constexpr int kStages = Stages_;
  static constexpr MaskKind kMask = Mask_;
  static constexpr bool kHasWindow = Mask_ != MaskKind::kNone;
  static constexpr bool kDeterministic = Deterministic_;
  static constexpr bool kSoftcap = Softcap_;
  static constexpr bool kVarlen = Varlen_;
  static_assert(kHeadDim == 192 || kHeadDim == 256, "wide backward: head dim 192 or 256");
  static constexpr int kConsumerWGs = 2;
  static constexpr int kConsumerThreads = kConsumerWGs * kWarpGroupThreads;
  static constexpr int kThreads = kConsumerThreads + kWarpGroupThreads;
  // 40, not 24, producer registers: the TMA coordinates of several boxes
  // per tile (six at D = 192, whose 64-byte swizzle makes 32-column boxes)
  // spill from 24; the consumers fit in 232.
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
  static_assert(setmaxnreg_pool_ok(168, kProducerRegs, kConsumerWGs, kConsumerRegs), "setmaxnreg.inc would wait forever");

  // P^T and dS^T: (N keys, M rows), rows contiguous (the A operand of dV/dK,
  // K-major); dS (M, N) is the transposed view for the dQ GEMM.
  using SmemAtomPdS = cute::GMMA::Layout_K_SW128_Atom<Element>;  // M = 64 elements = 128 bytes
  using SmemLayoutPt = decltype(cute::tile_to_shape(SmemAtomPdS{}, cute::Shape<cute::Int<kBlockN>, cute::Int<kBlockM>>{}));
  using SmemLayoutdS = decltype(cute::composition(
      SmemLayoutPt{}, cute::make_layout(cute::Shape<cute::Int<kBlockM>, cute::Int<kBlockN>>{},
                                        cute::Stride<cute::Int<kBlockN>, cute::_1>{})));

  using TiledMmaSdP = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float, cute::Shape<cute::_64, cute::_32, cute::Int<kHeadDim>>>(),
      cute::Layout<cute::Shape<cute::_1, cute::_2, cute::_1>>{}));
  using TiledMmadKV = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float, cute::Shape<cute::_64, cute::Int<kHalfD>, cute::Int<kBlockM>>,
                                 cute::GMMA::Major::K, cute::GMMA::Major::MN>(),
      cute::Layout<cute::Shape<cute::_1, cute::_2, cute::_1>>{}));
  using TiledMmadQ = decltype(cute::make_tiled_mma(
      cute::GMMA::ss_op_selector<Element, Element, float, cute::Shape<cute::_64, cute::Int<kHalfD>, cute::Int<kBlockN>>,
                                 cute::GMMA::Major::MN, cute::GMMA::Major::MN>(),
      cute::Layout<cute::Shape<cute::_1, cute::_2, cute::_1>>{}));

  using typename Base::PipelineKV;
  using typename Base::PipelineQ;

  struct SharedStorage {
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutQ>> Q;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutQ>> dO;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutK>> K;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutK>> V;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutPt>> P;
    alignas(1024) cute::ArrayEngine<Element, cute::cosize_v<SmemLayoutPt>> dS;
    alignas(16) float lse_log2[kStages][kBlockM];
    alignas(16) float dsum[kStages][kBlockM];
    typename PipelineKV::SharedStorage pipe_kv;
    typename PipelineQ::SharedStorage pipe_q;
  };
  static constexpr int kSmemBytes = int(sizeof(SharedStorage));
  static_assert(kSmemBytes <= 227 * 1024, "backward config exceeds 227 KB of shared memory");

  static constexpr int kdQPerThread = kBlockM * kHeadDim / kConsumerThreads;  // fp32 values of the dQ tile
  static_assert(kdQPerThread % 4 == 0, "dQ fragments are added as float4s");
};

}  // namespace cd42::attn
