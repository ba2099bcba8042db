// Persistent tile scheduler for grouped GEMMs whose group sizes live on the
// device (no host synchronisation: the host never sees the offsets).
//
// Work tiles are numbered group by group; each CTA takes ids blockIdx.x,
// +gridDim.x, ... . For the ragged-M/N forms a group's tile count depends on
// its size, so mapping an id to its group needs the prefix sum of tile counts:
// the calling warp computes it 32 groups at a time (one offset load per lane,
// a shuffle scan, a ballot for the group holding the id) and keeps a cursor,
// so a CTA walks the offsets once over its whole life (ids only increase).
// Every lane of the calling warp must call initial_work/next_work together.
//
// Interface (shared with the dense GEMM and attention schedulers):
// initial_work(), next_work(current), WorkTile::is_valid(), grid_size().
#pragma once

#include <cute/config.hpp>

#include "kernels/grouped_gemm/ggemm_traits.hpp"

namespace cd42::ggemm {

struct WorkTile {
  int group = -1;   // -1: no more work
  int m_blk = 0;    // tile indices inside the group
  int n_blk = 0;
  int start = 0;    // the group's window [start, end) of the ragged dimension
  int end = 0;
  CUTE_HOST_DEVICE bool is_valid() const { return group >= 0; }
};

template <class T>
struct GroupedScheduler {
  static constexpr Ragged kMode = T::kMode;
  GroupedProblem const& prob;
  int linear = 0;        // current work id
  int cursor_group = 0;  // first group whose tiles may still hold `linear`
  int cursor_start = 0;  // work id of that group's first tile

  CUTE_DEVICE explicit GroupedScheduler(GroupedProblem const& p) : prob(p) {}

  CUTE_DEVICE WorkTile initial_work() {
    linear = blockIdx.x;
    return decode(linear);
  }
  CUTE_DEVICE WorkTile next_work(WorkTile const&) {
    linear += gridDim.x;
    return decode(linear);
  }

  // Extent of the ragged dimension: rows of C (kM), columns of C (kN), K (kK).
  CUTE_DEVICE int ragged_extent() const {
    return kMode == Ragged::kM ? prob.M : kMode == Ragged::kN ? prob.N : prob.K;
  }

  // The group's window, clamped so that malformed offsets (decreasing, past
  // the tensor) can never address memory outside it.
  CUTE_DEVICE void bounds(int g, int& s, int& e) const {
    int const total = ragged_extent();
    s = g == 0 ? 0 : __ldg(prob.offs + g - 1);
    e = g < prob.groups ? __ldg(prob.offs + g) : total;  // g == groups: the zero tail
    s = min(max(s, 0), total);
    e = min(max(e, s), total);
  }

  CUTE_DEVICE int tiles_in_group(int s, int e) const {
    if constexpr (kMode == Ragged::kM) return (e - s + T::kTileM - 1) / T::kTileM * prob.tiles_n;
    else return prob.tiles_m * ((e - s + T::kTileN - 1) / T::kTileN);
  }

  // A group's tiles in bands of kBand blocks of its ragged dimension, the
  // ragged index fastest inside a band (the dense GEMM's grouped raster): the
  // ~132 tiles in flight then share each weight tile among up to kBand row
  // blocks. Row-block-major order re-read a large group's whole weight
  // matrix from DRAM once per row block (Mixtral's gate/up: 235 MB per expert
  // and row block; measured 0.50x a dense matmul of equal FLOPs on an H100).
  static constexpr int kBand = 8;
  CUTE_DEVICE static void band_coords(int local, int ragged_tiles, int other_tiles, int& ragged_blk,
                                      int& other_blk) {
    int const per_band = kBand * other_tiles;
    int const band = local / per_band;
    int const first = band * kBand;
    int const in_band_blocks = min(ragged_tiles - first, kBand);
    int const in_band = local - band * per_band;
    ragged_blk = first + in_band % in_band_blocks;
    other_blk = in_band / in_band_blocks;
  }

  CUTE_DEVICE WorkTile decode(int id) {
    WorkTile w;
    if constexpr (kMode == Ragged::kNone || kMode == Ragged::kK) {
      // Every group has the same tile grid (kK: the reduction is what varies).
      int const per_group = prob.tiles_m * prob.tiles_n;
      int const g = id / per_group;
      if (g >= prob.groups) return w;
      int const local = id - g * per_group;
      w.group = g;
      w.m_blk = local % prob.tiles_m;
      w.n_blk = local / prob.tiles_m;
      if constexpr (kMode == Ragged::kK) bounds(g, w.start, w.end);
      else w.end = prob.K;
      return w;
    } else {
      int const lane = threadIdx.x % 32;
      int const groups = prob.groups + (prob.zero_tail ? 1 : 0);
      while (cursor_group < groups) {
        int const g = cursor_group + lane;
        int s = 0, e = 0, n = 0;
        if (g < groups) {
          bounds(g, s, e);
          n = tiles_in_group(s, e);
        }
        int incl = n;
        CUTE_UNROLL
        for (int d = 1; d < 32; d <<= 1) {
          int const v = __shfl_up_sync(0xffffffffu, incl, d);
          if (lane >= d) incl += v;
        }
        unsigned const hit = __ballot_sync(0xffffffffu, g < groups && id < cursor_start + incl);
        if (hit) {
          int const L = __ffs(hit) - 1;
          cursor_group += L;
          cursor_start += __shfl_sync(0xffffffffu, incl - n, L);
          w.group = cursor_group;
          w.start = __shfl_sync(0xffffffffu, s, L);
          w.end = __shfl_sync(0xffffffffu, e, L);
          int const local = id - cursor_start;
          if constexpr (kMode == Ragged::kM) {
            int const ragged_tiles = (w.end - w.start + T::kTileM - 1) / T::kTileM;
            band_coords(local, ragged_tiles, prob.tiles_n, w.m_blk, w.n_blk);
          } else {
            int const ragged_tiles = (w.end - w.start + T::kTileN - 1) / T::kTileN;
            band_coords(local, ragged_tiles, prob.tiles_m, w.n_blk, w.m_blk);
          }
          return w;
        }
        cursor_start += __shfl_sync(0xffffffffu, incl, 31);
        cursor_group += 32;
      }
      return w;
    }
  }

  // Host: an upper bound on the work ids (each group adds at most one
  // partial tile along its ragged dimension), which caps the persistent grid.
  static int64_t max_tiles(GroupedProblem const& p) {
    int64_t const g = p.groups + (p.zero_tail ? 1 : 0);
    if (kMode == Ragged::kM) return ((int64_t(p.M) + T::kTileM - 1) / T::kTileM + g) * p.tiles_n;
    if (kMode == Ragged::kN) return int64_t(p.tiles_m) * ((int64_t(p.N) + T::kTileN - 1) / T::kTileN + g);
    return int64_t(p.groups) * p.tiles_m * p.tiles_n;
  }
  static int grid_size(GroupedProblem const& p, int num_sms) {
    int64_t const t = max_tiles(p);
    return int(t < num_sms ? t : num_sms);
  }
};

}  // namespace cd42::ggemm
