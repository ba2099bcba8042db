// Warp-specialized attention forward (sm_90a).
//
// Warpgroup 0: producer. One thread streams, per tile, Q once and the K/V
// blocks (last block first) through separate TMA pipelines, so S = QK^T can
// start as soon as K arrives. Warpgroups 1-2: consumers, 64 query rows each,
// running the wgmma + online-softmax loop and the epilogue. O reuses Q's
// shared memory, so the Q pipeline slot is released only after O's TMA store
// has read it.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/attention/block_info.hpp"
#include "kernels/attention/fwd_traits.hpp"
#include "kernels/attention/softmax.hpp"
#include "kernels/attention/tile_scheduler.hpp"

namespace cd42::attn {

constexpr int kProducerRegs = 40;
constexpr int kConsumerRegs = 232;
static_assert(128 * (kProducerRegs + 2 * kConsumerRegs) <= 65536, "register split");
constexpr int kBarrierConsumers = 0;  // named barrier over both consumer warpgroups

template <class T>
CUTE_DEVICE AttnTileScheduler make_scheduler(typename T::Params const& p) {
  return AttnTileScheduler(p.num_m_blocks, p.args.heads_q, p.args.batch, T::kHasWindow);
}

template <class T, class Tensor4>
CUTE_DEVICE auto seq_view(Tensor4 const& m4, int head, int batch, int offset) {
  using namespace cute;
  // (rows, dim) of one head; varlen sequences start `offset` rows in.
  return domain_offset(make_coord(offset, _0{}), m4(_, _, head, batch));
}

template <class T>
CUTE_DEVICE void producer_loop(typename T::Params const& p, typename T::SharedStorage& ss,
                               typename T::PipelineQ& pipe_q, typename T::PipelineKV& pipe_k,
                               typename T::PipelineKV& pipe_v) {
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

  auto q_state = cutlass::make_producer_start_state<typename T::PipelineQ>();
  auto k_state = cutlass::make_producer_start_state<typename T::PipelineKV>();
  auto v_state = cutlass::make_producer_start_state<typename T::PipelineKV>();
  int const group = a.heads_q / a.heads_kv;
  AttnTileScheduler sched = make_scheduler<T>(p);
  for (int tile = blockIdx.x; tile < sched.num_tiles; tile += gridDim.x) {
    int m_block, head, batch;
    sched.coords(tile, m_block, head, batch);
    BlockInfo<T::kVarlen, T::kHasWindow, T::kBlockM, T::kBlockN> bi(a, batch, m_block);
    if (!bi.tile_exists()) continue;
    int const b = T::kVarlen ? 0 : batch;
    int const head_kv = head / group;
    Tensor gQ = local_tile(seq_view<T>(mQ, head, b, bi.q_offset), Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{},
                           make_coord(m_block, _0{}));
    Tensor gK = local_tile(seq_view<T>(mK, head_kv, b, bi.k_offset), Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{},
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
    int n = bi.n_block_max - 1;
    // First K before Q: its slot is usually free while Q waits for the
    // previous tile's epilogue to release the shared Q/O buffer.
    if (n >= bi.n_block_min) load_k(n);
    pipe_q.producer_acquire(q_state);
    copy(p.tma_q.with(*pipe_q.producer_get_barrier(q_state)), get<0>(q_part), get<1>(q_part));
    ++q_state;
    if (n >= bi.n_block_min) load_v(n);
    for (--n; n >= bi.n_block_min; --n) {
      load_k(n);
      load_v(n);
    }
  }
  pipe_q.producer_tail(q_state);
  pipe_k.producer_tail(k_state);
  pipe_v.producer_tail(v_state);
}

template <class T>
CUTE_DEVICE void consumer_loop(typename T::Params const& p, typename T::SharedStorage& ss,
                               typename T::PipelineQ& pipe_q, typename T::PipelineKV& pipe_k,
                               typename T::PipelineKV& pipe_v) {
  using namespace cute;
  using Element = typename T::Element;
  auto const& a = p.args;
  int const tidx = threadIdx.x - kWarpGroupThreads;  // 0..255 across both consumers
  int const wg = tidx / kWarpGroupThreads;
  int const t_in_wg = tidx % kWarpGroupThreads;
  int const lane = tidx % 32;

  Tensor sQ = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQ{});
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
  Tensor tOsO = thr_pv.partition_C(sQ);  // O goes out through Q's buffer

  typename T::PipelineQ::PipelineState q_state;
  typename T::PipelineKV::PipelineState k_state, v_state;
  AttnTileScheduler sched = make_scheduler<T>(p);
  // This thread's rows inside a 128-row tile (see softmax.hpp's convention).
  int const row0 = wg * 64 + (t_in_wg / 32) * 16 + lane / 4;
  int const col0 = 2 * (lane % 4);

  for (int tile = blockIdx.x; tile < sched.num_tiles; tile += gridDim.x) {
    int m_block, head, batch;
    sched.coords(tile, m_block, head, batch);
    BlockInfo<T::kVarlen, T::kHasWindow, T::kBlockM, T::kBlockN> bi(a, batch, m_block);
    if (!bi.tile_exists()) continue;

    OnlineSoftmax<T::kBlockN, T::kHeadDim> softmax;
    clear(tOrO);
    pipe_q.consumer_wait(q_state);
    int const off = bi.seqlen_k - bi.seqlen_q;
    for (int n = bi.n_block_max - 1; n >= bi.n_block_min; --n) {
      pipe_k.consumer_wait(k_state);
      mma_qk.accumulate_ = GMMA::ScaleOut::Zero;
      warpgroup_fence_operand(tSrS);
      warpgroup_arrive();
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tSrQ); ++kb) {
        cute::gemm(mma_qk, tSrQ(_, _, kb), tSrK(_, _, kb, k_state.index()), tSrS);
        mma_qk.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tSrS);
      pipe_k.consumer_release(k_state);
      ++k_state;

      if constexpr (T::kSoftcap) {
        CUTE_UNROLL
        for (int i = 0; i < size(tSrS); ++i) tSrS(i) = a.softcap * fast_tanh(tSrS(i) * p.softcap_in);
      }
      if (bi.block_needs_mask(a, n)) {
        int const row_base = bi.m_start + row0 + off;
        int const col_base = n * T::kBlockN + col0;
        CUTE_UNROLL
        for (int h = 0; h < 2; ++h) {
          int const r = row_base + 8 * h;  // query row shifted onto the key axis
          CUTE_UNROLL
          for (int b = 0; b < T::kBlockN / 8; ++b) {
            CUTE_UNROLL
            for (int c = 0; c < 2; ++c) {
              int const col = col_base + 8 * b + c;
              bool ok = col < bi.seqlen_k;
              if constexpr (T::kHasWindow) {
                ok &= col <= r + a.window_right;
                ok &= col >= r - a.window_left;
              }
              if (!ok) tSrS(frag_index(c, h, b)) = -INFINITY;
            }
          }
        }
      }
      softmax.step(tSrS, tOrO, p.score_scale_log2);
      CUTE_UNROLL
      for (int i = 0; i < size(tSrS); ++i) tOrP(i) = static_cast<Element>(tSrS(i));

      pipe_v.consumer_wait(v_state);
      warpgroup_fence_operand(tOrO);
      warpgroup_arrive();
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tOrP); ++kb) {
        cute::gemm(mma_pv, tOrP(_, _, kb), tOrV(_, _, kb, v_state.index()), tOrO);
      }
      warpgroup_commit_batch();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      pipe_v.consumer_release(v_state);
      ++v_state;
    }

    float lse[2];
    softmax.finalize(tOrO, p.score_scale, lse);

    // LSE: the quad's first thread owns column 0 of both its rows.
    if (lane % 4 == 0) {
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

    // O: whole tiles (and every non-varlen tile: TMA clips rows past the end
    // of the tensor) go through smem + one TMA store; a varlen tile that ends
    // inside its sequence is written directly, row-predicated, so it never
    // touches the next sequence's rows.
    bool const via_tma = !T::kVarlen || bi.m_start + T::kBlockM <= bi.seqlen_q;
    if (via_tma) {
      CUTE_UNROLL
      for (int i = 0; i < size(tOrO); ++i) tOsO(i) = static_cast<Element>(tOrO(i));
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBarrierConsumers);
      if (tidx == 0) {
        int const rows_q = T::kVarlen ? a.total_q : a.seqlen_q;
        Tensor mO = p.tma_o.get_tma_tensor(
            make_shape(rows_q, Int<T::kHeadDim>{}, a.heads_q, T::kVarlen ? 1 : a.batch));
        Tensor gO = local_tile(seq_view<T>(mO, head, T::kVarlen ? 0 : batch, bi.q_offset),
                               Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{}, make_coord(m_block, _0{}));
        auto [tOgO_tma, tOsO_tma] =
            tma_partition(p.tma_o, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQ), group_modes<0, 2>(gO));
        copy(p.tma_o, tOsO_tma, tOgO_tma);
        tma_store_arrive();
        tma_store_wait<0>();  // Q's buffer is free again once the store has read it
      }
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBarrierConsumers);
    } else {
      Element* o = static_cast<Element*>(a.o);
      CUTE_UNROLL
      for (int h = 0; h < 2; ++h) {
        int const row = bi.m_start + row0 + 8 * h;
        if (row < bi.seqlen_q) {
          Element* orow = o + int64_t(bi.q_offset + row) * a.o_row_stride + int64_t(head) * a.o_head_stride;
          CUTE_UNROLL
          for (int b = 0; b < T::kHeadDim / 8; ++b) {
            Element pair[2] = {static_cast<Element>(tOrO(frag_index(0, h, b))),
                               static_cast<Element>(tOrO(frag_index(1, h, b)))};
            *reinterpret_cast<uint32_t*>(orow + col0 + 8 * b) = *reinterpret_cast<uint32_t*>(pair);
          }
        }
      }
    }
    pipe_q.consumer_release(q_state);
    ++q_state;
  }
}

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) attn_fwd_kernel(CUTE_GRID_CONSTANT typename T::Params const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);
  int const warp_group = threadIdx.x / kWarpGroupThreads;
  int const warp_idx = cutlass::canonical_warp_idx_sync();
  int const lane_leader = cute::elect_one_sync();
  if (warp_idx == 0 && lane_leader) {
    cute::prefetch_tma_descriptor(p.tma_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_k.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_v.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_o.get_tma_descriptor());
  }
  auto pipe_params = [&](uint32_t bytes) {
    typename T::PipelineKV::Params pp;
    pp.transaction_bytes = bytes;
    pp.role = warp_group == 0 ? T::PipelineKV::ThreadCategory::Producer : T::PipelineKV::ThreadCategory::Consumer;
    pp.is_leader = threadIdx.x == 0;
    pp.num_consumers = T::kConsumerThreads;
    return pp;
  };
  auto const cluster = cute::Shape<cute::_1, cute::_1, cute::_1>{};
  typename T::PipelineQ::Params pq;
  {
    auto pp = pipe_params(T::kQBytes);
    pq.transaction_bytes = pp.transaction_bytes;
    pq.role = warp_group == 0 ? T::PipelineQ::ThreadCategory::Producer : T::PipelineQ::ThreadCategory::Consumer;
    pq.is_leader = pp.is_leader;
    pq.num_consumers = pp.num_consumers;
  }
  typename T::PipelineQ pipe_q(ss.pipe_q, pq, cluster);
  typename T::PipelineKV pipe_k(ss.pipe_k, pipe_params(T::kKVBytes), cluster);
  typename T::PipelineKV pipe_v(ss.pipe_v, pipe_params(T::kKVBytes), cluster);
  __syncthreads();

  if (warp_group == 0) {
    cutlass::arch::warpgroup_reg_dealloc<kProducerRegs>();
    if (warp_idx == 0 && lane_leader) producer_loop<T>(p, ss, pipe_q, pipe_k, pipe_v);
  } else {
    cutlass::arch::warpgroup_reg_alloc<kConsumerRegs>();
    consumer_loop<T>(p, ss, pipe_q, pipe_k, pipe_v);
  }
}

}  // namespace cd42::attn
