// Warp-specialization constants shared by the Hopper kernels.
//
// A CTA is 1 producer warpgroup + N consumer warpgroups. Registers are moved
// from the producer (which only issues TMA and needs few) to the consumers
// (which hold wgmma accumulators) with setmaxnreg. The split must satisfy
//   128 * (kProducerRegs + N * kConsumerRegs) <= 65536
// and each value must be a multiple of 8 in [24, 256].
#pragma once

#include <cstdint>
#include <cute/config.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

namespace cd42 {

constexpr int kWarpGroupThreads = 128;

template <int NumConsumerWGs>
struct RegisterSplit;

template <>
struct RegisterSplit<2> {
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
};

template <>
struct RegisterSplit<1> {
  static constexpr int kProducerRegs = 56;
  static constexpr int kConsumerRegs = 256;
};

template <int N>
constexpr bool register_split_fits() {
  return kWarpGroupThreads * (RegisterSplit<N>::kProducerRegs + N * RegisterSplit<N>::kConsumerRegs) <= 65536;
}

// setmaxnreg.inc only completes once the CTA's register pool can cover it:
// the producer warpgroup must free at least what the consumers add on top of
// the launch allocation (`launch_regs` per thread), or the kernel hangs.
constexpr bool setmaxnreg_pool_ok(int launch_regs, int producer_regs, int consumer_wgs, int consumer_regs) {
  return kWarpGroupThreads * (launch_regs - producer_regs) >=
         consumer_wgs * kWarpGroupThreads * (consumer_regs - launch_regs);
}

// Params of a CUTLASS TMA pipeline for this thread's role: one elected
// producer thread (thread 0) arms the barriers; every consumer thread releases.
template <class Pipe>
CUTE_DEVICE typename Pipe::Params tma_pipeline_params(bool producer, uint32_t bytes, int consumer_threads) {
  typename Pipe::Params pp;
  pp.transaction_bytes = bytes;
  pp.role = producer ? Pipe::ThreadCategory::Producer : Pipe::ThreadCategory::Consumer;
  pp.is_leader = threadIdx.x == 0;
  pp.num_consumers = consumer_threads;
  return pp;
}

// Named barrier ids used by consumer warpgroup `wg` (0-based). CUTLASS's
// NamedBarrier adds its reserved-id offset, so these never clash with ids
// that CUTLASS pipelines use internally.
struct BarrierIds {
  static constexpr int kEpilogueBase = 0;  // + consumer index
};

}  // namespace cd42
