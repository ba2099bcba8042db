// Warp-specialized attention forward (sm_90a): kernel entry.
//
// Warpgroup 0 is the producer (fwd_producer.hpp: TMA loads of the work that
// fwd_scheduler.hpp claims), warpgroups 1-2 are the consumers
// (fwd_consumer.hpp: wgmma, online softmax, epilogue). Registers move from the producer to the consumers with setmaxnreg.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/pipeline/sm90_pipeline.hpp>

#include "kernels/attention/fwd_consumer.hpp"
#include "kernels/attention/fwd_producer.hpp"

namespace cd42::attn {

template <class T>
__global__ void __launch_bounds__(T::kThreads, 1) attn_fwd_kernel(CUTE_GRID_CONSTANT typename T::Params const p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  auto& ss = *reinterpret_cast<typename T::SharedStorage*>(smem_raw);
  int const warp_group = threadIdx.x / kWarpGroupThreads;
  int const warp_idx = cutlass::canonical_warp_idx_sync();
  int const lane_leader = cute::elect_one_sync();
  bool const producer = warp_group == 0;
  if (warp_idx == 0 && lane_leader) {
    cute::prefetch_tma_descriptor(p.tma_q.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_k.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_v.get_tma_descriptor());
    cute::prefetch_tma_descriptor(p.tma_o.get_tma_descriptor());
  }
  auto const cluster = cute::Shape<cute::_1, cute::_1, cute::_1>{};
  typename T::PipelineQ pipe_q(ss.pipe_q, tma_pipeline_params<typename T::PipelineQ>(producer, T::kQBytes, T::kConsumerThreads), cluster);
  typename T::PipelineKV pipe_k(ss.pipe_k, tma_pipeline_params<typename T::PipelineKV>(producer, T::kKVBytes, T::kConsumerThreads), cluster);
  typename T::PipelineKV pipe_v(ss.pipe_v, tma_pipeline_params<typename T::PipelineKV>(producer, T::kKVBytes, T::kConsumerThreads), cluster);
  typename T::PipelineSched::Params ps;
  ps.role = producer ? T::PipelineSched::ThreadCategory::Producer : T::PipelineSched::ThreadCategory::Consumer;
  ps.producer_arv_count = 1;
  ps.consumer_arv_count = T::kConsumerThreads;
  typename T::PipelineSched pipe_sched(ss.pipe_sched, ps, cute::true_type{});
  __syncthreads();

  if (producer) {
    cutlass::arch::warpgroup_reg_dealloc<T::kProducerRegs>();
    if (warp_idx == 0 && lane_leader) producer_loop<T>(p, ss, pipe_sched, pipe_q, pipe_k, pipe_v);
  } else {
    cutlass::arch::warpgroup_reg_alloc<T::kConsumerRegs>();
    consumer_loop<T>(p, ss, pipe_sched, pipe_q, pipe_k, pipe_v);
  }
}

}  // namespace cd42::attn
