// Static persistent tile scheduler with grouped rasterization.
//
// Every CTA of a persistent grid walks tiles blockIdx.x, +gridDim.x, ... .
// The producer warp and the consumer warpgroups iterate the same sequence
// independently, so no shared-memory handoff is needed between roles.
//
// Linear tile ids are mapped to (m, n) in groups of `GroupM` tile-rows
// (column-major inside a group): the ~132 tiles in flight at once then cover
// a GroupM x (132/GroupM) block of the output, so the A row-panels and B
// column-panels they read stay resident in L2.
#pragma once

#include <cute/config.hpp>

namespace cd42 {

template <int GroupM>
struct GroupedPersistentScheduler {
  int tiles_m;
  int tiles_n;
  int num_tiles;

  CUTE_HOST_DEVICE GroupedPersistentScheduler(int tiles_m_, int tiles_n_)
      : tiles_m(tiles_m_), tiles_n(tiles_n_), num_tiles(tiles_m_ * tiles_n_) {}

  CUTE_HOST_DEVICE int first_tile() const {
#if defined(__CUDA_ARCH__)
    return blockIdx.x;
#else
    return 0;
#endif
  }
  CUTE_HOST_DEVICE int stride() const {
#if defined(__CUDA_ARCH__)
    return gridDim.x;
#else
    return 1;
#endif
  }
  CUTE_HOST_DEVICE bool valid(int tile) const { return tile < num_tiles; }

  // (m_block, n_block) of a linear tile id.
  CUTE_HOST_DEVICE void coords(int tile, int& m_blk, int& n_blk) const {
    int const tiles_per_group = GroupM * tiles_n;
    int const group = tile / tiles_per_group;
    int const first_m = group * GroupM;
    int const rows_in_group = min(tiles_m - first_m, GroupM);
    int const in_group = tile - group * tiles_per_group;
    m_blk = first_m + in_group % rows_in_group;
    n_blk = in_group / rows_in_group;
  }

  // A persistent grid never needs more CTAs than tiles.
  static int grid_size(int num_tiles, int num_sms) {
    return num_tiles < num_sms ? num_tiles : num_sms;
  }
};

}  // namespace cd42
