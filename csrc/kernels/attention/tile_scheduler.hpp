// Persistent tile order for attention: m-blocks of one (batch, head) are
// consecutive, so the ~132 tiles in flight share a few heads' K/V in L2.
// With a causal/local mask the m-blocks of a head are walked from the last
// (most keys) to the first: the longest tiles start first and the short ones
// fill the tail of the persistent grid.
#pragma once

#include <cute/config.hpp>
#include <cutlass/fast_math.h>

namespace cd42::attn {

// Built on the host and read from kernel parameters (constant bank): the
// divisions are multiply-shifts with host-computed constants, which keeps the
// single producer thread within its 24 registers.
struct AttnTileScheduler {
  cutlass::FastDivmod m_blocks_div, heads_div;
  int num_tiles;
  bool longest_first;

  AttnTileScheduler() = default;
  CUTE_HOST AttnTileScheduler(int m_blocks, int heads, int batch, bool longest_first_)
      : m_blocks_div(m_blocks), heads_div(heads), num_tiles(m_blocks * heads * batch),
        longest_first(longest_first_) {}

  CUTE_HOST_DEVICE void coords(int tile, int& m_block, int& head, int& batch) const {
    int bh, m;
    m_blocks_div(bh, m, tile);
    m_block = longest_first ? m_blocks_div.divisor - 1 - m : m;
    heads_div(batch, head, bh);
  }
};

}  // namespace cd42::attn
