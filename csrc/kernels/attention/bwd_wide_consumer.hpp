// Consumer warpgroups of the wide attention backward (head dims 192/256):
// see bwd_wide_traits.hpp for the split of the five GEMMs.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/wgmma.hpp"
#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_consumer_prologue.hpp"

namespace cd42::attn {

constexpr int kBwdWideBarrierPdS = 0;   // both consumer warpgroups: P^T / dS^T tiles written / read
constexpr int kBwdWideBarrierTurn = 1;  // deterministic: this CTA's turn to add into a dQ chunk

template <class T>
CUTE_DEVICE void bwd_consumer_wide(typename T::Params const& p, typename T::SharedStorage& ss,
                                   typename T::PipelineKV& pipe_kv, typename T::PipelineQ& pipe_q,
                                   BwdSeq<T> const& seq) {
  using namespace cute;
  using Element = typename T::Element;
  auto const& a = p.args;
  auto&& [n_block, group, seqlen_k, off, n0, mma_sdp, mma_dkv, mma_dq, tSrK, tSrQ, tdPrV, tdPrdO, tdVrdOt, tdKrQt,
          tdQrdS, tdQrKt] = bwd_consumer_prologue<T>(p, ss, seq);
  auto thr_dkv = mma_dkv.get_thread_slice(threadIdx.x - kWarpGroupThreads);
  Tensor sPt = make_tensor(make_smem_ptr(ss.P.begin()), typename T::SmemLayoutPt{});
  Tensor sdSt = make_tensor(make_smem_ptr(ss.dS.begin()), typename T::SmemLayoutPt{});
  Tensor tdVrPt = thr_dkv.make_fragment_A(thr_dkv.partition_A(sPt));     // (MMA, 1, M/16)
  Tensor tdKrdSt = thr_dkv.make_fragment_A(thr_dkv.partition_A(sdSt));
  Tensor tSrS = partition_fragment_C(mma_sdp, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{});
  Tensor tdPrdP = partition_fragment_C(mma_sdp, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{});
  Tensor tdVrdV = partition_fragment_C(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{});
  Tensor tdKrdK = partition_fragment_C(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{});
  Tensor tdQrdQ = partition_fragment_C(mma_dq, Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{});
  static_assert(decltype(size(tdQrdQ))::value == T::kdQPerThread, "dQ fragment size");
  // P^T and dS^T in 16 bits, in S^T's accumulator order (stored with stmatrix).
  Tensor tPr = make_tensor<Element>(tSrS.layout());
  Tensor tdSr = make_tensor<Element>(tSrS.layout());

  auto kv_state = typename T::PipelineKV::PipelineState{};
  auto q_state = typename T::PipelineQ::PipelineState{};
  clear(tdKrdK);
  clear(tdVrdV);
  pipe_kv.consumer_wait(kv_state);
  BwdBlockRange<T> range(a, seq, n_block);
  for (int g = 0; g < group; ++g) {
    int64_t const chunk0 = seq.stat_row(BwdTileScheduler(a).initial_work().head_kv * group + g) / T::kBlockM;  // dQ chunk of query block 0
    for (int m = range.m_min; m < range.m_max; ++m) {
      int const m0 = m * T::kBlockM;
      pipe_q.consumer_wait(q_state);
      int const stage = q_state.index();
      wgmma_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, stage), tSrS);
      wgmma_overwrite(mma_sdp, tdPrV, tdPrdO(_, _, _, stage), tdPrdP);
      warpgroup_wait<1>();  // S^T
      warpgroup_fence_operand(tSrS);
      float const* s_lse = ss.lse_log2[stage];
      float const* s_dsum = ss.dsum[stage];
      Tensor tScS = mma_sdp.get_thread_slice(fresh_consumer_tidx()).partition_C(
          make_identity_tensor(Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
      // Softcap: 1 - tanh^2 parks in dS^T's registers until dP^T is ready.
      bwd_probs<T>(p, tSrS, tPr, tdSr, tScS, s_lse, n0, m0, seqlen_k, off);
      warpgroup_wait<0>();
      warpgroup_fence_operand(tdPrdP);
      bwd_dscores<T>(tdPrdP, tPr, tdSr, tdSr, tScS, s_dsum);

      // P^T and dS^T to shared memory. The previous step's dV/dK/dQ wgmmas
      // of both warpgroups (which read them) have retired before either
      // warpgroup gets here.
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdWideBarrierPdS);
      {
        auto r2s = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, mma_sdp);
        auto thr_r2s = r2s.get_thread_slice(fresh_consumer_tidx());
        cute::copy(r2s, thr_r2s.retile_S(tPr), thr_r2s.partition_D(sPt));
        cute::copy(r2s, thr_r2s.retile_S(tdSr), thr_r2s.partition_D(sdSt));
      }
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdWideBarrierPdS);

      // dQ = dS K first (its own commit group, waited for below), then
      // dV += P^T dO and dK += dS^T Q, which run while dQ is added.
      warpgroup_fence_operand(tdVrdV);
      warpgroup_fence_operand(tdKrdK);
      wgmma_overwrite(mma_dq, tdQrdS, tdQrKt, tdQrdQ);
      warpgroup_arrive();
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdVrPt); ++kb) {
        cute::gemm(mma_dkv, tdVrPt(_, _, kb), tdVrdOt(_, _, kb, stage), tdVrdV);
      }
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdKrdSt); ++kb) {
        cute::gemm(mma_dkv, tdKrdSt(_, _, kb), tdKrQt(_, _, kb, stage), tdKrdK);
      }
      warpgroup_commit_batch();
      warpgroup_wait<1>();
      warpgroup_fence_operand(tdQrdQ);

      // dQ (unscaled) into its chunk of the accumulator, float4s at
      // dq_float4_slot (the postprocess kernel's order).
      int* sem = nullptr;
      int turn = 0;
      if constexpr (T::kDeterministic) {  // the key blocks before this one have added
        sem = a.dq_semaphore + chunk0 + m;
        if (fresh_consumer_tidx() == 0) {
          turn = dq_turn<T>(a, seq, n_block, m);
          while (ld_acquire(sem) != turn) __nanosleep(64);
        }
        cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdWideBarrierTurn);
      }
      {
        float4* dst = reinterpret_cast<float4*>(a.dq_accum + (chunk0 + m) * (T::kBlockM * T::kHeadDim));
        CUTE_UNROLL
        for (int c = 0; c < T::kdQPerThread / 4; ++c) {
          atomicAdd(dst + dq_float4_slot<T>(c, fresh_consumer_tidx()),
                    make_float4(tdQrdQ(4 * c), tdQrdQ(4 * c + 1), tdQrdQ(4 * c + 2), tdQrdQ(4 * c + 3)));
        }
      }
      if constexpr (T::kDeterministic) {  // every thread's adds are visible before the next turn
        __threadfence();
        cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdWideBarrierTurn);
        if (fresh_consumer_tidx() == 0) st_release(sem, turn + 1);
      }
      warpgroup_wait<0>();  // dV, dK: P^T / dS^T are rewritten next step, their B is this stage
      warpgroup_fence_operand(tdVrdV);
      warpgroup_fence_operand(tdKrdK);
      pipe_q.consumer_release(q_state);
      ++q_state;
    }
  }
  pipe_kv.consumer_release(kv_state);
  bwd_store_dk_dv_staged<T>(a, ss, tdKrdK, tdVrdV, fresh_consumer_tidx(), kBwdWideBarrierPdS);
}

}  // namespace cd42::attn
