// Host side of the attention forward: checks, TMA descriptors, launch.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cuda_runtime.h>

#include "cute/abi.h"
#include "kernels/attention/fwd_kernel.hpp"

namespace cd42::attn {

inline bool aligned16(void const* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
inline bool stride_ok(int64_t s, int elem_bytes) { return s >= 0 && (s * elem_bytes) % 16 == 0 && s * elem_bytes < (int64_t(1) << 40); }

// The split-tail plan of a call (split_tail.hpp): a pure function of the
// sizes, so the launch and the workspace query always agree.
template <class T>
SplitTail split_plan(cd42_attn_fwd_args const& a, bool allowed = true) {
  long long const tiles = (long long)((a.seqlen_q + T::kBlockM - 1) / T::kBlockM) * a.heads_q * a.batch;
  int const blocks = (a.seqlen_k + T::kBlockN - 1) / T::kBlockN;
  // Unsplit, the plan still counts the tiles: `full` = all of them.
  bool const ok = allowed && T::kSplitTail && a.seqlen_q > 0 && a.seqlen_k > 0;
  return SplitTail::plan(tiles > INT32_MAX ? 0 : int(tiles), blocks, a.num_sms, ok);
}

template <class T>
int launch_fwd(cd42_attn_fwd_args const& a, cudaStream_t stream) {
  using E = typename T::Element;
  constexpr int eb = sizeof(E);
  if (a.batch <= 0 || a.heads_q <= 0 || a.heads_kv <= 0 || a.heads_q % a.heads_kv != 0 || a.seqlen_q <= 0 ||
      a.seqlen_k <= 0 || a.num_sms <= 0) {
    return set_error(kBadArgument, "attn_fwd: bad sizes (batch/heads/seqlens must be positive, heads_q % heads_kv == 0)");
  }
  if (T::kVarlen != (a.cu_seqlens_q != nullptr) || (a.cu_seqlens_q == nullptr) != (a.cu_seqlens_k == nullptr)) {
    return set_error(kBadArgument, "attn_fwd: cu_seqlens given to a non-varlen kernel or missing for a varlen one");
  }
  if (!aligned16(a.q) || !aligned16(a.k) || !aligned16(a.v) || !aligned16(a.o) ||
      !stride_ok(a.q_row_stride, eb) || !stride_ok(a.q_head_stride, eb) || !stride_ok(a.q_batch_stride, eb) ||
      !stride_ok(a.k_row_stride, eb) || !stride_ok(a.k_head_stride, eb) || !stride_ok(a.k_batch_stride, eb) ||
      !stride_ok(a.v_row_stride, eb) || !stride_ok(a.v_head_stride, eb) || !stride_ok(a.v_batch_stride, eb) ||
      !stride_ok(a.o_row_stride, eb) || !stride_ok(a.o_head_stride, eb) || !stride_ok(a.o_batch_stride, eb)) {
    return set_error(kBadArgument, "attn_fwd: TMA needs 16-byte aligned pointers and strides (last dim contiguous)");
  }
  int const rows_q = T::kVarlen ? a.total_q : a.seqlen_q;
  int const rows_k = T::kVarlen ? a.total_k : a.seqlen_k;
  int const batches = T::kVarlen ? 1 : a.batch;
  // A size-1 batch axis still needs a legal TMA stride.
  auto bstride = [&](int64_t s, int64_t row_s) { return T::kVarlen ? row_s * 16 : s; };

  typename T::Params p{
      T::make_tma_q(static_cast<E const*>(a.q), rows_q, a.heads_q, batches, a.q_row_stride, a.q_head_stride,
                    bstride(a.q_batch_stride, a.q_row_stride)),
      T::make_tma_k(static_cast<E const*>(a.k), rows_k, a.heads_kv, batches, a.k_row_stride, a.k_head_stride,
                    bstride(a.k_batch_stride, a.k_row_stride)),
      T::make_tma_v(static_cast<E const*>(a.v), rows_k, a.heads_kv, batches, a.v_row_stride, a.v_head_stride,
                    bstride(a.v_batch_stride, a.v_row_stride)),
      T::make_tma_o(static_cast<E*>(a.o), rows_q, a.heads_q, batches, a.o_row_stride, a.o_head_stride,
                    bstride(a.o_batch_stride, a.o_row_stride)),
      a,
      (a.seqlen_q + T::kBlockM - 1) / T::kBlockM,
      AttnTileScheduler((a.seqlen_q + T::kBlockM - 1) / T::kBlockM, a.heads_q, a.batch, T::kHasWindow,
                        attn_section_heads(a.seqlen_k, T::kHeadDim, int(sizeof(E)), a.heads_q / a.heads_kv)),
      // Without its workspace (a caller that did not ask cd42_attn_fwd_split_sizes) the tail runs unsplit.
      split_plan<T>(a, a.split_ws != nullptr),
      cutlass::FastDivmod(a.heads_q / a.heads_kv),
      0.f, 0.f, 0.f};
  constexpr float kLog2e = 1.4426950408889634f;
  if (T::kSoftcap) {
    p.softcap_in = a.softmax_scale / a.softcap;  // tanh argument per raw score
    p.score_scale_log2 = kLog2e;                 // scores are already scaled by the cap
    p.score_scale = 1.f;
  } else {
    p.score_scale_log2 = a.softmax_scale * kLog2e;
    p.score_scale = a.softmax_scale;
  }

  // Once per process: the limit is a per-function attribute.
  static int smem_status = raise_smem_limit(attn_fwd_kernel<T>, T::kSmemBytes, "attn_fwd");
  if (smem_status != kOk) smem_status = raise_smem_limit(attn_fwd_kernel<T>, T::kSmemBytes, "attn_fwd");  // again: re-sets the message
  if (smem_status != kOk) return smem_status;
  int64_t const tiles = int64_t(p.num_m_blocks) * a.heads_q * a.batch;
  if (tiles > INT32_MAX) return set_error(kBadArgument, "attn_fwd: too many tiles");
  // Work items: whole tiles, then split-tail items (== tiles unsplit).
  dim3 grid(unsigned(FwdProducerScheduler<T>::grid_size(p.split, a.num_sms)));
  attn_fwd_kernel<T><<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  return check_launch("attn_fwd launch");
}

}  // namespace cd42::attn

#define CD42_DEFINE_ATTN_FWD_EXPORTS(Traits)                                         \
  CD42_EXPORT int cd42_attn_fwd_launch(cd42_attn_fwd_args const* args, void* stream) { \
    return cd42::attn::launch_fwd<Traits>(*args, static_cast<cudaStream_t>(stream)); \
  }                                                                                  \
  CD42_EXPORT int cd42_attn_fwd_smem_bytes() { return Traits::kSmemBytes; }          \
  /* sizes[0]: int32 tile counters to zero, sizes[1]: float32 split workspace */       \
  CD42_EXPORT void cd42_attn_fwd_split_sizes(cd42_attn_fwd_args const* args, int64_t* sizes) { \
    cd42::attn::SplitTail const s = cd42::attn::split_plan<Traits>(*args);              \
    sizes[0] = 1 + s.tail_tiles();                                                      \
    sizes[1] = s.workspace_floats(Traits::kHeadDim, Traits::kConsumerThreads);          \
  }                                                                                     \
  CD42_EXPORT int cd42_attn_fwd_args_size() { return int(sizeof(cd42_attn_fwd_args)); }
