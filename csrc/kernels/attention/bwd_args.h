// The C ABI argument block of the attention backward (mirrored by ctypes in
// python/cudadent42/ops/attention_bwd.py; keep the two in the same order).
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
#pragma once

#include <cstdint>

extern "C" {
struct cd42_attn_bwd_args {
  const void* q;
  const void* k;
  const void* v;
  const void* dout;
  const float* lse_log2;  // forward LSE * log2(e), padded
  const float* dsum;      // rowsum(dO * O), padded
  float* dq_accum;
  int32_t* dq_semaphore;  // deterministic configs: one zeroed int32 per dq_accum chunk, else null
  const int32_t* cu_seqlens_q;  // varlen configs only, else null
  const int32_t* cu_seqlens_k;
  void* dq;
  void* dk;
  void* dv;
  int64_t q_batch_stride, q_row_stride, q_head_stride;
  int64_t k_batch_stride, k_row_stride, k_head_stride;
  int64_t v_batch_stride, v_row_stride, v_head_stride;
  int64_t do_batch_stride, do_row_stride, do_head_stride;
  int64_t dq_batch_stride, dq_row_stride, dq_head_stride;
  int64_t dk_batch_stride, dk_row_stride, dk_head_stride;
  int64_t dv_batch_stride, dv_row_stride, dv_head_stride;
  int32_t batch, heads_q, heads_kv;
  int32_t seqlen_q, seqlen_k, seqlen_q_pad;  // max lengths when varlen
  int32_t total_q, total_k;                   // varlen: packed token counts (else batch * seqlen)
  int32_t window_left, window_right;  // as the forward: 2^30 = unbounded
  int32_t block_n;     // keys per CTA of the config (the grid's key blocks)
  int32_t tile_group;  // (head, batch) pairs per group of the CTA order (bwd_scheduler.hpp)
  float softmax_scale;
  float softcap;  // > 0 exactly for softcap configs: scores = softcap * tanh(scale * q.k / softcap)
};

// Preprocess: dsum[b, h, r] = sum_d dO[b, r, h, d] * O[b, r, h, d] in float32
// and lse_log2[b, h, r] = lse[b, h, r] * log2(e), both padded as above, and
// dq_accum's rows zeroed. o and dout: 16-byte aligned pointers and strides.
struct cd42_attn_bwd_pre_args {
  const void* o;
  const void* dout;
  const float* lse;  // forward LSE (batch, heads, seqlen_q), varlen (heads, total_q)
  float* dsum;
  float* lse_log2;
  float* dq_accum;  // zeroed here (the main kernel's dq_accum)
  const int32_t* cu_seqlens_q;  // varlen configs only
  int64_t o_batch_stride, o_row_stride, o_head_stride;
  int64_t do_batch_stride, do_row_stride, do_head_stride;
  int32_t batch, heads, seqlen_q, seqlen_q_pad, total_q, head_dim;  // seqlen_q: max length when varlen
};
}
