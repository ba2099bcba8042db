// The dense GEMM's scheduler (cute/scheduler.hpp's interface): static,
// persistent, grouped rasterization.
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

#include "cute/scheduler.hpp"

namespace cd42 {

// One output tile of a GEMM: its linear id in the schedule. The block
// coordinates come from the scheduler (block_coords) when a role needs them:
// deriving them only for valid tiles keeps the loops' code what it was with
// a bare tile counter (SASS compared).
struct GemmWorkTile {
  int tile;
  int num_tiles;
  CUTE_HOST_DEVICE bool is_valid() const { return tile < num_tiles; }
};

template <int GroupM>
struct GroupedPersistentScheduler {
  int tiles_m;
  int tiles_n;
  int num_tiles;

  // From the kernel parameters (any Params with tiles_m / tiles_n).
  template <class Params>
  CUTE_HOST_DEVICE explicit GroupedPersistentScheduler(Params const& p)
      : tiles_m(p.tiles_m), tiles_n(p.tiles_n), num_tiles(p.tiles_m * p.tiles_n) {}

  CUTE_DEVICE GemmWorkTile initial_work() const { return {int(blockIdx.x), num_tiles}; }
  CUTE_DEVICE GemmWorkTile next_work(GemmWorkTile const& cur) const { return {cur.tile + int(gridDim.x), num_tiles}; }

  // (m_block, n_block) of a valid work tile.
  CUTE_HOST_DEVICE void block_coords(GemmWorkTile const& w, int& m_blk, int& n_blk) const {
    int const tiles_per_group = GroupM * tiles_n;
    int const group = w.tile / tiles_per_group;
    int const first_m = group * GroupM;
    int const rows_in_group = min(tiles_m - first_m, GroupM);
    int const in_group = w.tile - group * tiles_per_group;
    m_blk = first_m + in_group % rows_in_group;
    n_blk = in_group / rows_in_group;
  }

  // Host: the persistent grid.
  static int grid_size(int tiles_m, int tiles_n, int num_sms) {
    return persistent_grid_size(tiles_m * tiles_n, num_sms);
  }
};

}  // namespace cd42
