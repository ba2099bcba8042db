// Side kernel run after the attention backward.
#pragma once

#include <cstdint>
#include <cute/tensor.hpp>

#include "kernels/attention/bwd_args.h"
#include "kernels/attention/bwd_common.hpp"

namespace cd42::attn {

// dq = softmax_scale * dQ accumulator, from the per-query-block chunks in
// the dQ MMA's register order (the same TiledMma partition as the main
// kernel, so the two cannot disagree); one CTA of 256 threads per chunk.
// The chunk is reordered through shared memory so that dq rows leave as
// 16-byte coalesced stores (2-byte stores in register order took ~4x the
// bytes' time).
template <class T>
__global__ void __launch_bounds__(T::kConsumerThreads) attn_bwd_postprocess_kernel(cd42_attn_bwd_args const a) {
  using namespace cute;
  using Element = typename T::Element;
  constexpr int kRowElems = T::kHeadDim + 8;  // padded row: the 16-byte reads below hit distinct banks
  __shared__ alignas(16) Element tile[T::kBlockM * kRowElems];
  int const m = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  int const tidx = threadIdx.x;
  BwdSeq<T> const seq(a, batch, a.heads_q);
  if (m * T::kBlockM >= seq.seqlen_q) return;  // varlen: past this sequence's rows (the whole CTA)
  float4 const* src = reinterpret_cast<float4 const*>(
      a.dq_accum + (seq.stat_row(head) / T::kBlockM + m) * (T::kBlockM * T::kHeadDim));
  typename T::TiledMmadQ mma_dq;
  Tensor tdQcdQ = mma_dq.get_thread_slice(tidx).partition_C(
      make_identity_tensor(Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{}));
  static_assert(decltype(size(tdQcdQ))::value == T::kdQPerThread, "one register-order chunk per thread");
  CUTE_UNROLL
  for (int c = 0; c < T::kdQPerThread / 4; ++c) {
    float4 const v = src[dq_float4_slot<T>(c, tidx)];
    float const vals[4] = {v.x, v.y, v.z, v.w};
    CUTE_UNROLL
    for (int j = 0; j < 4; ++j) {
      auto const rc = tdQcdQ(4 * c + j);
      tile[get<0>(rc) * kRowElems + get<1>(rc)] = static_cast<Element>(vals[j] * a.softmax_scale);
    }
  }
  __syncthreads();
  Element* dq = static_cast<Element*>(a.dq) + int64_t(batch) * a.dq_batch_stride + int64_t(head) * a.dq_head_stride +
                int64_t(seq.q_offset) * a.dq_row_stride;
  constexpr int kChunksPerRow = T::kHeadDim / 8;
  CUTE_UNROLL
  for (int i = tidx; i < T::kBlockM * kChunksPerRow; i += T::kConsumerThreads) {
    int const row = i / kChunksPerRow, chunk = i % kChunksPerRow;
    int const q_row = m * T::kBlockM + row;
    if (q_row < seq.seqlen_q) {
      reinterpret_cast<uint4*>(dq + int64_t(q_row) * a.dq_row_stride)[chunk] =
          *reinterpret_cast<uint4 const*>(&tile[row * kRowElems + chunk * 8]);
    }
  }
}

}  // namespace cd42::attn
