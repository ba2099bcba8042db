// The C ABI argument block of the attention forward (mirrored by ctypes in
// python/cudadent42/ops/attention.py; keep the two in the same field order).
//
// Strides are in elements. Non-varlen tensors are (batch, seqlen, heads, dim);
// varlen tensors are packed (total_tokens, heads, dim) with int32
// cu_seqlens_{q,k} of length batch+1 on the device, and seqlen_{q,k} hold the
// max sequence lengths. LSE is float32, (batch, heads, seqlen_q) contiguous,
// or (heads, total_q) for varlen.
#pragma once

#include <cstdint>

extern "C" {
struct cd42_attn_fwd_args {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  float* lse;
  int32_t* tile_counter;        // zeroed before each launch: [0] the dynamic persistent scheduler,
                                //   [1 + i] pieces of split tail tile i done (split_tail.hpp)
  float* split_ws;              // split tail partials; null: no split (sizes: cd42_attn_fwd_split_sizes)
  const int32_t* cu_seqlens_q;  // null unless varlen
  const int32_t* cu_seqlens_k;
  int64_t q_batch_stride, q_row_stride, q_head_stride;
  int64_t k_batch_stride, k_row_stride, k_head_stride;
  int64_t v_batch_stride, v_row_stride, v_head_stride;
  int64_t o_batch_stride, o_row_stride, o_head_stride;
  int32_t batch, heads_q, heads_kv;
  int32_t seqlen_q, seqlen_k;    // max lengths when varlen
  int32_t total_q, total_k;      // varlen: packed token counts (else batch*seqlen)
  int32_t window_left, window_right;  // keys visible left/right of the diagonal; 2^30 = unbounded
  float softmax_scale;
  float softcap;  // 0 = off
  int32_t num_sms;
};
}
