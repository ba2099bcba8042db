// Side kernel run before the attention backward.
#pragma once

#include <cmath>
#include <cstdint>
#include <cute/config.hpp>

#include "kernels/attention/bwd_args.h"
#include "kernels/attention/bwd_common.hpp"

namespace cd42::attn {

// dsum = rowsum(dO * O) and lse_log2 = LSE * log2(e), float32, per padded
// row; pad rows get dsum = 0, lse_log2 = +inf. Each row also zeroes its D
// floats of the dQ accumulator (whole chunks, since every padded row of a
// block has a thread group here), so no separate memset runs. A row is read
// by a group of kLanes lanes with 16-byte loads (one per lane at D <= 256),
// so the kernel streams O and dO at HBM rate (the first version, one warp
// per row with 2-byte loads, took 85-150 us at B*S = 16384, H*D = 2048 on
// H200: 2.5-4x the bytes' time). The grid covers (batch, heads, rows) with
// rows = the (longest) sequence's padded length.
template <class T>
CUTE_HOST_DEVICE int bwd_rows_per_seq(int seqlen_q, int seqlen_q_pad) {
  return T::kVarlen ? (seqlen_q + T::kBlockM - 1) / T::kBlockM * T::kBlockM : seqlen_q_pad;
}

template <class T>
struct BwdPreprocessShape {
  static constexpr int kChunks = T::kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kLanes = kChunks <= 8 ? 8 : kChunks <= 16 ? 16 : 32;  // lanes per row, a power of two
  static constexpr int kRowsPerWarp = 32 / kLanes;
  static constexpr int kThreads = 256;
  static constexpr int kRowsPerCta = kThreads / 32 * kRowsPerWarp;
  static_assert(T::kHeadDim % 8 == 0 && kChunks <= 32, "preprocess: one 16-byte chunk per lane");
};

template <class T>
__global__ void __launch_bounds__(BwdPreprocessShape<T>::kThreads) attn_bwd_preprocess_kernel(
    cd42_attn_bwd_pre_args const a) {
  using Element = typename T::Element;
  using Shape = BwdPreprocessShape<T>;
  int const rows = bwd_rows_per_seq<T>(a.seqlen_q, a.seqlen_q_pad);
  int const lane = threadIdx.x % 32;
  int const sub = lane % Shape::kLanes;  // this lane's 16-byte chunk of the row
  int64_t const id = int64_t(blockIdx.x) * Shape::kRowsPerCta + threadIdx.x / Shape::kLanes;
  // No early return: every lane takes part in the row's shuffles below.
  bool valid = id < int64_t(a.batch) * a.heads * rows;
  int const r = valid ? int(id % rows) : 0;
  int const h = valid ? int(id / rows % a.heads) : 0;
  int const b = valid ? int(id / (int64_t(rows) * a.heads)) : 0;
  int len = a.seqlen_q, q_off = 0;
  int64_t out_row = 0, lse_idx = 0;
  if constexpr (T::kVarlen) {
    if (valid) {
      q_off = a.cu_seqlens_q[b];
      len = a.cu_seqlens_q[b + 1] - q_off;
      valid = r < (len + T::kBlockM - 1) / T::kBlockM * T::kBlockM;  // past this sequence's last block: nothing
      out_row = int64_t(h) * a.seqlen_q_pad + varlen_padded_row0<T>(a.cu_seqlens_q, b) + r;
      lse_idx = int64_t(h) * a.total_q + q_off + r;
    }
  } else {
    out_row = (int64_t(b) * a.heads + h) * a.seqlen_q_pad + r;
    lse_idx = (int64_t(b) * a.heads + h) * a.seqlen_q + r;
  }
  float s = 0.f;
  if (valid && r < len && sub < Shape::kChunks) {
    auto const* o = static_cast<Element const*>(a.o) + b * a.o_batch_stride + int64_t(q_off + r) * a.o_row_stride +
                    int64_t(h) * a.o_head_stride;
    auto const* d = static_cast<Element const*>(a.dout) + b * a.do_batch_stride +
                    int64_t(q_off + r) * a.do_row_stride + int64_t(h) * a.do_head_stride;
    uint4 const ov = reinterpret_cast<uint4 const*>(o)[sub];  // 16-byte aligned: checked by the caller
    uint4 const dv = reinterpret_cast<uint4 const*>(d)[sub];
    Element const* oe = reinterpret_cast<Element const*>(&ov);
    Element const* de = reinterpret_cast<Element const*>(&dv);
    CUTE_UNROLL
    for (int i = 0; i < 8; ++i) s += float(oe[i]) * float(de[i]);
  }
  CUTE_UNROLL
  for (int k = Shape::kLanes / 2; k > 0; k /= 2) s += __shfl_xor_sync(0xffffffff, s, k);
  if (valid) {
    float4* z = reinterpret_cast<float4*>(a.dq_accum + out_row * T::kHeadDim);
    CUTE_UNROLL
    for (int i = sub; i < T::kHeadDim / 4; i += Shape::kLanes) z[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (sub == 0) {
      a.dsum[out_row] = s;
      a.lse_log2[out_row] = r < len ? a.lse[lse_idx] * 1.4426950408889634f : INFINITY;
    }
  }
}

}  // namespace cd42::attn
