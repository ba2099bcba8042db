// Scheduler of the attention backward (the interface of cute/scheduler.hpp).
//
// Non-persistent: one CTA per (key block, KV head, batch) tile, so
// next_work() has nothing more. (A persistent version, the producer claiming
// tiles from a counter and loading the next tile's K/V under the epilogue,
// measured inside the run-to-run spread on an H100: 0.95-1.08x at D=64/128,
// S=2k/4k, 4 reps of a 5-10% spread; the simpler kernel was kept.)
//
// The grid is one-dimensional, over tiles in this order: (head, batch) pairs
// in groups of a.tile_group, key-block-major inside a group. Under a causal
// mask key block 0 (seen by every query block) is the longest, so each
// group's long blocks start first and its short diagonal ones fill the end,
// instead of one long block starting last; a group's Q / dO (what its CTAs
// re-read) stays small enough for L2 (the host picks the group size).
#pragma once

#include <cstdint>
#include <cute/config.hpp>

#include "kernels/attention/bwd_args.h"

namespace cd42::attn {

struct BwdTile {
  int n_block, head_kv, batch;
  CUTE_HOST_DEVICE bool is_valid() const { return n_block >= 0; }
};

struct BwdTileScheduler {
  cd42_attn_bwd_args const& a;

  CUTE_HOST_DEVICE explicit BwdTileScheduler(cd42_attn_bwd_args const& a_) : a(a_) {}

  CUTE_DEVICE BwdTile initial_work() const {
    int const n_blocks = (a.seqlen_k + a.block_n - 1) / a.block_n;
    int const pairs = a.heads_kv * a.batch;
    int const per_group = a.tile_group * n_blocks;
    int const g = int(blockIdx.x) / per_group;
    int const r = int(blockIdx.x) - g * per_group;
    int const first = g * a.tile_group;
    int const size = min(a.tile_group, pairs - first);  // the last group may be smaller
    int const pair = first + r % size;
    return {r / size, pair % a.heads_kv, pair / a.heads_kv};
  }
  CUTE_DEVICE BwdTile next_work(BwdTile const&) const { return {-1, 0, 0}; }

  // Host: one CTA per tile (the caller checks that the count fits a grid).
  static int64_t num_tiles(cd42_attn_bwd_args const& a, int block_n) {
    return int64_t((a.seqlen_k + block_n - 1) / block_n) * a.heads_kv * a.batch;
  }
  static dim3 grid_size(cd42_attn_bwd_args const& a, int block_n) { return dim3{unsigned(num_tiles(a, block_n))}; }
};

}  // namespace cd42::attn
