// Persistent tile order for attention: m-blocks of one (batch, head) are
// consecutive, so the ~132 tiles in flight share a few heads' K/V in L2.
// With a causal/local mask the m-blocks of a head are walked from the last
// (most keys) to the first: the longest tiles start first and the short ones
// fill the tail of the persistent grid.
#pragma once

#include <cute/config.hpp>

namespace cd42::attn {

struct AttnTileScheduler {
  int num_m_blocks, num_heads, num_tiles;
  bool longest_first;

  CUTE_HOST_DEVICE AttnTileScheduler(int m_blocks, int heads, int batch, bool longest_first_)
      : num_m_blocks(m_blocks), num_heads(heads), num_tiles(m_blocks * heads * batch),
        longest_first(longest_first_) {}

  CUTE_HOST_DEVICE void coords(int tile, int& m_block, int& head, int& batch) const {
    int const bh = tile / num_m_blocks;
    int const m = tile - bh * num_m_blocks;
    m_block = longest_first ? num_m_blocks - 1 - m : m;
    head = bh % num_heads;
    batch = bh / num_heads;
  }
};

}  // namespace cd42::attn
