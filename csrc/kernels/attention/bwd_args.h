// The C ABI argument blocks of the attention backward (mirrored by ctypes in
// python/cudadent42/ops/attention_bwd.py; the kernel object exports these
// layouts and the op checks its mirrors field by field when it loads the kernel).
//
// Tensors as in the forward: q/o/do/dq (batch, seqlen_q, heads, dim), k/v/dk/dv
// (batch, seqlen_k, heads_kv, dim), strides in elements, last dim contiguous;
// varlen: packed (total, heads, dim) with batch strides 0, int32 cu_seqlens of
// length batch+1 on the device, seqlen_q/k the max lengths.
// lse_log2 and dsum are float32 (batch, heads, seqlen_q_pad) contiguous with
// seqlen_q_pad = seqlen_q rounded up to the config's query rows per step M (64 or
// 128), written by the preprocess kernel
// (pad rows: lse_log2 = +inf, dsum = 0, so they contribute nothing). Varlen:
// (heads, seqlen_q_pad) with sequence b's rows starting at the M-aligned row
// (cu_seqlens_q[b] + b * M) / M * M (a gap of at least its own padding before
// the next one), seqlen_q_pad = round_up(total_q + batch * M, M).
// dq_accum is float32 (rows of lse_log2) / M chunks of M * dim, zeroed by
// the preprocess kernel: one contiguous chunk per query block, in the dQ MMA's
// register order (the kernel adds whole chunks with one bulk reduce each;
// the postprocess kernel undoes the order, scales and writes dq).
//
// Fields of cd42_attn_bwd_args:
// lse_log2: forward LSE * log2(e), padded. dsum: rowsum(dO * O), padded.
// dq_semaphore: deterministic configs: one zeroed int32 per dq_accum chunk, else null.
// cu_seqlens_q/k: varlen configs only, else null. seqlen_q/k: max lengths when varlen.
// total_q/k: varlen: packed token counts (else batch * seqlen).
// window_left/right: as the forward: 2^30 = unbounded.
// block_n: keys per CTA of the config (the grid's key blocks).
// tile_group: (head, batch) pairs per group of the CTA order (bwd_scheduler.hpp).
// softcap: > 0 exactly for softcap configs: scores = softcap * tanh(scale * q.k / softcap).
#pragma once

#include <cstdint>

#include "cute/abi_layout.h"

#define CD42_ATTN_BWD_ARGS_FIELDS(X)                                                                  \
  X(const void*, q) X(const void*, k) X(const void*, v) X(const void*, dout)                          \
  X(const float*, lse_log2) X(const float*, dsum) X(float*, dq_accum) X(int32_t*, dq_semaphore)       \
  X(const int32_t*, cu_seqlens_q) X(const int32_t*, cu_seqlens_k)                                     \
  X(void*, dq) X(void*, dk) X(void*, dv)                                                              \
  X(int64_t, q_batch_stride) X(int64_t, q_row_stride) X(int64_t, q_head_stride)                       \
  X(int64_t, k_batch_stride) X(int64_t, k_row_stride) X(int64_t, k_head_stride)                       \
  X(int64_t, v_batch_stride) X(int64_t, v_row_stride) X(int64_t, v_head_stride)                       \
  X(int64_t, do_batch_stride) X(int64_t, do_row_stride) X(int64_t, do_head_stride)                    \
  X(int64_t, dq_batch_stride) X(int64_t, dq_row_stride) X(int64_t, dq_head_stride)                    \
  X(int64_t, dk_batch_stride) X(int64_t, dk_row_stride) X(int64_t, dk_head_stride)                    \
  X(int64_t, dv_batch_stride) X(int64_t, dv_row_stride) X(int64_t, dv_head_stride)                    \
  X(int32_t, batch) X(int32_t, heads_q) X(int32_t, heads_kv)                                          \
  X(int32_t, seqlen_q) X(int32_t, seqlen_k) X(int32_t, seqlen_q_pad)                                  \
  X(int32_t, total_q) X(int32_t, total_k)                                                             \
  X(int32_t, window_left) X(int32_t, window_right)                                                    \
  X(int32_t, block_n) X(int32_t, tile_group)                                                          \
  X(float, softmax_scale) X(float, softcap)

// Preprocess: dsum[b, h, r] = sum_d dO[b, r, h, d] * O[b, r, h, d] in float32
// and lse_log2[b, h, r] = lse[b, h, r] * log2(e), both padded as above, and
// dq_accum's rows zeroed (it is the main kernel's dq_accum). o and dout:
// 16-byte aligned pointers and strides. lse: the forward LSE (batch, heads,
// seqlen_q), varlen (heads, total_q). cu_seqlens_q: varlen configs only.
// seqlen_q: max length when varlen.
#define CD42_ATTN_BWD_PRE_ARGS_FIELDS(X)                                                              \
  X(const void*, o) X(const void*, dout) X(const float*, lse)                                         \
  X(float*, dsum) X(float*, lse_log2) X(float*, dq_accum) X(const int32_t*, cu_seqlens_q)             \
  X(int64_t, o_batch_stride) X(int64_t, o_row_stride) X(int64_t, o_head_stride)                       \
  X(int64_t, do_batch_stride) X(int64_t, do_row_stride) X(int64_t, do_head_stride)                    \
  X(int32_t, batch) X(int32_t, heads) X(int32_t, seqlen_q) X(int32_t, seqlen_q_pad)                   \
  X(int32_t, total_q) X(int32_t, head_dim)

extern "C" {
struct cd42_attn_bwd_args {
  CD42_ATTN_BWD_ARGS_FIELDS(CD42_ABI_DECLARE)
};

struct cd42_attn_bwd_pre_args {
  CD42_ATTN_BWD_PRE_ARGS_FIELDS(CD42_ABI_DECLARE)
};
}

CD42_ABI_DEFINE_EXPORT(cd42_attn_bwd_args, CD42_ATTN_BWD_ARGS_FIELDS)
CD42_ABI_DEFINE_EXPORT(cd42_attn_bwd_pre_args, CD42_ATTN_BWD_PRE_ARGS_FIELDS)
