// Per-tile geometry: where a (batch, head, m-block) tile's rows and keys live,
// which K/V blocks it must visit, and which of those need element masking.
//
// Masks follow FlashAttention 2/3: query row r sees key c iff
//   c < seqlen_k  and  r + off - left <= c <= r + off + right,  off = seqlen_k - seqlen_q
// (bottom-right aligned). The host passes unbounded sides as kUnbounded
// (2^30), never as -1, so a negative `right` can express PyTorch's top-left
// causal alignment (right = seqlen_q - seqlen_k) without a special case.
#pragma once

#include <cute/config.hpp>

#include "kernels/attention/fwd_args.h"

namespace cd42::attn {

constexpr int kUnbounded = 1 << 30;

template <bool Varlen, bool HasWindow, int BlockM, int BlockN>
struct BlockInfo {
  int seqlen_q, seqlen_k;
  int q_offset, k_offset;  // first row of this sequence in the packed (varlen) layout
  int m_start;
  int n_block_min, n_block_max;  // visit [min, max), walked from max-1 down

  CUTE_DEVICE BlockInfo(cd42_attn_fwd_args const& a, int batch, int m_block) {
    if constexpr (Varlen) {
      q_offset = a.cu_seqlens_q[batch];
      k_offset = a.cu_seqlens_k[batch];
      seqlen_q = a.cu_seqlens_q[batch + 1] - q_offset;
      seqlen_k = a.cu_seqlens_k[batch + 1] - k_offset;
    } else {
      q_offset = k_offset = 0;
      seqlen_q = a.seqlen_q;
      seqlen_k = a.seqlen_k;
    }
    m_start = m_block * BlockM;
    int const m_last = min(m_start + BlockM, seqlen_q) - 1;
    int const off = seqlen_k - seqlen_q;
    int lo = 0, hi = seqlen_k;  // key range [lo, hi) any row of the tile may see
    if constexpr (HasWindow) {
      hi = min(hi, m_last + off + a.window_right + 1);
      lo = max(lo, m_start + off - a.window_left);
    }
    n_block_min = lo / BlockN;
    n_block_max = hi > lo ? (hi + BlockN - 1) / BlockN : n_block_min;
  }

  CUTE_DEVICE bool tile_exists() const { return m_start < seqlen_q; }

  // Key blocks [n_unmasked_min, n_unmasked_max) need no element mask for any
  // row of the tile: the consumer runs them on its fast path, and the masked
  // blocks above (causal diagonal, ragged seqlen_k end) and below (left
  // window edge) on a separate one. Both ends are clamped into
  // [n_block_min, n_block_max] with min <= max.
  CUTE_DEVICE int n_unmasked_max(cd42_attn_fwd_args const& a) const {
    int hi = seqlen_k;  // block n is clean at the top iff (n + 1) * BlockN <= hi
    if constexpr (HasWindow) hi = min(hi, m_start + (seqlen_k - seqlen_q) + a.window_right + 1);
    return max(n_block_min, min(n_block_max, max(hi, 0) / BlockN));
  }
  CUTE_DEVICE int n_unmasked_min(cd42_attn_fwd_args const& a, int n_hi) const {
    if constexpr (!HasWindow) return n_block_min;
    int const m_last = min(m_start + BlockM, seqlen_q) - 1;
    int const lo = m_last + (seqlen_k - seqlen_q) - a.window_left;  // block n is clean iff n * BlockN >= lo
    int const n_lo = lo <= 0 ? 0 : (lo + BlockN - 1) / BlockN;
    return max(n_block_min, min(n_hi, n_lo));
  }
};

}  // namespace cd42::attn
