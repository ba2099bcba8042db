// Host side of the attention backward: checks, TMA descriptors, launches.
#pragma once

#include <cmath>
#include <cstdint>
#include <cuda_runtime.h>

#include "cute/abi.h"
#include "kernels/attention/bwd_kernel.hpp"
#include "kernels/attention/bwd_postprocess.hpp"
#include "kernels/attention/bwd_preprocess.hpp"
#include "kernels/attention/bwd_scheduler.hpp"
#include "kernels/attention/fwd_launch.hpp"  // aligned16, stride_ok

namespace cd42::attn {

template <class T>
int launch_bwd(cd42_attn_bwd_args const& a, cudaStream_t stream) {
  using E = typename T::Element;
  constexpr int eb = sizeof(E);
  if (a.batch <= 0 || a.heads_q <= 0 || a.heads_kv <= 0 || a.heads_q % a.heads_kv != 0 || a.seqlen_q <= 0 ||
      a.seqlen_k <= 0 || a.seqlen_q_pad % T::kBlockM != 0 || a.seqlen_q_pad < a.seqlen_q) {
    return set_error(kBadArgument, "attn_bwd: bad sizes (batch/heads/seqlens must be positive, heads_q % heads_kv == 0)");
  }
  if (a.block_n != T::kBlockN || a.tile_group <= 0) {
    return set_error(kBadArgument, "attn_bwd: block_n must match the config and tile_group be positive");
  }
  if (T::kSoftcap != (a.softcap > 0.f)) {
    return set_error(kBadArgument, "attn_bwd: softcap > 0 must be given exactly for softcap configs");
  }
  if (T::kVarlen != (a.cu_seqlens_q != nullptr && a.cu_seqlens_k != nullptr) ||
      (T::kVarlen && (a.total_q <= 0 || a.total_k <= 0 ||
                      a.seqlen_q_pad < int64_t(a.total_q) + int64_t(a.batch) * T::kBlockM))) {
    return set_error(kBadArgument, "attn_bwd: cu_seqlens (and a padded row count >= total_q + batch * M) must be "
                                   "given exactly for varlen configs");
  }
  if (T::kDeterministic != (a.dq_semaphore != nullptr)) {
    return set_error(kBadArgument, "attn_bwd: dq_semaphore must be given exactly for deterministic configs");
  }
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.dout) ||
      !stride_ok(a.q_row_stride, eb) || !stride_ok(a.q_head_stride, eb) || !stride_ok(a.q_batch_stride, eb) ||
      !stride_ok(a.k_row_stride, eb) || !stride_ok(a.k_head_stride, eb) || !stride_ok(a.k_batch_stride, eb) ||
      !stride_ok(a.v_row_stride, eb) || !stride_ok(a.v_head_stride, eb) || !stride_ok(a.v_batch_stride, eb) ||
      !stride_ok(a.do_row_stride, eb) || !stride_ok(a.do_head_stride, eb) || !stride_ok(a.do_batch_stride, eb)) {
    return set_error(kBadArgument, "attn_bwd: TMA needs 16-byte aligned pointers and strides (last dim contiguous)");
  }
  // Varlen: TMA sees every packed token as one sequence of batch 1.
  int const rows_q = T::kVarlen ? a.total_q : a.seqlen_q;
  int const rows_k = T::kVarlen ? a.total_k : a.seqlen_k;
  int const batches = T::kVarlen ? 1 : a.batch;
  typename T::Params p{
      T::make_tma_q(static_cast<E const*>(a.q), rows_q, a.heads_q, batches, a.q_row_stride, a.q_head_stride,
                    a.q_batch_stride),
      T::make_tma_q(static_cast<E const*>(a.dout), rows_q, a.heads_q, batches, a.do_row_stride,
                    a.do_head_stride, a.do_batch_stride),
      T::make_tma_k(static_cast<E const*>(a.k), rows_k, a.heads_kv, batches, a.k_row_stride, a.k_head_stride,
                    a.k_batch_stride),
      T::make_tma_k(static_cast<E const*>(a.v), rows_k, a.heads_kv, batches, a.v_row_stride, a.v_head_stride,
                    a.v_batch_stride),
      a,
      a.softmax_scale * 1.4426950408889634f,
      T::kSoftcap ? a.softmax_scale / a.softcap : 0.f,
      a.softcap * 1.4426950408889634f};
  static int smem_status = raise_smem_limit(attn_bwd_kernel<T>, T::kSmemBytes, "attn_bwd");
  if (smem_status != kOk) smem_status = raise_smem_limit(attn_bwd_kernel<T>, T::kSmemBytes, "attn_bwd");
  if (smem_status != kOk) return smem_status;
  if (BwdTileScheduler::num_tiles(a, T::kBlockN) > INT32_MAX) {
    return set_error(kBadArgument, "attn_bwd: more than 2^31 - 1 (key block, head, batch) tiles");
  }
  attn_bwd_kernel<T><<<BwdTileScheduler::grid_size(a, T::kBlockN), T::kThreads, T::kSmemBytes, stream>>>(p);
  return check_launch("attn_bwd launch");
}

template <class T>
int launch_bwd_preprocess(cd42_attn_bwd_pre_args const& a, cudaStream_t stream) {
  if (a.head_dim != T::kHeadDim || a.batch <= 0 || a.heads <= 0 || a.seqlen_q <= 0 ||
      a.seqlen_q_pad % T::kBlockM != 0 || a.seqlen_q_pad < a.seqlen_q ||
      T::kVarlen != (a.cu_seqlens_q != nullptr) ||
      (T::kVarlen && a.seqlen_q_pad < int64_t(a.total_q) + int64_t(a.batch) * T::kBlockM)) {
    return set_error(kBadArgument, "attn_bwd_preprocess: bad sizes");
  }
  constexpr int eb = sizeof(typename T::Element);
  if (a.dq_accum == nullptr || !aligned16(a.o) || !aligned16(a.dout) || !stride_ok(a.o_row_stride, eb) ||
      !stride_ok(a.o_head_stride, eb) || !stride_ok(a.o_batch_stride, eb) || !stride_ok(a.do_row_stride, eb) ||
      !stride_ok(a.do_head_stride, eb) || !stride_ok(a.do_batch_stride, eb)) {
    return set_error(kBadArgument, "attn_bwd_preprocess: o / dout need 16-byte aligned pointers and strides, "
                                   "dq_accum a buffer");
  }
  using Shape = BwdPreprocessShape<T>;
  int64_t const rows = int64_t(a.batch) * a.heads * bwd_rows_per_seq<T>(a.seqlen_q, a.seqlen_q_pad);
  int64_t const ctas = (rows + Shape::kRowsPerCta - 1) / Shape::kRowsPerCta;
  if (ctas > INT32_MAX) return set_error(kBadArgument, "attn_bwd_preprocess: too many rows");
  attn_bwd_preprocess_kernel<T><<<unsigned(ctas), Shape::kThreads, 0, stream>>>(a);
  return check_launch("attn_bwd_preprocess launch");
}

template <class T>
int launch_bwd_postprocess(cd42_attn_bwd_args const& a, cudaStream_t stream) {
  if (a.batch <= 0 || a.heads_q <= 0 || a.seqlen_q <= 0 || a.seqlen_q_pad % T::kBlockM != 0 ||
      a.seqlen_q_pad < a.seqlen_q || a.dq == nullptr || T::kVarlen != (a.cu_seqlens_q != nullptr)) {
    return set_error(kBadArgument, "attn_bwd_postprocess: bad sizes");
  }
  constexpr int eb = sizeof(typename T::Element);
  if (!aligned16(a.dq) || !stride_ok(a.dq_row_stride, eb) || !stride_ok(a.dq_head_stride, eb) ||
      !stride_ok(a.dq_batch_stride, eb)) {
    return set_error(kBadArgument, "attn_bwd_postprocess: dq needs a 16-byte aligned pointer and strides");
  }
  dim3 grid(unsigned(bwd_rows_per_seq<T>(a.seqlen_q, a.seqlen_q_pad) / T::kBlockM), unsigned(a.heads_q),
            unsigned(a.batch));
  attn_bwd_postprocess_kernel<T><<<grid, T::kConsumerThreads, 0, stream>>>(a);
  return check_launch("attn_bwd_postprocess launch");
}

}  // namespace cd42::attn

#define CD42_DEFINE_ATTN_BWD_EXPORTS(Traits)                                                     \
  CD42_EXPORT int cd42_attn_bwd_launch(cd42_attn_bwd_args const* args, void* stream) {            \
    return cd42::attn::launch_bwd<Traits>(*args, static_cast<cudaStream_t>(stream));             \
  }                                                                                              \
  CD42_EXPORT int cd42_attn_bwd_preprocess_launch(cd42_attn_bwd_pre_args const* args, void* stream) { \
    return cd42::attn::launch_bwd_preprocess<Traits>(*args, static_cast<cudaStream_t>(stream));  \
  }                                                                                              \
  CD42_EXPORT int cd42_attn_bwd_postprocess_launch(cd42_attn_bwd_args const* args, void* stream) { \
    return cd42::attn::launch_bwd_postprocess<Traits>(*args, static_cast<cudaStream_t>(stream)); \
  }                                                                                              \
  CD42_EXPORT int cd42_attn_bwd_smem_bytes() { return Traits::kSmemBytes; }                     \
  CD42_EXPORT int cd42_attn_bwd_args_size() { return int(sizeof(cd42_attn_bwd_args)); }             \
  CD42_EXPORT int cd42_attn_bwd_pre_args_size() { return int(sizeof(cd42_attn_bwd_pre_args)); }
