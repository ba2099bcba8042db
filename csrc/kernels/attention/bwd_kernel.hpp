// Warp-specialized attention backward (sm_90a): kernel entry. See
// bwd_traits.hpp (head dims 64-128) and bwd_wide_traits.hpp (192/256).
//
// Warpgroup 0 is the producer (bwd_producer.hpp: one thread, K/V once, then
// Q and dO of each query block through a TMA pipeline) and, in the narrow
// variant, the dQ writer warp (bwd_dq_writer.hpp); warpgroups 1-2 are the
// consumers (bwd_consumer.hpp, bwd_wide_consumer.hpp). The tile comes from
// bwd_scheduler.hpp: non-persistent, one CTA per tile.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_consumer.hpp"
#include "kernels/attention/bwd_dq_writer.hpp"
#include "kernels/attention/bwd_producer.hpp"
#include "kernels/attention/bwd_scheduler.hpp"
#include "kernels/attention/bwd_traits.hpp"
#include "kernels/attention/bwd_wide_consumer.hpp"
#include "kernels/attention/bwd_wide_traits.hpp"

namespace cd42::attn {

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) attn_bwd_kernel(CUTE_GRID_CONSTANT typename T::Params const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);
  BwdTile const tile = BwdTileScheduler(p.args).initial_work();
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

}  // namespace cd42::attn
