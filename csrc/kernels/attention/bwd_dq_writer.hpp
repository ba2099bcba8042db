// dQ writer role of the attention backward (narrow variant, head dims
// 64-128): warp 1 of the producer warpgroup.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

#include "kernels/attention/bwd_common.hpp"
#include "kernels/attention/bwd_scheduler.hpp"

namespace cd42::attn {

// Warp 1 of the producer warpgroup: adds each query block's dQ tile from
// shared memory into the float32 accumulator, one bulk reduce per consumer
// warpgroup's half (async proxy, whole 128-byte lines at L2), in the
// consumers' step order. Each warpgroup hands its half over through its own
// pair of barriers, so neither waits for the other's dQ wgmma.
template <class T>
CUTE_DEVICE void bwd_dq_writer(typename T::Params const& p, typename T::SharedStorage& ss, BwdSeq<T> const& seq) {
  auto const& a = p.args;
  BwdTile const tile = BwdTileScheduler(a).initial_work();
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

}  // namespace cd42::attn
