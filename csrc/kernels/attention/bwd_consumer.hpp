// Consumer warpgroups of the narrow attention backward (head dims 64-128):
// see bwd_traits.hpp for the tile shapes.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/wgmma.hpp"
#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_consumer_prologue.hpp"

namespace cd42::attn {

template <class T>
CUTE_DEVICE void bwd_consumer(typename T::Params const& p, typename T::SharedStorage& ss,
                              typename T::PipelineKV& pipe_kv, typename T::PipelineQ& pipe_q,
                              BwdSeq<T> const& seq) {
  using namespace cute;
  using Element = typename T::Element;
  auto const& a = p.args;
  auto&& [n_block, group, seqlen_k, off, n0, mma_sdp, mma_dkv, mma_dq, tSrK, tSrQ, tdPrV, tdPrdO, tdVrdOt, tdKrQt,
          tdQrdS, tdQrKt] = bwd_consumer_prologue<T>(p, ss, seq);
  Tensor sdSt = make_tensor(make_smem_ptr(ss.dS.begin()), typename T::SmemLayoutdSt{});
  Tensor tSrS = partition_fragment_C(mma_sdp, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{});
  Tensor tdPrdP = partition_fragment_C(mma_sdp, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{});
  Tensor tdVrdV = partition_fragment_C(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{});
  Tensor tdKrdK = partition_fragment_C(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{});
  Tensor tdQrdQ = partition_fragment_C(mma_dq, Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{});
  // P^T and dS^T as A operands: 16-bit A fragments reuse the accumulator's register order.
  Tensor tdVrP = make_tensor<Element>(partition_shape_A(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
  Tensor tdKrdS = make_tensor<Element>(partition_shape_A(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
  static_assert(decltype(size(tSrS))::value == decltype(size(tdVrP))::value, "P^T reuses S^T's register order");
  // Softcap: d(scores)/d(raw) = scale * (1 - tanh^2), kept from P^T to dS^T
  // as fp16 pairs (in [0, 1]: fp16 keeps 11 bits; half the registers of fp32).
  constexpr int kCapValues = T::kSoftcap ? int(decltype(size(tSrS))::value) : 1;
  Tensor tdScap = make_tensor<cutlass::half_t>(Int<kCapValues>{});
  // (fresh_consumer_tidx: kept live, the thread-dependent addressing costs
  // the registers that fp16 and D=96 configs spill.)
  auto fresh_tidx = fresh_consumer_tidx;

  auto kv_state = typename T::PipelineKV::PipelineState{};
  auto q_state = typename T::PipelineQ::PipelineState{};
  clear(tdKrdK);
  clear(tdVrdV);
  pipe_kv.consumer_wait(kv_state);
  BwdBlockRange<T> range(a, seq, n_block);
  for (int g = 0; g < group; ++g) {
    for (int m = range.m_min; m < range.m_max; ++m) {
      int const m0 = m * T::kBlockM;
      int const ds_buf = T::kdSBuffers == 2 ? q_state.count() & 1 : 0;  // step parity
      pipe_q.consumer_wait(q_state);
      int const stage = q_state.index();
      // S^T = K Q^T and dP^T = V dO^T issued back to back: P^T is computed
      // from S^T while the tensor cores still work on dP^T.
      wgmma_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, stage), tSrS);
      wgmma_overwrite(mma_sdp, tdPrV, tdPrdO(_, _, _, stage), tdPrdP);
      warpgroup_wait<1>();  // S^T
      warpgroup_fence_operand(tSrS);
      float const* s_lse = ss.lse_log2[stage];
      float const* s_dsum = ss.dsum[stage];
      Tensor tScS = mma_sdp.get_thread_slice(fresh_tidx()).partition_C(
          make_identity_tensor(Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
      bwd_probs<T>(p, tSrS, tdVrP, tdScap, tScS, s_lse, n0, m0, seqlen_k, off);

      warpgroup_wait<0>();
      warpgroup_fence_operand(tdPrdP);
      Tensor tScS2 = mma_sdp.get_thread_slice(fresh_tidx()).partition_C(
          make_identity_tensor(Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
      bwd_dscores<T>(tdPrdP, tdVrP, tdScap, tdKrdS, tScS2, s_dsum);

      // dS^T to this step's shared buffer (both warpgroups' halves of the
      // keys) for the dQ GEMM. The other buffer may still be read by the
      // other warpgroup's previous dQ wgmma; this one was last read two
      // steps ago, before both passed the previous step's barrier. With one
      // buffer, both warpgroups' previous dQ wgmmas must retire first.
      if constexpr (T::kdSBuffers == 1) cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdBarrierdS);
      CUTE_UNROLL
      {  // stmatrix: 8x8 tiles of 16-bit values, rows (keys) of 8 contiguous query columns
        auto r2s = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, mma_sdp);
        auto thr_r2s = r2s.get_thread_slice(fresh_tidx());
        Tensor tdSr = thr_r2s.retile_S(make_tensor(tdKrdS.data(), tSrS.layout()));  // dS^T in C-fragment order
        cute::copy(r2s, tdSr, thr_r2s.partition_D(sdSt(_, _, ds_buf)));
      }
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdBarrierdS);

      // dQ = dS K first (its own commit group), then dV += P^T dO and
      // dK += dS^T Q: only dQ is waited for here; dV/dK retire during the
      // dQ store. (Issuing dV right after P^T, under the dS^T steps, measured
      // 2-8% slower at D=128: it delays the other warpgroup's dP^T, which
      // is on the path to the shared dS^T barrier. Letting dV/dK run on into
      // the next step's S^T/dP^T keeps P^T and dS^T live next to S^T and
      // dP^T: ptxas serializes the wgmmas for lack of registers.) The
      // register A operands are fenced too, or ptxas injects warpgroup.arrive
      // between the wgmmas (C7519).
      warpgroup_fence_operand(tdVrP);
      warpgroup_fence_operand(tdKrdS);
      warpgroup_fence_operand(tdVrdV);
      warpgroup_fence_operand(tdKrdK);
      warpgroup_fence_operand(tdQrdQ);
      warpgroup_arrive();
      mma_dq.accumulate_ = GMMA::ScaleOut::Zero;
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdQrdS); ++kb) {
        cute::gemm(mma_dq, tdQrdS(_, _, kb, ds_buf), tdQrKt(_, _, kb), tdQrdQ);
        mma_dq.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdVrP); ++kb) {
        cute::gemm(mma_dkv, tdVrP(_, _, kb), tdVrdOt(_, _, kb, stage), tdVrdV);
      }
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdKrdS); ++kb) {
        cute::gemm(mma_dkv, tdKrdS(_, _, kb), tdKrQt(_, _, kb, stage), tdKrdK);
      }
      warpgroup_commit_batch();
      warpgroup_wait<1>();
      warpgroup_fence_operand(tdQrdQ);

      // dQ (unscaled) to this warpgroup's half of the shared tile as float4s
      // in register order (dq_float4_slot), once the writer warp has read
      // the last one.
      {
        int const wg = cutlass::canonical_warp_group_idx() - 1;  // warp-uniform
        cutlass::arch::NamedBarrier::sync(T::kdQHandoffThreads, kBwdBarrierdQEmpty0 + wg);
        float4* sdQ = reinterpret_cast<float4*>(ss.dQ);
        CUTE_UNROLL
        for (int c = 0; c < T::kdQPerThread / 4; ++c) {
          sdQ[dq_float4_slot<T>(c, fresh_tidx())] =
              make_float4(tdQrdQ(4 * c), tdQrdQ(4 * c + 1), tdQrdQ(4 * c + 2), tdQrdQ(4 * c + 3));
        }
        cutlass::arch::fence_view_async_shared();  // visible to the bulk reduce (async proxy)
        cutlass::arch::NamedBarrier::arrive(T::kdQHandoffThreads, kBwdBarrierdQFull0 + wg);
      }
      warpgroup_wait<0>();  // dV, dK: their A operands are rewritten next step, their B is this stage
      warpgroup_fence_operand(tdVrdV);
      warpgroup_fence_operand(tdKrdK);
      pipe_q.consumer_release(q_state);
      ++q_state;
    }
  }

  // K and V are read for the last time above: release them, or the
  // producer's pipeline tail would wait for that forever.
  pipe_kv.consumer_release(kv_state);

  // (The dQ writer warp may still be reading the dQ tile, which the
  // epilogue leaves alone.)
  bwd_store_dk_dv_staged<T>(a, ss, tdKrdK, tdVrdV, fresh_tidx(), kBwdBarrierdS);
}

}  // namespace cd42::attn
