// Producer role of the attention backward: one thread of warpgroup 0. K and
// V of its key block once, then Q and dO of each query block that sees it
// (every query head of the KV head's group) through the Q pipeline, with
// the rows' LSE and dsum alongside.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_scheduler.hpp"

namespace cd42::attn {

template <class T>
CUTE_DEVICE void bwd_producer(typename T::Params const& p, typename T::SharedStorage& ss,
                              typename T::PipelineKV& pipe_kv, typename T::PipelineQ& pipe_q,
                              BwdSeq<T> const& seq) {
  using namespace cute;
  auto const& a = p.args;
  BwdTile const tile = BwdTileScheduler(a).initial_work();
  int const n_block = tile.n_block, head_kv = tile.head_kv;
  int const batch = T::kVarlen ? 0 : tile.batch;  // varlen: one packed "batch" of all tokens
  int const group = a.heads_q / a.heads_kv;
  int const rows_q = T::kVarlen ? a.total_q : a.seqlen_q;
  int const rows_k = T::kVarlen ? a.total_k : a.seqlen_k;
  int const batches = T::kVarlen ? 1 : a.batch;
  Tensor mQ = p.tma_q.get_tma_tensor(make_shape(rows_q, Int<T::kHeadDim>{}, a.heads_q, batches));
  Tensor mdO = p.tma_do.get_tma_tensor(make_shape(rows_q, Int<T::kHeadDim>{}, a.heads_q, batches));
  Tensor mK = p.tma_k.get_tma_tensor(make_shape(rows_k, Int<T::kHeadDim>{}, a.heads_kv, batches));
  Tensor mV = p.tma_v.get_tma_tensor(make_shape(rows_k, Int<T::kHeadDim>{}, a.heads_kv, batches));
  Tensor sQ = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQ{});
  Tensor sdO = make_tensor(make_smem_ptr(ss.dO.begin()), typename T::SmemLayoutQ{});
  Tensor sK = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutK{});
  Tensor sV = make_tensor(make_smem_ptr(ss.V.begin()), typename T::SmemLayoutK{});

  auto kv_state = cutlass::make_producer_start_state<typename T::PipelineKV>();
  auto q_state = cutlass::make_producer_start_state<typename T::PipelineQ>();
  {
    Tensor gK = local_tile(head_view(mK, head_kv, batch, seq.k_offset), Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{},
                           make_coord(n_block, _0{}));
    Tensor gV = local_tile(head_view(mV, head_kv, batch, seq.k_offset), Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{},
                           make_coord(n_block, _0{}));
    auto k_part = tma_partition(p.tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK), group_modes<0, 2>(gK));
    auto v_part = tma_partition(p.tma_v, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sV), group_modes<0, 2>(gV));
    pipe_kv.producer_acquire(kv_state);
    auto* bar = pipe_kv.producer_get_barrier(kv_state);
    copy(p.tma_k.with(*bar), get<0>(k_part), get<1>(k_part));
    copy(p.tma_v.with(*bar), get<0>(v_part), get<1>(v_part));
    ++kv_state;
  }
  BwdBlockRange<T> range(a, seq, n_block);
  CUTE_NO_UNROLL
  for (int g = 0; g < group; ++g) {
    int const head = head_kv * group + g;
    // Varlen: rows past this sequence's end are the next one's (or TMA's
    // zero fill); their P is 0 through the padded LSE rows (+inf).
    Tensor gQ = local_tile(head_view(mQ, head, batch, seq.q_offset), Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{},
                           make_coord(_, _0{}));  // (M, D, m)
    Tensor gdO = local_tile(head_view(mdO, head, batch, seq.q_offset), Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{},
                            make_coord(_, _0{}));
    auto q_part = tma_partition(p.tma_q, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gQ));
    auto do_part = tma_partition(p.tma_do, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sdO), group_modes<0, 2>(gdO));
    float const* lse_rows = a.lse_log2 + seq.stat_row(head);
    float const* dsum_rows = a.dsum + seq.stat_row(head);
    CUTE_NO_UNROLL
    for (int m = range.m_min; m < range.m_max; ++m) {
      pipe_q.producer_acquire(q_state);
      auto* bar = pipe_q.producer_get_barrier(q_state);
      copy(p.tma_q.with(*bar), get<0>(q_part)(_, m), get<1>(q_part)(_, q_state.index()));
      copy(p.tma_do.with(*bar), get<0>(do_part)(_, m), get<1>(do_part)(_, q_state.index()));
      // The rows' LSE and dsum (padded buffers: 256-byte aligned, never out of bounds).
      SM90_BULK_COPY_G2S::copy(lse_rows + m * T::kBlockM, bar, ss.lse_log2[q_state.index()], T::kRowStatBytes);
      SM90_BULK_COPY_G2S::copy(dsum_rows + m * T::kBlockM, bar, ss.dsum[q_state.index()], T::kRowStatBytes);
      ++q_state;
    }
  }
  pipe_kv.producer_tail(kv_state);
  pipe_q.producer_tail(q_state);
}

}  // namespace cd42::attn
