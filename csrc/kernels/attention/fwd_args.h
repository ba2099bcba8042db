// The C ABI argument block of the attention forward (mirrored by ctypes in
// python/cudadent42/ops/attention.py; the kernel object exports this layout
// and the op checks its mirror field by field when it loads the kernel).
//
// Strides are in elements. Non-varlen tensors are (batch, seqlen, heads, dim);
// varlen tensors are packed (total_tokens, heads, dim) with int32
// cu_seqlens_{q,k} of length batch+1 on the device, and seqlen_{q,k} hold the
// max sequence lengths. LSE is float32, (batch, heads, seqlen_q) contiguous,
// or (heads, total_q) for varlen.
//
// tile_counter: zeroed before each launch: [0] the dynamic persistent
//   scheduler, [1 + i] pieces of split tail tile i done (split_tail.hpp).
// split_ws: split tail partials; null: no split (sizes: cd42_attn_fwd_split_sizes).
// cu_seqlens_q/k: null unless varlen. seqlen_q/k: max lengths when varlen.
// total_q/k: varlen: packed token counts (else batch * seqlen).
// window_left/right: keys visible left/right of the diagonal; 2^30 = unbounded.
// softcap: 0 = off.
#pragma once

#include <cstdint>

#include "cute/abi_layout.h"

#define CD42_ATTN_FWD_ARGS_FIELDS(X)                                                                  \
  X(const void*, q) X(const void*, k) X(const void*, v) X(void*, o) X(float*, lse)                    \
  X(int32_t*, tile_counter) X(float*, split_ws)                                                       \
  X(const int32_t*, cu_seqlens_q) X(const int32_t*, cu_seqlens_k)                                     \
  X(int64_t, q_batch_stride) X(int64_t, q_row_stride) X(int64_t, q_head_stride)                       \
  X(int64_t, k_batch_stride) X(int64_t, k_row_stride) X(int64_t, k_head_stride)                       \
  X(int64_t, v_batch_stride) X(int64_t, v_row_stride) X(int64_t, v_head_stride)                       \
  X(int64_t, o_batch_stride) X(int64_t, o_row_stride) X(int64_t, o_head_stride)                       \
  X(int32_t, batch) X(int32_t, heads_q) X(int32_t, heads_kv)                                          \
  X(int32_t, seqlen_q) X(int32_t, seqlen_k)                                                           \
  X(int32_t, total_q) X(int32_t, total_k)                                                             \
  X(int32_t, window_left) X(int32_t, window_right)                                                    \
  X(float, softmax_scale) X(float, softcap) X(int32_t, num_sms)

extern "C" {
struct cd42_attn_fwd_args {
  CD42_ATTN_FWD_ARGS_FIELDS(CD42_ABI_DECLARE)
};
}

CD42_ABI_DEFINE_EXPORT(cd42_attn_fwd_args, CD42_ATTN_FWD_ARGS_FIELDS)
