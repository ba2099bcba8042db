// Scheduler of the attention forward (the interface of cute/scheduler.hpp).
//
// The tile order is AttnTileScheduler's (tile_scheduler.hpp: longest-first
// sections under a window), the last partial wave may be split by key range
// (split_tail.hpp). Work items 0..grid-1 go to CTAs by blockIdx, later ones
// are claimed with an atomic counter (so CTAs that drew short causal tiles
// take more of them). The producer thread claims; each item's tile (or, for
// a split tail item, each of its pieces) is published to the consumers
// through a 2-slot mbarrier pipeline, and the consumers read it from there.
#pragma once

#include <cute/config.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/scheduler.hpp"
#include "kernels/attention/block_info.hpp"
#include "kernels/attention/fwd_traits.hpp"
#include "kernels/attention/split_tail.hpp"
#include "kernels/attention/tile_scheduler.hpp"

namespace cd42::attn {

template <class T>
using TileInfo = BlockInfo<T::kVarlen, T::kHasWindow, T::kBlockM, T::kBlockN>;

// The tile's geometry, its key blocks narrowed to the piece's when `w` is a
// piece of a split tail tile (split_tail.hpp).
template <class T>
CUTE_DEVICE TileInfo<T> piece_info(cd42_attn_fwd_args const& a, int batch, int m_block, WorkPiece const& w) {
  TileInfo<T> bi(a, batch, m_block);
  if (w.n_end) {
    bi.n_block_min = w.n_begin;
    bi.n_block_max = w.n_end;
  }
  return bi;
}

// The producer thread's side. Work items: whole tiles [0, split.full), then
// split tail items of one or two pieces (split_tail.hpp: an item is shorter
// than a tile, so it reaches into at most one more); `item` = -1 - j stands
// for the second piece of tail item j. The whole claim state is that one
// register (the thread has 24), so the work tile of this scheduler is the
// item id, and publish() resolves it into the piece the consumers run.
//
//   int const end = sched.end();
//   int item = sched.initial_work();
//   for (;;) {
//     sched.publish(item, w, next_piece, end, s_state);   // w.tile == num_tiles: done
//     ...
//     int const next = sched.next_work(next_piece);       // before the tile's loads
//     ...loads...
//     item = next;
//   }
//
// next_work() is called before the current tile's loads are issued: its
// atomic is in flight under them. The pipeline state and the piece stay the
// role's own variables: an aggregate work tile holding them (tried: item,
// piece and state in one struct, or the state as a scheduler member) gave
// the same PTX up to the order of the loop's register copies, and ptxas
// then assigned registers and ordered the producer's instructions
// differently; as separate variables the kernel's SASS is unchanged.
template <class T>
struct FwdProducerScheduler {
  typename T::Params const& p;
  typename T::SharedStorage& ss;
  typename T::PipelineSched& pipe;

  using PipelineState = typename T::PipelineSched::PipelineState;
  CUTE_DEVICE FwdProducerScheduler(typename T::Params const& p_, typename T::SharedStorage& ss_,
                                   typename T::PipelineSched& pipe_)
      : p(p_), ss(ss_), pipe(pipe_) {}

  // One past the last work item (without a split: the tile count).
  CUTE_DEVICE int end() const { return p.split.end(); }
  // Items 0..grid-1 go to CTAs by blockIdx.
  CUTE_DEVICE int initial_work() const { return blockIdx.x; }
  // The second piece of a split tail item, else a claimed item: the atomic
  // counter hands later items to CTAs that finished (short causal tiles
  // take more of them). gridDim.x is read afresh each time
  // (fresh_grid_dim_x): ptxas otherwise keeps it in one of the 24 registers
  // for the whole loop (and spilled it once the split tail added its
  // schedule state).
  CUTE_DEVICE int claim() const { return fresh_grid_dim_x() + atomicAdd(p.args.tile_counter, 1); }
  CUTE_DEVICE int next_work(int next_piece) const { return next_piece < 0 ? next_piece : claim(); }

  // Resolves `item` into the piece `w` (and next_piece), publishes it to the
  // consumers; the end marker (w.tile = num_tiles) too, so they stop. A
  // varlen tile past its sequence's end does not exist: it is skipped by
  // claiming again, so consumers only see real tiles or the end.
  CUTE_DEVICE void publish(int& item, WorkPiece& w, int& next_piece, int end, PipelineState& state) {
    auto const& sched = p.sched;
    if (T::kSplitTail && item < 0) {
      int const units_end = p.split.unit_begin(-item);  // item j's end: unit_begin(j + 1)
      p.split.piece_at(p.split.blocks_div.divide(units_end - 1) * p.split.blocks_div.divisor, units_end, w);
    } else {
      if constexpr (T::kVarlen) {
        CUTE_NO_UNROLL
        for (; item < end; item = claim()) {
          int m_block, head, batch;
          sched.coords(item, m_block, head, batch);
          if (TileInfo<T>(p.args, batch, m_block).tile_exists()) break;
        }
      }
      if (T::kSplitTail && item >= p.split.full && item < end) {
        int const j = item - p.split.full;
        int const units_end = p.split.unit_begin(j + 1);
        if (p.split.piece_at(p.split.unit_begin(j), units_end, w) < units_end) next_piece = -1 - j;
      } else {
        w.tile = item < end ? item : sched.num_tiles;  // num_tiles: the end marker
      }
    }
    pipe.producer_acquire(state);
    ss.work[state.index()] = w;
    pipe.producer_commit(state);
    ++state;
  }

  // Host: one CTA per SM, or per work item when there are fewer.
  static int grid_size(SplitTail const& split, int num_sms) { return persistent_grid_size(split.end(), num_sms); }
};

// One unit of forward work as the consumers see it: a whole tile, or a
// piece of a split tail tile.
struct FwdWork {
  WorkPiece piece;  // piece.tile == num_tiles: no more work
  int num_tiles;
  CUTE_HOST_DEVICE bool is_valid() const { return piece.tile < num_tiles; }
};

// The consumer warpgroups' side: each next_work() reads the piece the
// producer published next.
template <class T>
struct FwdConsumerScheduler {
  typename T::Params const& p;
  typename T::SharedStorage& ss;
  typename T::PipelineSched& pipe;

  CUTE_DEVICE FwdConsumerScheduler(typename T::Params const& p_, typename T::SharedStorage& ss_,
                                   typename T::PipelineSched& pipe_)
      : p(p_), ss(ss_), pipe(pipe_) {}

  // `state`: the role's own variable, as the producer's (publish()).
  CUTE_DEVICE FwdWork next_work(typename T::PipelineSched::PipelineState& state) {
    pipe.consumer_wait(state);
    WorkPiece const w = ss.work[state.index()];
    pipe.consumer_release(state);
    ++state;
    return FwdWork{w, p.sched.num_tiles};
  }
};

}  // namespace cd42::attn
