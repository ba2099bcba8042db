// The prologue both attention-backward consumers share (bwd_consumer.hpp,
// bwd_wide_consumer.hpp): the tile's geometry, the smem operands of the
// five GEMMs as wgmma descriptor fragments, and their TiledMmas.
#pragma once

#include <cute/tensor.hpp>

#include "cute/warp_roles.hpp"
#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_scheduler.hpp"

namespace cd42::attn {

// Returns, in this order (bind with `auto&& [...]`):
//   n_block, group (query heads per KV head), seqlen_k, off (seqlen_k -
//   seqlen_q), n0 (first key of the block),
//   mma_sdp, mma_dkv, mma_dq (S^T / dP^T, dK / dV, dQ TiledMmas),
//   tSrK, tSrQ, tdPrV, tdPrdO, tdVrdOt, tdKrQt, tdQrdS, tdQrKt (descriptors;
//   the Q / dO ones have a stage mode, narrow tdQrdS a dS buffer mode).
// The accumulators and pipeline states stay the callers' own variables:
// they are carried around the main loop, and returned from here (one
// aggregate instead of separate variables) their loop-carried values came
// out of LLVM in another order, which moved ptxas's register assignment
// and instruction order (the PTX differed only in the order of the loop's
// register copies). As the callers' variables the kernel is unchanged.
template <class T>
CUTE_DEVICE auto bwd_consumer_prologue(typename T::Params const& p, typename T::SharedStorage& ss,
                                       BwdSeq<T> const& seq) {
  using namespace cute;
  auto const& a = p.args;
  int const tidx = threadIdx.x - kWarpGroupThreads;  // 0..255
  int const n_block = BwdTileScheduler(a).initial_work().n_block;
  int const group = a.heads_q / a.heads_kv;
  int const seqlen_k = seq.seqlen_k;
  int const off = seq.seqlen_k - seq.seqlen_q;
  int const n0 = n_block * T::kBlockN;

  Tensor sQ = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQ{});
  Tensor sdO = make_tensor(make_smem_ptr(ss.dO.begin()), typename T::SmemLayoutQ{});
  Tensor sQt = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQt{});
  Tensor sdOt = make_tensor(make_smem_ptr(ss.dO.begin()), typename T::SmemLayoutQt{});
  Tensor sK = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutK{});
  Tensor sV = make_tensor(make_smem_ptr(ss.V.begin()), typename T::SmemLayoutK{});
  Tensor sKt = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutKt{});
  Tensor sdS = make_tensor(make_smem_ptr(ss.dS.begin()), typename T::SmemLayoutdS{});

  typename T::TiledMmaSdP mma_sdp;
  typename T::TiledMmadKV mma_dkv;
  typename T::TiledMmadQ mma_dq;
  auto thr_sdp = mma_sdp.get_thread_slice(tidx);
  auto thr_dkv = mma_dkv.get_thread_slice(tidx);
  auto thr_dq = mma_dq.get_thread_slice(tidx);

  Tensor tSrK = thr_sdp.make_fragment_A(thr_sdp.partition_A(sK));       // (MMA, 1, D/16)
  Tensor tSrQ = thr_sdp.make_fragment_B(thr_sdp.partition_B(sQ));       // (MMA, 1, D/16, stages)
  Tensor tdPrV = thr_sdp.make_fragment_A(thr_sdp.partition_A(sV));
  Tensor tdPrdO = thr_sdp.make_fragment_B(thr_sdp.partition_B(sdO));
  Tensor tdVrdOt = thr_dkv.make_fragment_B(thr_dkv.partition_B(sdOt));  // (MMA, 1, M/16, stages)
  Tensor tdKrQt = thr_dkv.make_fragment_B(thr_dkv.partition_B(sQt));
  Tensor tdQrdS = thr_dq.make_fragment_A(thr_dq.partition_A(sdS));      // (MMA, 1, N/16[, buffers])
  Tensor tdQrKt = thr_dq.make_fragment_B(thr_dq.partition_B(sKt));

  return cute::make_tuple(n_block, group, seqlen_k, off, n0, mma_sdp, mma_dkv, mma_dq, tSrK, tSrQ, tdPrV, tdPrdO,
                          tdVrdOt, tdKrQt, tdQrdS, tdQrKt);
}

}  // namespace cd42::attn
