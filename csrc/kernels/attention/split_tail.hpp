// Split tail of the attention forward: the last, partial wave of equal
// tiles spread over every SM by key range.
//
// Without a window every tile costs the same, so T tiles on P SMs take
// ceil(T/P) tile times: at D=128 with 2048 tiles on 132 SMs that is 16 for
// 15.5 tiles' worth of work, and 3% of the kernel is SMs idling in the last
// wave. Here the first `full` tiles run whole and the last r = T - full
// tiles' key blocks (r * L "units") are cut into `items` equal runs, one per
// SM, each taking up to two tiles' pieces ("stream-K" for attention). A
// piece writes its unnormalised O, row max and row sum to a workspace slot;
// the piece that arrives last at its tile's counter combines every piece in
// piece order (so the result does not depend on arrival order) and runs the
// tile's normal epilogue.
#pragma once

#include <climits>
#include <cute/config.hpp>
#include <cutlass/fast_math.h>

namespace cd42::attn {

// What the producer hands the consumers: key blocks [n_begin, n_end) of a
// tile, or the whole tile when n_end == 0.
struct WorkPiece {
  int tile, n_begin, n_end, unused;
};

struct SplitTail {
  // Pieces shorter than this many key blocks cost more in pipeline restart,
  // partial writes and combine than they save.
  static constexpr int kMinPieceBlocks = 4;
  static constexpr int kOverheadBlocks = 2;

  int full;        // tiles [0, full) run whole; [full, full + r) form the tail
  int items;       // tail work items (0: no split); item ids run full .. full + items - 1
  int units;       // r * L: the tail's key blocks
  int max_pieces;  // most pieces any tail tile has: the workspace slots per tile
  cutlass::FastDivmod blocks_div;  // L, key blocks per tile
  cutlass::FastDivmod items_div;
  cutlass::FastDivmod units_div;

  CUTE_HOST_DEVICE int end() const { return full + items; }  // one past the last work item
  CUTE_HOST_DEVICE int tail_tiles() const { return items ? units / blocks_div.divisor : 0; }
  // First unit of tail item j: floor(j * units / items).
  CUTE_HOST_DEVICE int unit_begin(int j) const { return items_div.divide(j * units); }
  // The item holding unit u: the largest j with unit_begin(j) <= u.
  CUTE_HOST_DEVICE int item_of(int u) const { return units_div.divide((u + 1) * items - 1); }
  // Tail tile i's pieces are those of items first .. first + count - 1.
  CUTE_HOST_DEVICE void tile_pieces(int i, int& first, int& count) const {
    int const L = blocks_div.divisor;
    first = item_of(i * L);
    count = item_of(i * L + L - 1) - first + 1;
  }
  // The piece starting at unit u of an item that ends at u_end; returns the
  // unit after it.
  CUTE_HOST_DEVICE int piece_at(int u, int u_end, WorkPiece& w) const {
    int i, n;
    blocks_div(i, n, u);
    int const L = blocks_div.divisor;
    w.tile = full + i;
    w.n_begin = n;
    w.n_end = u_end - i * L < L ? u_end - i * L : L;
    return i * L + w.n_end;
  }

  // `allowed`: the config's tiles are all equal (no window, not varlen).
  CUTE_HOST static SplitTail plan(int num_tiles, int blocks, int num_sms, bool allowed) {
    SplitTail s{num_tiles, 0, 0, 0, cutlass::FastDivmod(1), cutlass::FastDivmod(1), cutlass::FastDivmod(1)};
    if (!allowed || num_tiles <= 0 || blocks <= 0 || num_sms <= 0) return s;
    int const r = num_tiles >= num_sms ? num_tiles % num_sms : num_tiles;
    long long const u = (long long)r * blocks;
    long long q = u / kMinPieceBlocks;
    if (q > num_sms) q = num_sms;
    // Worth it only when items are shorter than tiles by more than the overhead.
    if (r == 0 || q <= r || (u + q - 1) / q + kOverheadBlocks > blocks) return s;
    if (q * (u + 1) >= INT_MAX) return s;  // keeps item/unit arithmetic in 32 bits
    s.full = num_tiles - r;
    s.items = int(q);
    s.units = int(u);
    s.blocks_div = cutlass::FastDivmod(blocks);
    s.items_div = cutlass::FastDivmod(int(q));
    s.units_div = cutlass::FastDivmod(int(u));
    for (int i = 0; i < r; ++i) {
      int first, count;
      s.tile_pieces(i, first, count);
      if (count > s.max_pieces) s.max_pieces = count;
    }
    return s;
  }

  // Workspace floats per piece slot: the consumers' O fragments plus one
  // float4 (row max and row sum of both rows) per thread.
  CUTE_HOST_DEVICE static constexpr int slot_floats(int head_dim, int threads) { return (head_dim / 2 + 4) * threads; }
  CUTE_HOST long long workspace_floats(int head_dim, int threads) const {
    return (long long)tail_tiles() * max_pieces * slot_floats(head_dim, threads);
  }
};

}  // namespace cd42::attn
