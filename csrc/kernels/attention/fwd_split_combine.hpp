// Consumer side of the split tail (split_tail.hpp): hand a piece's partial
// softmax state over, and let the last piece of a tile combine them.
//
// A slot holds, per consumer thread, its unnormalised O fragment (D/2 fp32)
// and one float4 (row max and this thread's partial row sum of its two
// rows), stored [float4 index][thread] so each store and load instruction
// covers 4 KB contiguously. The fragment layout never leaves the kernel, so
// no reshuffle is needed: the combining CTA's thread t reads exactly what
// thread t of every other piece wrote.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

#include "kernels/attention/softmax.hpp"
#include "kernels/attention/split_tail.hpp"

namespace cd42::attn {

// Returns false when other pieces of the tile are still running (this CTA
// is done with it), true when this piece arrived last: then `O` and
// `softmax` hold the whole tile's state, as if one CTA had run every block.
// Every consumer thread calls it; `barrier` names a barrier over them all.
template <class T, class FragO, class Softmax>
CUTE_DEVICE bool combine_split_pieces(typename T::Params const& p, typename T::SharedStorage& ss, WorkPiece const& w,
                                      int tidx, int barrier, FragO& O, Softmax& softmax) {
  constexpr int kThreads = T::kConsumerThreads;
  constexpr int kVecO = T::kHeadDim / 8;  // float4s of O per thread
  static_assert(decltype(cute::size(O))::value == 4 * kVecO, "O fragment: D/2 floats per thread");
  SplitTail const& sp = p.split;
  int const i = w.tile - sp.full;
  int first, count;
  sp.tile_pieces(i, first, count);
  int const piece = sp.item_of(i * sp.blocks_div.divisor + w.n_begin) - first;
  float4* const tile_slots = reinterpret_cast<float4*>(p.args.split_ws) +
                             int64_t(i) * sp.max_pieces * (SplitTail::slot_floats(T::kHeadDim, kThreads) / 4);
  auto slot = [&](int k) { return tile_slots + int64_t(k) * (kVecO + 1) * kThreads + tidx; };

  float4* const mine = slot(piece);
  CUTE_UNROLL
  for (int v = 0; v < kVecO; ++v) mine[v * kThreads] = make_float4(O(4 * v), O(4 * v + 1), O(4 * v + 2), O(4 * v + 3));
  mine[kVecO * kThreads] = make_float4(softmax.row_max[0], softmax.row_max[1], softmax.row_sum[0], softmax.row_sum[1]);
  // Publish: every thread's stores before the tile's counter moves.
  __threadfence();
  cutlass::arch::NamedBarrier::sync(kThreads, barrier);
  if (tidx == 0) {
    ss.split_last = atomicAdd(p.args.tile_counter + 1 + i, 1) == count - 1;
    __threadfence();  // the other pieces' stores, seen through the counter, before our loads
  }
  cutlass::arch::NamedBarrier::sync(kThreads, barrier);
  if (!ss.split_last) return false;

  // Combine in piece order (not arrival order), so the result is the same
  // bits on every run. Loads go to L2 (.cg): the slots were written by other
  // SMs.
  float m[2] = {-INFINITY, -INFINITY};
  for (int k = 0; k < count; ++k) {
    float4 const st = __ldcg(slot(k) + kVecO * kThreads);
    m[0] = fmaxf(m[0], st.x);
    m[1] = fmaxf(m[1], st.y);
  }
  float m_scaled[2];
  CUTE_UNROLL
  for (int h = 0; h < 2; ++h) m_scaled[h] = m[h] == -INFINITY ? 0.f : m[h] * p.score_scale_log2;
  float sum[2] = {0.f, 0.f};
  cute::clear(O);
  for (int k = 0; k < count; ++k) {
    float4 const st = __ldcg(slot(k) + kVecO * kThreads);
    float const f0 = fast_exp2(st.x * p.score_scale_log2 - m_scaled[0]);  // 0 for a piece that saw no key
    float const f1 = fast_exp2(st.y * p.score_scale_log2 - m_scaled[1]);
    sum[0] += f0 * st.z;
    sum[1] += f1 * st.w;
    float4 const* src = slot(k);
    CUTE_UNROLL
    for (int v = 0; v < kVecO; ++v) {  // elements 4v..4v+3: columns (0, 1) of row half 0, then of row half 1
      float4 const o = __ldcg(src + v * kThreads);
      O(4 * v) += f0 * o.x;
      O(4 * v + 1) += f0 * o.y;
      O(4 * v + 2) += f1 * o.z;
      O(4 * v + 3) += f1 * o.w;
    }
  }
  CUTE_UNROLL
  for (int h = 0; h < 2; ++h) {
    softmax.row_max[h] = m[h];
    softmax.row_sum[h] = sum[h];
  }
  return true;
}

}  // namespace cd42::attn
