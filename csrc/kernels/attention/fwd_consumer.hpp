// Consumer role of the attention forward: warpgroups 1 and 2, 64 query rows
// each, 256 threads indexed 0..255 across both.
//
// Intra-warpgroup overlap (FlashAttention-3): in steady state an iteration
// issues S = Q K(n)^T and O += P(n+1) V(n+1) back to back, waits only for
// the first, and computes the softmax of S(n) while the PV wgmma still runs;
// O is rescaled after that wgmma retires. Blocks are walked from the last,
// in up to three runs: masked at the top (causal diagonal, ragged key end),
// clean, masked at the bottom (left window). The clean run is compiled
// without mask code; where the mask code would push the overlapped loop
// past the register budget (large D), the masked runs go serially.
//
// Ping-pong between the two warpgroups (FlashAttention-3): each batch of
// wgmma issues happens on the warpgroup's turn, and issuing hands the turn
// to the other one. Both warpgroups wait on the same K/V stages, so without
// this they drift into lockstep and run their softmax at the same time
// while the tensor cores idle; with it, one's softmax runs under the other's
// GEMMs. Both warpgroups issue the same number of batches per tile, so the
// turns stay paired across tiles.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/wgmma.hpp"
#include "kernels/attention/fwd_epilogue.hpp"
#include "kernels/attention/fwd_producer.hpp"
#include "kernels/attention/fwd_split_combine.hpp"
#include "kernels/attention/softmax.hpp"

namespace cd42::attn {

constexpr int kBarrierConsumers = 0;  // named barrier over both consumer warpgroups
constexpr int kBarrierTurn = 1;       // + warpgroup: "your turn to issue wgmma" (ping-pong)

// Per row, the visible keys of block n as a column range [lo, hi) relative
// to this thread's first column, so each element costs one compare against
// its compile-time column offset (two with a left window). Causal is right
// = 0 with no left bound (the host maps every other window to kLocal).
template <class T, class TensorS>
CUTE_DEVICE void apply_mask(TensorS& S, TileInfo<T> const& bi, cd42_attn_fwd_args const& a, int n, int row0,
                            int col0) {
  int const col_base = n * T::kBlockN + col0;
  int const row_base = bi.m_start + row0 + (bi.seqlen_k - bi.seqlen_q);  // query row shifted onto the key axis
  CUTE_UNROLL
  for (int h = 0; h < 2; ++h) {
    int const r = row_base + 8 * h;
    int hi = bi.seqlen_k;
    if constexpr (T::kMask == MaskKind::kCausal) hi = min(hi, r + 1);
    if constexpr (T::kMask == MaskKind::kLocal) hi = min(hi, r + a.window_right + 1);
    hi -= col_base;
    int const lo = T::kMask == MaskKind::kLocal ? r - a.window_left - col_base : 0;
    CUTE_UNROLL
    for (int b = 0; b < T::kBlockN / 8; ++b) {
      CUTE_UNROLL
      for (int c = 0; c < 2; ++c) {
        int const j = 8 * b + c;
        bool ok = j < hi;
        if constexpr (T::kMask == MaskKind::kLocal) ok &= j >= lo;
        if (!ok) S(frag_index(c, h, b)) = -INFINITY;
      }
    }
  }
}

template <class T>
CUTE_DEVICE void consumer_loop(typename T::Params const& p, typename T::SharedStorage& ss,
                               typename T::PipelineSched& pipe_sched, typename T::PipelineQ& pipe_q,
                               typename T::PipelineKV& pipe_k, typename T::PipelineKV& pipe_v) {
  using namespace cute;
  using Element = typename T::Element;
  using Softmax = OnlineSoftmax<T::kBlockN, T::kHeadDim, T::kSkipUnmovedRescale>;
  auto const& a = p.args;
  int const tidx = threadIdx.x - kWarpGroupThreads;  // 0..255 across both consumers
  int const lane = tidx % 32;

  Tensor sQ = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQ{});
  // O's own buffer (a 64-element stub where it does not fit: then O is
  // stored from registers and sO is never touched).
  Tensor sO = make_tensor(make_smem_ptr(ss.O.begin()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutK{});
  Tensor sVt = make_tensor(make_smem_ptr(ss.V.begin()), typename T::SmemLayoutVt{});
  typename T::TiledMmaQK mma_qk;
  typename T::TiledMmaPV mma_pv;
  auto thr_qk = mma_qk.get_thread_slice(tidx);
  auto thr_pv = mma_pv.get_thread_slice(tidx);
  Tensor tSrQ = thr_qk.make_fragment_A(thr_qk.partition_A(sQ));    // (MMA,1,D/16) descriptors
  Tensor tSrK = thr_qk.make_fragment_B(thr_qk.partition_B(sK));    // (MMA,1,D/16,stages)
  Tensor tOrV = thr_pv.make_fragment_B(thr_pv.partition_B(sVt));   // (MMA,1,N/16,stages)
  Tensor tSrS = partition_fragment_C(mma_qk, Shape<Int<T::kBlockM>, Int<T::kBlockN>>{});
  Tensor tOrO = partition_fragment_C(mma_pv, Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{});
  Tensor tOrP = make_tensor<Element>(partition_shape_A(mma_pv, Shape<Int<T::kBlockM>, Int<T::kBlockN>>{}));
  static_assert(decltype(size(tSrS))::value == decltype(size(tOrP))::value, "P reuses S's register order");
  Tensor tOsO = thr_pv.partition_C(sO);

  int const wg = tidx / kWarpGroupThreads;
  // This thread's rows inside a 128-row tile (see softmax.hpp's convention).
  int const row0 = (tidx / kWarpGroupThreads) * 64 + (tidx % kWarpGroupThreads / 32) * 16 + lane / 4;
  int const col0 = 2 * (lane % 4);
  auto take_turn = [&] { cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBarrierTurn + wg); };
  auto pass_turn = [&] { cutlass::arch::NamedBarrier::arrive(T::kConsumerThreads, kBarrierTurn + 1 - wg); };
  auto issue_qk = [&](int stage) { wgmma_overwrite(mma_qk, tSrQ, tSrK(_, _, _, stage), tSrS); };
  auto issue_pv = [&](int stage) {
    warpgroup_fence_operand(tOrO);
    warpgroup_arrive();
    CUTE_UNROLL
    for (int kb = 0; kb < size<2>(tOrP); ++kb) cute::gemm(mma_pv, tOrP(_, _, kb), tOrV(_, _, kb, stage), tOrO);
    warpgroup_commit_batch();
  };
  // `masked` is a std::bool_constant on the fast paths (the mask code is
  // compiled out of the unmasked loop, which keeps its register pressure
  // down) or a plain bool for a block whose kind is only known at run time.
  auto scores_to_probs = [&](TileInfo<T> const& bi, Softmax& softmax, int n, auto masked, float correction[2]) {
    if constexpr (T::kSoftcap) {
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) tSrS(i) = a.softcap * fast_tanh(tSrS(i) * p.softcap_in);
    }
    if (masked) apply_mask<T>(tSrS, bi, a, n, row0, col0);
    softmax.update(tSrS, p.score_scale_log2, correction);
  };
  auto probs_to_regs = [&] {
    CUTE_UNROLL
    for (int i = 0; i < size(tSrS); ++i) tOrP(i) = static_cast<Element>(tSrS(i));
  };

  typename T::PipelineSched::PipelineState s_state;
  typename T::PipelineQ::PipelineState q_state;
  typename T::PipelineKV::PipelineState k_state, v_state;

  auto wait_qk = [&](int wait_depth_pv) {  // S ready (the PV batch behind it may still run)
    if (wait_depth_pv) warpgroup_wait<1>(); else warpgroup_wait<0>();
    warpgroup_fence_operand(tSrS);
    pipe_k.consumer_release(k_state);
    ++k_state;
  };
  // Callers wait for the PV wgmma first; this hands its V stage back.
  auto release_v = [&] {
    warpgroup_fence_operand(tOrO);
    pipe_v.consumer_release(v_state);
    ++v_state;
  };
  // Overlapped pipeline over blocks n0 > n1 > ...: `first` computes P(n0)
  // with no PV in flight; each `step` issues QK(n) and PV(n+1) together and
  // runs the softmax of S(n) under the PV; `last` issues the final PV.
  // O's rescale for a new running max (`correction`, from the newest
  // softmax) waits until just before the next PV issue, where it runs under
  // that step's QK wgmma instead of between a PV's retirement and the next
  // issue (FlashAttention-3's RescaleOBeforeGemm).
  float correction[2];
  auto overlap_first = [&](TileInfo<T> const& bi, Softmax& softmax, int n, auto masked) {
    pipe_k.consumer_wait(k_state);
    take_turn();
    issue_qk(k_state.index());
    pass_turn();
    wait_qk(0);
    scores_to_probs(bi, softmax, n, masked, correction);
    probs_to_regs();
  };
  auto overlap_step = [&](TileInfo<T> const& bi, Softmax& softmax, int n, auto masked) {
    pipe_k.consumer_wait(k_state);
    pipe_v.consumer_wait(v_state);
    take_turn();
    issue_qk(k_state.index());
    Softmax::rescale(tOrO, correction);  // for the max of block n+1
    issue_pv(v_state.index());  // P of block n+1
    pass_turn();
    wait_qk(1);                 // S(n) ready; PV(n+1) still running
    scores_to_probs(bi, softmax, n, masked, correction);
    // Not before the softmax is done: ptxas hoists a plain wgmma wait above
    // independent arithmetic (see warpgroup_wait_after).
    if constexpr (T::kSoftmaxUnderPV) {
      warpgroup_wait_after<0>(softmax.row_sum[0] + softmax.row_sum[1]);
    } else {
      warpgroup_wait<0>();
    }
    release_v();
    probs_to_regs();
  };
  auto overlap_last = [&] {
    pipe_v.consumer_wait(v_state);
    take_turn();
    Softmax::rescale(tOrO, correction);
    issue_pv(v_state.index());
    pass_turn();
    warpgroup_wait<0>();
    release_v();
  };
  // Serial block: S, softmax, rescale O, then P V with nothing overlapping
  // inside the warpgroup (the other warpgroup's GEMMs still fill the gaps).
  auto serial_block = [&](TileInfo<T> const& bi, Softmax& softmax, int n, auto masked) {
    overlap_first(bi, softmax, n, masked);
    overlap_last();
  };

  FwdConsumerScheduler<T> sched(p, ss, pipe_sched);

  // Warpgroup 0 issues first: warpgroup 1 hands it the opening turn.
  if (wg == 1) cutlass::arch::NamedBarrier::arrive(T::kConsumerThreads, kBarrierTurn + 0);

  for (;;) {
    FwdWork const work = sched.next_work(s_state);  // what the producer published next
    if (!work.is_valid()) break;
    WorkPiece const w = work.piece;
    int m_block, head, batch;
    p.sched.coords(w.tile, m_block, head, batch);
    TileInfo<T> const bi = piece_info<T>(a, batch, m_block, w);

    Softmax softmax;
    clear(tOrO);
    pipe_q.consumer_wait(q_state);
    // Blocks are walked from the last: [n_hi, max) need the mask at the top
    // (causal diagonal, ragged end of the keys), [lo, n_hi) are clean and
    // [min, n_lo) are masked again by a left window.
    int n = bi.n_block_max - 1;
    int const n_hi = bi.n_unmasked_max(a);
    int const n_lo = bi.n_unmasked_min(a, n_hi);
    bool q_released = false;
    // O never goes through Q's buffer, so Q's slot frees as soon as the last
    // QK retired: the next tile's Q loads under this tile's last PV and
    // epilogue.
    auto release_q_early = [&] {
      pipe_q.consumer_release(q_state);
      ++q_state;
      q_released = true;
    };
    if constexpr (T::kOverlapMaskedBlocks) {  // one overlapped pipeline over all blocks
      if (n >= bi.n_block_min) {
        // One loop with a run-time mask test: three specialised copies cost
        // registers that the configs on this path do not have to spare.
        overlap_first(bi, softmax, n, n >= n_hi || n < n_lo);
        for (--n; n >= bi.n_block_min; --n) overlap_step(bi, softmax, n, n >= n_hi || n < n_lo);
        release_q_early();
        overlap_last();
      }
    } else if constexpr (T::kIntraWGOverlap) {  // masked blocks serial, clean ones overlapped
      for (; n >= n_hi; --n) serial_block(bi, softmax, n, cute::true_type{});
      if (n >= n_lo) {
        overlap_first(bi, softmax, n, false);
        for (--n; n >= n_lo; --n) overlap_step(bi, softmax, n, cute::false_type{});
        if (n < bi.n_block_min) release_q_early();
        overlap_last();
      }
      for (; n >= bi.n_block_min; --n) serial_block(bi, softmax, n, cute::true_type{});
    } else {  // fully serial (the largest tiles): one loop, for the same register reason as above
      for (; n >= bi.n_block_min; --n) serial_block(bi, softmax, n, n >= n_hi || n < n_lo);
    }
    // Otherwise (masked blocks ran after the overlapped ones, or the tile
    // ran serially) Q's slot is released after its last reader here.
    if (!q_released) {
      pipe_q.consumer_release(q_state);
      ++q_state;
    }

    // A split piece hands its partial O over; the last one to arrive
    // combines them and goes on as if it had run the whole tile.
    if constexpr (T::kSplitTail) {
      if (w.n_end && !combine_split_pieces<T>(p, ss, w, tidx, kBarrierConsumers, tOrO, softmax)) continue;
    }

    float lse[2];
    softmax.finalize(tOrO, p.score_scale, lse);
    if (lane % 4 == 0) {  // the quad's first thread owns column 0 of both rows
      CUTE_UNROLL
      for (int h = 0; h < 2; ++h) {
        int const row = bi.m_start + row0 + 8 * h;
        if (row < bi.seqlen_q) {
          int64_t const idx = T::kVarlen ? int64_t(head) * a.total_q + bi.q_offset + row
                                         : (int64_t(batch) * a.heads_q + head) * a.seqlen_q + row;
          a.lse[idx] = lse[h];
        }
      }
    }

    // O: through smem + one TMA store where O has its own buffer and the
    // tile is whole (TMA clips rows past the tensor, but a varlen tile that
    // ends inside its sequence must not touch the next one's rows); else
    // straight from registers (fwd_epilogue.hpp).
    bool const via_tma = T::kSeparateO && (!T::kVarlen || bi.m_start + T::kBlockM <= bi.seqlen_q);
    if (via_tma) {
      if (tidx == 0) tma_store_wait<0>();  // the previous tile's store must have read sO
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBarrierConsumers);
      store_o_smem<T>(tOrO, tOsO);
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBarrierConsumers);
      if (tidx == 0) {
        int const rows_q = T::kVarlen ? a.total_q : a.seqlen_q;
        Tensor mO = p.tma_o.get_tma_tensor(
            make_shape(rows_q, Int<T::kHeadDim>{}, a.heads_q, T::kVarlen ? 1 : a.batch));
        Tensor gO = local_tile(seq_view(mO, head, T::kVarlen ? 0 : batch, bi.q_offset),
                               Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{}, make_coord(m_block, _0{}));
        auto o_part = tma_partition(p.tma_o, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sO), group_modes<0, 2>(gO));
        copy(p.tma_o, get<1>(o_part), get<0>(o_part));
        tma_store_arrive();
      }
    } else {
      Element* o_rows = static_cast<Element*>(a.o) + (T::kVarlen ? int64_t(bi.q_offset) * a.o_row_stride
                                                                   : int64_t(batch) * a.o_batch_stride) +
                        int64_t(head) * a.o_head_stride;
      store_o_global<T>(tOrO, o_rows, a.o_row_stride, bi.m_start, row0, col0, bi.seqlen_q);
    }
  }
  if (tidx == 0) tma_store_wait<0>();  // smem must outlive the last bulk store
}

}  // namespace cd42::attn
