// Producer role of the attention forward: one thread of warpgroup 0.
//
// It asks the scheduler (fwd_scheduler.hpp) for work and publishes each
// piece to the consumers through it. Per tile it loads the first K block,
// then Q (whose slot may still be held by the previous tile), then the K/V
// blocks from the last one down.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/attention/fwd_scheduler.hpp"
#include "kernels/attention/fwd_traits.hpp"

namespace cd42::attn {

template <class Tensor4>
CUTE_DEVICE auto seq_view(Tensor4 const& m4, int head, int batch, int offset) {
  using namespace cute;
  // (rows, dim) of one head; varlen sequences start `offset` rows in.
  return domain_offset(make_coord(offset, _0{}), m4(_, _, head, batch));
}

template <class T>
CUTE_DEVICE void producer_loop(typename T::Params const& p, typename T::SharedStorage& ss,
                               typename T::PipelineSched& pipe_sched, typename T::PipelineQ& pipe_q,
                               typename T::PipelineKV& pipe_k, typename T::PipelineKV& pipe_v) {
  using namespace cute;
  auto const& a = p.args;
  int const rows_q = T::kVarlen ? a.total_q : a.seqlen_q;
  int const rows_k = T::kVarlen ? a.total_k : a.seqlen_k;
  int const batches = T::kVarlen ? 1 : a.batch;
  Tensor mQ = p.tma_q.get_tma_tensor(make_shape(rows_q, Int<T::kHeadDim>{}, a.heads_q, batches));
  Tensor mK = p.tma_k.get_tma_tensor(make_shape(rows_k, Int<T::kHeadDim>{}, a.heads_kv, batches));
  Tensor mVt = p.tma_v.get_tma_tensor(make_shape(Int<T::kHeadDim>{}, rows_k, a.heads_kv, batches));
  Tensor sQ = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutK{});
  Tensor sVt = make_tensor(make_smem_ptr(ss.V.begin()), typename T::SmemLayoutVt{});

  auto s_state = cutlass::make_producer_start_state<typename T::PipelineSched>();
  auto q_state = cutlass::make_producer_start_state<typename T::PipelineQ>();
  auto k_state = cutlass::make_producer_start_state<typename T::PipelineKV>();
  auto v_state = cutlass::make_producer_start_state<typename T::PipelineKV>();
  AttnTileScheduler const& order = p.sched;
  FwdProducerScheduler<T> sched(p, ss, pipe_sched);
  int const end = sched.end();
  int item = sched.initial_work();
  CUTE_NO_UNROLL
  for (;;) {
    int m_block = 0, head = 0, batch = 0;
    WorkPiece w{0, 0, 0, 0};
    int next_piece = 0;  // -1 - j when tail item j has a second piece
    sched.publish(item, w, next_piece, end, s_state);
    if (w.tile >= order.num_tiles) break;
    order.coords(w.tile, m_block, head, batch);

    TileInfo<T> const bi = piece_info<T>(a, batch, m_block, w);
    int const b = T::kVarlen ? 0 : batch;
    int const head_kv = p.group_div.divide(head);
    Tensor gQ = local_tile(seq_view(mQ, head, b, bi.q_offset), Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{},
                           make_coord(m_block, _0{}));
    Tensor gK = local_tile(seq_view(mK, head_kv, b, bi.k_offset), Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{},
                           make_coord(_, _0{}));  // (N, D, n)
    Tensor mVt_h = domain_offset(make_coord(_0{}, bi.k_offset), mVt(_, _, head_kv, b));
    Tensor gVt = local_tile(mVt_h, Shape<Int<T::kHeadDim>, Int<T::kBlockN>>{}, make_coord(_0{}, _));  // (D, N, n)
    auto q_part = tma_partition(p.tma_q, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gQ));
    auto k_part = tma_partition(p.tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
    auto v_part = tma_partition(p.tma_v, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sVt), group_modes<0, 2>(gVt));
    auto tKgK = get<0>(k_part);  // (TMA, n)
    auto tKsK = get<1>(k_part);  // (TMA, stage)
    auto tVgV = get<0>(v_part);
    auto tVsV = get<1>(v_part);

    auto load_k = [&](int n) {
      pipe_k.producer_acquire(k_state);
      copy(p.tma_k.with(*pipe_k.producer_get_barrier(k_state)), tKgK(_, n), tKsK(_, k_state.index()));
      ++k_state;
    };
    auto load_v = [&](int n) {
      pipe_v.producer_acquire(v_state);
      copy(p.tma_v.with(*pipe_v.producer_get_barrier(v_state)), tVgV(_, n), tVsV(_, v_state.index()));
      ++v_state;
    };
    // The next item, claimed once this one's last piece is out (the atomic
    // is in flight while the loads below are issued).
    int const next = sched.next_work(next_piece);
    int n = bi.n_block_max - 1;
    if (n >= bi.n_block_min) load_k(n);
    pipe_q.producer_acquire(q_state);
    copy(p.tma_q.with(*pipe_q.producer_get_barrier(q_state)), get<0>(q_part), get<1>(q_part));
    ++q_state;
    if constexpr (T::kIntraWGOverlap) {
      // Consumers run QK(n-1) before PV(n): keep K one block ahead of V.
      // (Loops stay rolled: unrolled copies cost registers the 24-register
      // producer does not have, and TMA issue is not the bottleneck.)
      CUTE_NO_UNROLL
      for (--n; n >= bi.n_block_min; --n) {
        load_k(n);
        load_v(n + 1);
      }
      if (bi.n_block_max > bi.n_block_min) load_v(bi.n_block_min);
    } else {
      if (n >= bi.n_block_min) load_v(n);
      CUTE_NO_UNROLL
      for (--n; n >= bi.n_block_min; --n) {
        load_k(n);
        load_v(n);
      }
    }
    item = next;
  }
  pipe_q.producer_tail(q_state);
  pipe_k.producer_tail(k_state);
  pipe_v.producer_tail(v_state);
}

}  // namespace cd42::attn
