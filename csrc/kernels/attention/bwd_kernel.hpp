// Warp-specialized attention backward (sm_90a), v1: see bwd_traits.hpp.
//
// Warpgroup 0 is the producer (one thread: K/V once, then Q and dO of each
// query block through a 2-stage TMA pipeline), warpgroups 1-2 the consumers.
// Non-persistent: one CTA per (key block, KV head, batch) tile, see bwd_tile().
#pragma once

#include <cmath>
#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "cute/wgmma.hpp"
#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_traits.hpp"
#include "kernels/attention/bwd_wide_consumer.hpp"
#include "kernels/attention/bwd_wide_traits.hpp"

namespace cd42::attn {

template <class T>
CUTE_DEVICE void bwd_producer(typename T::Params const& p, typename T::SharedStorage& ss,
                              typename T::PipelineKV& pipe_kv, typename T::PipelineQ& pipe_q,
                              BwdSeq<T> const& seq) {
  using namespace cute;
  auto const& a = p.args;
  BwdTile const tile = bwd_tile(a);
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

// Warp 1 of the producer warpgroup: adds each query block's dQ tile from
// shared memory into the float32 accumulator, one bulk reduce per consumer
// warpgroup's half (async proxy, whole 128-byte lines at L2), in the
// consumers' step order. Each warpgroup hands its half over through its own
// pair of barriers, so neither waits for the other's dQ wgmma.
template <class T>
CUTE_DEVICE void bwd_dq_writer(typename T::Params const& p, typename T::SharedStorage& ss, BwdSeq<T> const& seq) {
  auto const& a = p.args;
  BwdTile const tile = bwd_tile(a);
  int const n_block = tile.n_block, head_kv = tile.head_kv;
  int const group = a.heads_q / a.heads_kv;
  bool const leader = cute::elect_one_sync();
  BwdBlockRange<T> range(a, seq, n_block);
  int const steps = group * (range.m_max - range.m_min);
  constexpr int kThreads = T::kdQHandoffThreads;
  constexpr int kHalf = T::kBlockM * T::kHeadDim / T::kConsumerWGs;  // floats per warpgroup
  static_assert(T::kConsumerWGs == 2, "one dQ half per consumer warpgroup");
  if (steps > 0) {  // both halves start empty
    cutlass::arch::NamedBarrier::arrive(kThreads, kBwdBarrierdQEmpty0);
    cutlass::arch::NamedBarrier::arrive(kThreads, kBwdBarrierdQEmpty0 + 1);
  }
  int step = 0;
  CUTE_NO_UNROLL
  for (int g = 0; g < group; ++g) {
    int64_t const chunk0 = seq.stat_row(head_kv * group + g) / T::kBlockM;  // dQ chunk of query block 0
    CUTE_NO_UNROLL
    for (int m = range.m_min; m < range.m_max; ++m) {
      float* dst = a.dq_accum + (chunk0 + m) * (T::kBlockM * T::kHeadDim);
      int* sem = nullptr;
      int turn = 0;
      if constexpr (T::kDeterministic) {  // the key blocks before this one have added
        sem = a.dq_semaphore + chunk0 + m;
        if (leader) {
          turn = dq_turn<T>(a, seq, n_block, m);
          while (ld_acquire(sem) != turn) __nanosleep(64);
        }
      }
      CUTE_UNROLL
      for (int w = 0; w < 2; ++w) {
        cutlass::arch::NamedBarrier::sync(kThreads, kBwdBarrierdQFull0 + w);
        if (leader) {
          uint32_t const src = cute::cast_smem_ptr_to_uint(ss.dQ + w * kHalf);
          asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;"
                       :: "l"(dst + w * kHalf), "r"(src), "r"(uint32_t(kHalf * sizeof(float))) : "memory");
          cute::tma_store_arrive();
        }
      }
      bool const more = ++step < steps;
      if constexpr (T::kDeterministic) {  // the adds are complete and visible before the next turn
        if (leader) {
          asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
          asm volatile("fence.proxy.async.global;" ::: "memory");
          st_release(sem, turn + 1);
        }
        __syncwarp();
        if (more) {
          cutlass::arch::NamedBarrier::arrive(kThreads, kBwdBarrierdQEmpty0);
          cutlass::arch::NamedBarrier::arrive(kThreads, kBwdBarrierdQEmpty0 + 1);
        }
      } else {  // each half may be reused once its reduce has read it
        if (leader) cute::tma_store_wait<1>();
        __syncwarp();
        if (more) cutlass::arch::NamedBarrier::arrive(kThreads, kBwdBarrierdQEmpty0);
        if (leader) cute::tma_store_wait<0>();
        __syncwarp();
        if (more) cutlass::arch::NamedBarrier::arrive(kThreads, kBwdBarrierdQEmpty0 + 1);
      }
    }
  }
  if (leader) asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");  // complete before the CTA exits
}

template <class T>
CUTE_DEVICE void bwd_consumer(typename T::Params const& p, typename T::SharedStorage& ss,
                              typename T::PipelineKV& pipe_kv, typename T::PipelineQ& pipe_q,
                              BwdSeq<T> const& seq) {
  using namespace cute;
  using Element = typename T::Element;
  auto const& a = p.args;
  int const tidx = threadIdx.x - kWarpGroupThreads;  // 0..255
  int const n_block = bwd_tile(a).n_block;
  int const group = a.heads_q / a.heads_kv;
  int const seqlen_k = seq.seqlen_k;
  int const off = seq.seqlen_k - seq.seqlen_q;
  int const n0 = n_block * T::kBlockN;

  Tensor sQ = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQ{});
  Tensor sdO = make_tensor(make_smem_ptr(ss.dO.begin()), typename T::SmemLayoutQ{});
  Tensor sQt = make_tensor(make_smem_ptr(ss.Q.begin()), typename T::SmemLayoutQt{});
  Tensor sdOt = make_tensor(make_smem_ptr(ss.dO.begin()), typename T::SmemLayoutQt{});
  Tensor sK = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutK{});
  Tensor sV = make_tensor(make_smem_ptr(ss.V.begin()), typename T::SmemLayoutK{});
  Tensor sKt = make_tensor(make_smem_ptr(ss.K.begin()), typename T::SmemLayoutKt{});
  Tensor sdSt = make_tensor(make_smem_ptr(ss.dS.begin()), typename T::SmemLayoutdSt{});
  Tensor sdS = make_tensor(make_smem_ptr(ss.dS.begin()), typename T::SmemLayoutdS{});

  typename T::TiledMmaSdP mma_sdp;
  typename T::TiledMmadKV mma_dkv;
  typename T::TiledMmadQ mma_dq;
  auto thr_sdp = mma_sdp.get_thread_slice(tidx);
  auto thr_dkv = mma_dkv.get_thread_slice(tidx);
  auto thr_dq = mma_dq.get_thread_slice(tidx);

  Tensor tSrK = thr_sdp.make_fragment_A(thr_sdp.partition_A(sK));     // (MMA, 1, D/16)
  Tensor tSrQ = thr_sdp.make_fragment_B(thr_sdp.partition_B(sQ));     // (MMA, 1, D/16, stages)
  Tensor tdPrV = thr_sdp.make_fragment_A(thr_sdp.partition_A(sV));
  Tensor tdPrdO = thr_sdp.make_fragment_B(thr_sdp.partition_B(sdO));
  Tensor tdVrdOt = thr_dkv.make_fragment_B(thr_dkv.partition_B(sdOt));  // (MMA, 1, M/16, stages)
  Tensor tdKrQt = thr_dkv.make_fragment_B(thr_dkv.partition_B(sQt));
  Tensor tdQrdS = thr_dq.make_fragment_A(thr_dq.partition_A(sdS));     // (MMA, 1, N/16, buffers)
  Tensor tdQrKt = thr_dq.make_fragment_B(thr_dq.partition_B(sKt));

  Tensor tSrS = partition_fragment_C(mma_sdp, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{});
  Tensor tdPrdP = partition_fragment_C(mma_sdp, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{});
  Tensor tdVrdV = partition_fragment_C(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{});
  Tensor tdKrdK = partition_fragment_C(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{});
  Tensor tdQrdQ = partition_fragment_C(mma_dq, Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{});
  // P^T and dS^T as A operands: 16-bit A fragments reuse the accumulator's register order.
  Tensor tdVrP = make_tensor<Element>(partition_shape_A(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
  Tensor tdKrdS = make_tensor<Element>(partition_shape_A(mma_dkv, Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
  static_assert(decltype(size(tSrS))::value == decltype(size(tdVrP))::value, "P^T reuses S^T's register order");
  // Softcap: d(scores)/d(raw) = scale * (1 - tanh^2), kept from P^T to dS^T
  // as fp16 pairs (in [0, 1]: fp16 keeps 11 bits; half the registers of fp32).
  constexpr int kCapValues = T::kSoftcap ? int(decltype(size(tSrS))::value) : 1;
  Tensor tdScap = make_tensor<cutlass::half_t>(Int<kCapValues>{});
  // (fresh_consumer_tidx: kept live, the thread-dependent addressing costs
  // the registers that fp16 and D=96 configs spill.)
  auto fresh_tidx = fresh_consumer_tidx;

  auto kv_state = typename T::PipelineKV::PipelineState{};
  auto q_state = typename T::PipelineQ::PipelineState{};
  clear(tdKrdK);
  clear(tdVrdV);
  pipe_kv.consumer_wait(kv_state);

  BwdBlockRange<T> range(a, seq, n_block);
  for (int g = 0; g < group; ++g) {
    for (int m = range.m_min; m < range.m_max; ++m) {
      int const m0 = m * T::kBlockM;
      int const ds_buf = T::kdSBuffers == 2 ? q_state.count() & 1 : 0;  // step parity
      pipe_q.consumer_wait(q_state);
      int const stage = q_state.index();
      // S^T = K Q^T and dP^T = V dO^T issued back to back: P^T is computed
      // from S^T while the tensor cores still work on dP^T.
      wgmma_overwrite(mma_sdp, tSrK, tSrQ(_, _, _, stage), tSrS);
      wgmma_overwrite(mma_sdp, tdPrV, tdPrdO(_, _, _, stage), tdPrdP);
      warpgroup_wait<1>();  // S^T
      warpgroup_fence_operand(tSrS);
      float const* s_lse = ss.lse_log2[stage];
      float const* s_dsum = ss.dsum[stage];
      Tensor tScS = mma_sdp.get_thread_slice(fresh_tidx()).partition_C(
          make_identity_tensor(Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
      bwd_probs<T>(p, tSrS, tdVrP, tdScap, tScS, s_lse, n0, m0, seqlen_k, off);

      warpgroup_wait<0>();
      warpgroup_fence_operand(tdPrdP);
      Tensor tScS2 = mma_sdp.get_thread_slice(fresh_tidx()).partition_C(
          make_identity_tensor(Shape<Int<T::kBlockN>, Int<T::kBlockM>>{}));
      bwd_dscores<T>(tdPrdP, tdVrP, tdScap, tdKrdS, tScS2, s_dsum);

      // dS^T to this step's shared buffer (both warpgroups' halves of the
      // keys) for the dQ GEMM. The other buffer may still be read by the
      // other warpgroup's previous dQ wgmma; this one was last read two
      // steps ago, before both passed the previous step's barrier. With one
      // buffer, both warpgroups' previous dQ wgmmas must retire first.
      if constexpr (T::kdSBuffers == 1) cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdBarrierdS);
      CUTE_UNROLL
      {  // stmatrix: 8x8 tiles of 16-bit values, rows (keys) of 8 contiguous query columns
        auto r2s = make_tiled_copy_C(Copy_Atom<SM90_U32x4_STSM_N, Element>{}, mma_sdp);
        auto thr_r2s = r2s.get_thread_slice(fresh_tidx());
        Tensor tdSr = thr_r2s.retile_S(make_tensor(tdKrdS.data(), tSrS.layout()));  // dS^T in C-fragment order
        cute::copy(r2s, tdSr, thr_r2s.partition_D(sdSt(_, _, ds_buf)));
      }
      cutlass::arch::fence_view_async_shared();
      cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, kBwdBarrierdS);

      // dQ = dS K first (its own commit group), then dV += P^T dO and
      // dK += dS^T Q: only dQ is waited for here; dV/dK retire during the
      // dQ store. (Issuing dV right after P^T, under the dS^T steps, measured
      // 2-8% slower at D=128: it delays the other warpgroup's dP^T, which
      // is on the path to the shared dS^T barrier. Letting dV/dK run on into
      // the next step's S^T/dP^T keeps P^T and dS^T live next to S^T and
      // dP^T: ptxas serializes the wgmmas for lack of registers.) The
      // register A operands are fenced too, or ptxas injects warpgroup.arrive
      // between the wgmmas (C7519).
      warpgroup_fence_operand(tdVrP);
      warpgroup_fence_operand(tdKrdS);
      warpgroup_fence_operand(tdVrdV);
      warpgroup_fence_operand(tdKrdK);
      warpgroup_fence_operand(tdQrdQ);
      warpgroup_arrive();
      mma_dq.accumulate_ = GMMA::ScaleOut::Zero;
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdQrdS); ++kb) {
        cute::gemm(mma_dq, tdQrdS(_, _, kb, ds_buf), tdQrKt(_, _, kb), tdQrdQ);
        mma_dq.accumulate_ = GMMA::ScaleOut::One;
      }
      warpgroup_commit_batch();
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdVrP); ++kb) {
        cute::gemm(mma_dkv, tdVrP(_, _, kb), tdVrdOt(_, _, kb, stage), tdVrdV);
      }
      CUTE_UNROLL
      for (int kb = 0; kb < size<2>(tdKrdS); ++kb) {
        cute::gemm(mma_dkv, tdKrdS(_, _, kb), tdKrQt(_, _, kb, stage), tdKrdK);
      }
      warpgroup_commit_batch();
      warpgroup_wait<1>();
      warpgroup_fence_operand(tdQrdQ);

      // dQ (unscaled) to this warpgroup's half of the shared tile as float4s
      // in register order (dq_float4_slot), once the writer warp has read
      // the last one.
      {
        int const wg = cutlass::canonical_warp_group_idx() - 1;  // warp-uniform
        cutlass::arch::NamedBarrier::sync(T::kdQHandoffThreads, kBwdBarrierdQEmpty0 + wg);
        float4* sdQ = reinterpret_cast<float4*>(ss.dQ);
        CUTE_UNROLL
        for (int c = 0; c < T::kdQPerThread / 4; ++c) {
          sdQ[dq_float4_slot<T>(c, fresh_tidx())] =
              make_float4(tdQrdQ(4 * c), tdQrdQ(4 * c + 1), tdQrdQ(4 * c + 2), tdQrdQ(4 * c + 3));
        }
        cutlass::arch::fence_view_async_shared();  // visible to the bulk reduce (async proxy)
        cutlass::arch::NamedBarrier::arrive(T::kdQHandoffThreads, kBwdBarrierdQFull0 + wg);
      }
      warpgroup_wait<0>();  // dV, dK: their A operands are rewritten next step, their B is this stage
      warpgroup_fence_operand(tdVrdV);
      warpgroup_fence_operand(tdKrdK);
      pipe_q.consumer_release(q_state);
      ++q_state;
    }
  }

  // K and V are read for the last time above: release them, or the
  // producer's pipeline tail would wait for that forever.
  pipe_kv.consumer_release(kv_state);

  // (The dQ writer warp may still be reading the dQ tile, which the
  // epilogue leaves alone.)
  bwd_store_dk_dv_staged<T>(a, ss, tdKrdK, tdVrdV, fresh_tidx(), kBwdBarrierdS);
}

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) attn_bwd_kernel(CUTE_GRID_CONSTANT typename T::Params const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);
  BwdTile const tile = bwd_tile(p.args);
  BwdSeq<T> const seq(p.args, tile.batch, p.args.heads_q);
  // Varlen: the grid covers the longest sequence's keys; the whole CTA
  // leaves before any barrier exists if this one has no keys here.
  if (T::kVarlen && tile.n_block * T::kBlockN >= seq.seqlen_k) return;
  int const warp_group = threadIdx.x / kWarpGroupThreads;
  int const warp_idx = cutlass::canonical_warp_idx_sync();
  int const lane_leader = cute::elect_one_sync();
  bool const producer = warp_group == 0;
  if (warp_idx == 0 && lane_leader) {
    cute::prefetch_tma_descriptor(p.tma_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_do.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_k.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_v.get_tma_descriptor());
  }
  auto const cluster = cute::Shape<cute::_1, cute::_1, cute::_1>{};
  typename T::PipelineKV pipe_kv(
      ss.pipe_kv, tma_pipeline_params<typename T::PipelineKV>(producer, T::kKVBytes, T::kConsumerThreads), cluster);
  typename T::PipelineQ pipe_q(
      ss.pipe_q, tma_pipeline_params<typename T::PipelineQ>(producer, T::kQdOBytes, T::kConsumerThreads), cluster);
  __syncthreads();

  if (producer) {
    cutlass::arch::warpgroup_reg_dealloc<T::kProducerRegs>();
    if (warp_idx == 0 && lane_leader) bwd_producer<T>(p, ss, pipe_kv, pipe_q, seq);
    if constexpr (!T::kWide) {  // the wide variant's consumers add dQ themselves
      if (warp_idx == 1) bwd_dq_writer<T>(p, ss, seq);
    }
  } else {
    cutlass::arch::warpgroup_reg_alloc<T::kConsumerRegs>();
    if constexpr (T::kWide) {
      bwd_consumer_wide<T>(p, ss, pipe_kv, pipe_q, seq);
    } else {
      bwd_consumer<T>(p, ss, pipe_kv, pipe_q, seq);
    }
  }
}

// dsum = rowsum(dO * O) and lse_log2 = LSE * log2(e), float32, per padded
// row; pad rows get dsum = 0, lse_log2 = +inf. Each row also zeroes its D
// floats of the dQ accumulator (whole chunks, since every padded row of a
// block has a thread group here), so no separate memset runs. A row is read
// by a group of kLanes lanes with 16-byte loads (one per lane at D <= 256),
// so the kernel streams O and dO at HBM rate (the first version, one warp
// per row with 2-byte loads, took 85-150 us at B*S = 16384, H*D = 2048 on
// H200: 2.5-4x the bytes' time). The grid covers (batch, heads, rows) with
// rows = the (longest) sequence's padded length.
template <class T>
CUTE_HOST_DEVICE int bwd_rows_per_seq(int seqlen_q, int seqlen_q_pad) {
  return T::kVarlen ? (seqlen_q + T::kBlockM - 1) / T::kBlockM * T::kBlockM : seqlen_q_pad;
}

template <class T>
struct BwdPreprocessShape {
  static constexpr int kChunks = T::kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kLanes = kChunks <= 8 ? 8 : kChunks <= 16 ? 16 : 32;  // lanes per row, a power of two
  static constexpr int kRowsPerWarp = 32 / kLanes;
  static constexpr int kThreads = 256;
  static constexpr int kRowsPerCta = kThreads / 32 * kRowsPerWarp;
  static_assert(T::kHeadDim % 8 == 0 && kChunks <= 32, "preprocess: one 16-byte chunk per lane");
};

template <class T>
__global__ void __launch_bounds__(BwdPreprocessShape<T>::kThreads) attn_bwd_preprocess_kernel(
    cd42_attn_bwd_pre_args const a) {
  using Element = typename T::Element;
  using Shape = BwdPreprocessShape<T>;
  int const rows = bwd_rows_per_seq<T>(a.seqlen_q, a.seqlen_q_pad);
  int const lane = threadIdx.x % 32;
  int const sub = lane % Shape::kLanes;  // this lane's 16-byte chunk of the row
  int64_t const id = int64_t(blockIdx.x) * Shape::kRowsPerCta + threadIdx.x / Shape::kLanes;
  // No early return: every lane takes part in the row's shuffles below.
  bool valid = id < int64_t(a.batch) * a.heads * rows;
  int const r = valid ? int(id % rows) : 0;
  int const h = valid ? int(id / rows % a.heads) : 0;
  int const b = valid ? int(id / (int64_t(rows) * a.heads)) : 0;
  int len = a.seqlen_q, q_off = 0;
  int64_t out_row = 0, lse_idx = 0;
  if constexpr (T::kVarlen) {
    if (valid) {
      q_off = a.cu_seqlens_q[b];
      len = a.cu_seqlens_q[b + 1] - q_off;
      valid = r < (len + T::kBlockM - 1) / T::kBlockM * T::kBlockM;  // past this sequence's last block: nothing
      out_row = int64_t(h) * a.seqlen_q_pad + varlen_padded_row0<T>(a.cu_seqlens_q, b) + r;
      lse_idx = int64_t(h) * a.total_q + q_off + r;
    }
  } else {
    out_row = (int64_t(b) * a.heads + h) * a.seqlen_q_pad + r;
    lse_idx = (int64_t(b) * a.heads + h) * a.seqlen_q + r;
  }
  float s = 0.f;
  if (valid && r < len && sub < Shape::kChunks) {
    auto const* o = static_cast<Element const*>(a.o) + b * a.o_batch_stride + int64_t(q_off + r) * a.o_row_stride +
                    int64_t(h) * a.o_head_stride;
    auto const* d = static_cast<Element const*>(a.dout) + b * a.do_batch_stride +
                    int64_t(q_off + r) * a.do_row_stride + int64_t(h) * a.do_head_stride;
    uint4 const ov = reinterpret_cast<uint4 const*>(o)[sub];  // 16-byte aligned: checked by the caller
    uint4 const dv = reinterpret_cast<uint4 const*>(d)[sub];
    Element const* oe = reinterpret_cast<Element const*>(&ov);
    Element const* de = reinterpret_cast<Element const*>(&dv);
    CUTE_UNROLL
    for (int i = 0; i < 8; ++i) s += float(oe[i]) * float(de[i]);
  }
  CUTE_UNROLL
  for (int k = Shape::kLanes / 2; k > 0; k /= 2) s += __shfl_xor_sync(0xffffffff, s, k);
  if (valid) {
    float4* z = reinterpret_cast<float4*>(a.dq_accum + out_row * T::kHeadDim);
    CUTE_UNROLL
    for (int i = sub; i < T::kHeadDim / 4; i += Shape::kLanes) z[i] = make_float4(0.f, 0.f, 0.f, 0.f);
    if (sub == 0) {
      a.dsum[out_row] = s;
      a.lse_log2[out_row] = r < len ? a.lse[lse_idx] * 1.4426950408889634f : INFINITY;
    }
  }
}

// dq = softmax_scale * dQ accumulator, from the per-query-block chunks in
// the dQ MMA's register order (the same TiledMma partition as the main
// kernel, so the two cannot disagree); one CTA of 256 threads per chunk.
// The chunk is reordered through shared memory so that dq rows leave as
// 16-byte coalesced stores (2-byte stores in register order took ~4x the
// bytes' time).
template <class T>
__global__ void __launch_bounds__(T::kConsumerThreads) attn_bwd_postprocess_kernel(cd42_attn_bwd_args const a) {
  using namespace cute;
  using Element = typename T::Element;
  constexpr int kRowElems = T::kHeadDim + 8;  // padded row: the 16-byte reads below hit distinct banks
  __shared__ alignas(16) Element tile[T::kBlockM * kRowElems];
  int const m = blockIdx.x, head = blockIdx.y, batch = blockIdx.z;
  int const tidx = threadIdx.x;
  BwdSeq<T> const seq(a, batch, a.heads_q);
  if (m * T::kBlockM >= seq.seqlen_q) return;  // varlen: past this sequence's rows (the whole CTA)
  float4 const* src = reinterpret_cast<float4 const*>(
      a.dq_accum + (seq.stat_row(head) / T::kBlockM + m) * (T::kBlockM * T::kHeadDim));
  typename T::TiledMmadQ mma_dq;
  Tensor tdQcdQ = mma_dq.get_thread_slice(tidx).partition_C(
      make_identity_tensor(Shape<Int<T::kBlockM>, Int<T::kHeadDim>>{}));
  static_assert(decltype(size(tdQcdQ))::value == T::kdQPerThread, "one register-order chunk per thread");
  CUTE_UNROLL
  for (int c = 0; c < T::kdQPerThread / 4; ++c) {
    float4 const v = src[dq_float4_slot<T>(c, tidx)];
    float const vals[4] = {v.x, v.y, v.z, v.w};
    CUTE_UNROLL
    for (int j = 0; j < 4; ++j) {
      auto const rc = tdQcdQ(4 * c + j);
      tile[get<0>(rc) * kRowElems + get<1>(rc)] = static_cast<Element>(vals[j] * a.softmax_scale);
    }
  }
  __syncthreads();
  Element* dq = static_cast<Element*>(a.dq) + int64_t(batch) * a.dq_batch_stride + int64_t(head) * a.dq_head_stride +
                int64_t(seq.q_offset) * a.dq_row_stride;
  constexpr int kChunksPerRow = T::kHeadDim / 8;
  CUTE_UNROLL
  for (int i = tidx; i < T::kBlockM * kChunksPerRow; i += T::kConsumerThreads) {
    int const row = i / kChunksPerRow, chunk = i % kChunksPerRow;
    int const q_row = m * T::kBlockM + row;
    if (q_row < seq.seqlen_q) {
      reinterpret_cast<uint4*>(dq + int64_t(q_row) * a.dq_row_stride)[chunk] =
          *reinterpret_cast<uint4 const*>(&tile[row * kRowElems + chunk * 8]);
    }
  }
}

}  // namespace cd42::attn
