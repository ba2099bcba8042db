// Persistent tile order for attention.
//
// Without a window every tile has the same length: the m-blocks of one
// (batch, head) are consecutive, so the ~132 tiles in flight share a few
// heads' K/V in L2.
//
// With a causal/local mask tile lengths differ, and the order must be
// longest-first over the whole grid, or a long tile claimed near the end
// leaves the other SMs idle (head-major with each head's longest m-block
// first did exactly that: at D=256, S=8192 causal the SMs were active 82% of
// the kernel's cycles, ncu on an H200). So (batch, head) pairs go in sections
// whose K/V fit in L2 (`section_heads`, from the host), and inside a section
// the m-blocks are walked from the last, every head of the section per
// m-block. A section's work then spreads over the grid before its short
// tiles, and only the last section's tail is left at the end.
#pragma once

#include <cute/config.hpp>
#include <cutlass/fast_math.h>

namespace cd42::attn {

// Built on the host and read from kernel parameters (constant bank): the
// divisions are multiply-shifts with host-computed constants, which keeps the
// single producer thread within its 24 registers.
struct AttnTileScheduler {
  cutlass::FastDivmod m_blocks_div, heads_div;
  cutlass::FastDivmod section_div;     // section_heads * m_blocks tiles per section
  cutlass::FastDivmod sec_heads_div;   // (batch, head) pairs per full section
  cutlass::FastDivmod last_heads_div;  // ... in the last section (fewer when they do not divide)
  int num_tiles;
  int batch_heads;
  bool longest_first;

  AttnTileScheduler() = default;
  CUTE_HOST AttnTileScheduler(int m_blocks, int heads, int batch, bool longest_first_, int section_heads = 1)
      : m_blocks_div(m_blocks), heads_div(heads), num_tiles(m_blocks * heads * batch), batch_heads(heads * batch),
        longest_first(longest_first_) {
    int const sh = section_heads < 1 ? 1 : (section_heads > batch_heads ? batch_heads : section_heads);
    int const last = batch_heads - (batch_heads - 1) / sh * sh;  // 1..sh
    section_div = cutlass::FastDivmod(sh * m_blocks);
    sec_heads_div = cutlass::FastDivmod(sh);
    last_heads_div = cutlass::FastDivmod(last);
  }

  CUTE_HOST_DEVICE void coords(int tile, int& m_block, int& head, int& batch) const {
    int bh, m;
    if (!longest_first) {
      m_blocks_div(bh, m, tile);
      m_block = m;
    } else {
      int section, within;
      section_div(section, within, tile);
      int const first_bh = section * sec_heads_div.divisor;
      bool const last = first_bh + sec_heads_div.divisor > batch_heads;
      int h;
      (last ? last_heads_div : sec_heads_div)(m, h, within);
      m_block = m_blocks_div.divisor - 1 - m;
      bh = first_bh + h;
    }
    heads_div(batch, head, bh);
  }
};

// (batch, head) pairs per longest-first section: as many as keep their K/V
// within `l2_budget` bytes (query heads of one GQA group share a K/V head).
CUTE_HOST int attn_section_heads(long long seqlen_k, int head_dim, int elem_bytes, int group,
                                        long long l2_budget = 32ll << 20) {
  long long const kv_head = 2ll * seqlen_k * head_dim * elem_bytes;
  long long const kv_heads = kv_head > 0 ? l2_budget / kv_head : 1;
  long long const q_heads = (kv_heads < 1 ? 1 : kv_heads) * group;
  return int(q_heads > (1 << 20) ? (1 << 20) : q_heads);
}

}  // namespace cd42::attn
