// Pieces shared by the roles of the attention backward (bwd_consumer.hpp,
// bwd_wide_consumer.hpp, bwd_producer.hpp, bwd_dq_writer.hpp): sequence geometry, the query-block range of a key
// block, deterministic turns, the mask, and the dK / dV epilogue.
#pragma once

#include <cute/tensor.hpp>

#include "cute/warp_roles.hpp"
#include "kernels/attention/bwd_args.h"
#include "kernels/attention/bwd_scheduler.hpp"
#include "kernels/attention/pack.hpp"
#include "kernels/attention/softmax.hpp"  // fast_exp2, fast_tanh

namespace cd42::attn {

constexpr int kBwdBarrierdS = 0;        // both consumer warpgroups: dS^T tile written / read
constexpr int kBwdBarrierdQFull0 = 1;   // +w: consumer warpgroup w -> dQ writer warp: its half of the dQ tile is in smem
constexpr int kBwdBarrierdQEmpty0 = 3;  // +w: dQ writer warp -> consumer warpgroup w: its half may be overwritten

// A query block's dQ accumulator chunk (and the narrow variant's smem dQ
// tile) holds the dQ MMA's fragments in register order, each consumer
// warpgroup's half contiguous: float4 c of consumer thread t sits at
// (t / 128) * half + c * 128 + t % 128, so a warp's float4s are contiguous
// and each warpgroup's half goes to global memory as one bulk reduce. The
// dQ postprocess reads with the same map.
template <class T>
CUTE_HOST_DEVICE int dq_float4_slot(int c, int tidx) {
  constexpr int kPerWarpGroup = T::kdQPerThread / 4 * kWarpGroupThreads;
  return tidx / kWarpGroupThreads * kPerWarpGroup + c * kWarpGroupThreads + tidx % kWarpGroupThreads;
}

// Varlen: first row of sequence b in the padded packing of the row
// statistics and dQ chunks (bwd_args.h), a multiple of M.
template <class T>
CUTE_HOST_DEVICE int64_t varlen_padded_row0(int32_t const* cu_seqlens_q, int b) {
  return (int64_t(cu_seqlens_q[b]) + int64_t(b) * T::kBlockM) / T::kBlockM * T::kBlockM;
}

// One sequence of the batch: its lengths, where its rows start in q/k (packed
// layout, varlen) and in the row statistics / dQ chunks of each head.
template <class T>
struct BwdSeq {
  int seqlen_q, seqlen_k;
  int q_offset, k_offset;  // 0 unless varlen
  int64_t stat_row0;       // (padded) row of this sequence's row 0 of head 0 in lse_log2 / dsum
  int64_t stat_head_stride;

  template <class Args>
  CUTE_DEVICE BwdSeq(Args const& a, int batch, int heads) {
    if constexpr (T::kVarlen) {
      q_offset = a.cu_seqlens_q[batch];
      k_offset = a.cu_seqlens_k[batch];
      seqlen_q = a.cu_seqlens_q[batch + 1] - q_offset;
      seqlen_k = a.cu_seqlens_k[batch + 1] - k_offset;
      stat_row0 = varlen_padded_row0<T>(a.cu_seqlens_q, batch);
    } else {
      q_offset = k_offset = 0;
      seqlen_q = a.seqlen_q;
      seqlen_k = a.seqlen_k;
      stat_row0 = int64_t(batch) * heads * a.seqlen_q_pad;
    }
    stat_head_stride = a.seqlen_q_pad;
  }
  // Row 0 of (this sequence, head) in lse_log2 / dsum; / M = its first dQ chunk.
  CUTE_DEVICE int64_t stat_row(int head) const { return stat_row0 + head * stat_head_stride; }
};

// Query blocks [m_min, m_max) whose rows can see a key of block n_block.
template <class T>
struct BwdBlockRange {
  int m_min, m_max;
  CUTE_DEVICE BwdBlockRange(cd42_attn_bwd_args const& a, BwdSeq<T> const& seq, int n_block) {
    int const off = seq.seqlen_k - seq.seqlen_q;
    int const n0 = n_block * T::kBlockN;
    int const n1 = min(n0 + T::kBlockN, seq.seqlen_k) - 1;
    int r_lo = 0, r_hi = seq.seqlen_q - 1;
    if constexpr (T::kHasWindow) {
      r_lo = max(r_lo, n0 - off - a.window_right);  // rows below see none of these keys
      r_hi = min(r_hi, n1 - off + a.window_left);   // rows above see none either
    }
    m_min = r_lo / T::kBlockM;
    m_max = r_hi >= r_lo ? r_hi / T::kBlockM + 1 : m_min;
  }
};

// Deterministic dQ: index of key block n among the key blocks whose CTAs add
// into query block m (those form a contiguous run n_first(m)..), i.e. how
// many must have added before it. n_first is the first key block whose
// query range ends past m (BwdBlockRange's m_max is nondecreasing in n).
template <class T>
CUTE_DEVICE int dq_turn(cd42_attn_bwd_args const& a, BwdSeq<T> const& seq, int n_block, int m_block) {
  if constexpr (!T::kHasWindow) {
    return n_block;
  } else {
    int lo = 0, hi = n_block;  // n_first is in [0, n_block]: n_block itself covers m_block
    while (lo < hi) {
      int const mid = (lo + hi) / 2;
      if (BwdBlockRange<T>(a, seq, mid).m_max > m_block) hi = mid; else lo = mid + 1;
    }
    return n_block - lo;
  }
}

CUTE_DEVICE int ld_acquire(int const* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

CUTE_DEVICE void st_release(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" :: "l"(p), "r"(v) : "memory");
}

template <class Tensor4>
CUTE_DEVICE auto head_view(Tensor4 const& m4, int head, int batch, int row_offset) {
  using namespace cute;
  // (rows, dim) of one head; varlen sequences start `row_offset` rows into the packed tensor.
  return domain_offset(make_coord(row_offset, _0{}), m4(_, _, head, batch));
}

// Whether key `key` (of this sequence) is visible from query row `row`
// (bottom-right aligned masks, as the forward); keys past seqlen_k never are.
template <class T>
CUTE_DEVICE bool bwd_visible(cd42_attn_bwd_args const& a, int key, int row, int seqlen_k, int off) {
  bool ok = key < seqlen_k;
  if constexpr (T::kHasWindow) ok &= key <= row + off + a.window_right && key >= row + off - a.window_left;
  return ok;
}

// Whether every (key, row) of the tile [n0, n0 + N) x [m0, m0 + M) is
// visible, so P^T needs no per-element mask (a causal tile off the diagonal,
// any tile of a key block inside seqlen_k): its two extreme corners are.
// Rows past seqlen_q need no test either way (their LSE is +inf).
template <class T>
CUTE_DEVICE bool bwd_tile_unmasked(cd42_attn_bwd_args const& a, int n0, int m0, int seqlen_k, int off) {
  bool ok = n0 + T::kBlockN <= seqlen_k;
  if constexpr (T::kHasWindow) {
    ok &= n0 + T::kBlockN - 1 <= m0 + off + a.window_right;     // last key, first row
    ok &= n0 >= m0 + T::kBlockM - 1 + off - a.window_left;      // first key, last row
  }
  return ok;
}

// exp2 argument of a raw score (before the row's LSE is subtracted); with
// softcap also 1 - tanh^2, the factor dS picks up. Softcap recomputes the
// forward's approximate tanh, so P matches the forward's LSE.
template <class T>
CUTE_DEVICE float bwd_logit_log2(typename T::Params const& p, float s, float& cap_grad) {
  if constexpr (T::kSoftcap) {
    float const t = fast_tanh(s * p.softcap_in);
    cap_grad = 1.f - t * t;
    return t * p.softcap_log2;
  } else {
    return s * p.scale_log2;
  }
}

// Values i..i+3 (i % 4 == 0) of a 64 x N wgmma accumulator fragment sit at
// (m, n), (m, n+1), (m+8, n), (m+8, n+1): the S^T / dP^T tiles' query rows
// come in adjacent pairs, so each pair's row statistics are one 8-byte load.
template <class Frag>
CUTE_DEVICE constexpr void assert_c_fragment_quads(Frag const&) {
  static_assert(decltype(cute::size(Frag{}))::value % 4 == 0, "64 x N accumulator fragment: values in quads");
}

// P^T from S^T, both variants' first elementwise step: masked elements
// exactly 0 (rows past seqlen_q have lse_log2 = +inf, so their P is 0
// without a test); with softcap also 1 - tanh^2 into tCap. tC holds each
// element's (key, row) within the tile. P^T is computed in place in float,
// then converted in pairs.
template <class T, bool Masked, class FragS, class FragP, class FragCap, class Coords>
CUTE_DEVICE void bwd_probs_impl(typename T::Params const& p, FragS& tS, FragP& tP, FragCap& tCap, Coords const& tC,
                                float const* s_lse, int n0, int m0, int seqlen_k, int off) {
  using namespace cute;
  assert_c_fragment_quads(tS);
  CUTE_UNROLL
  for (int i = 0; i < size(tS); i += 4) {
    int const r = get<1>(tC(i));
    float2 const lse = *reinterpret_cast<float2 const*>(s_lse + r);
    CUTE_UNROLL
    for (int j = 0; j < 4; ++j) {
      bool const ok = !Masked || bwd_visible<T>(p.args, n0 + get<0>(tC(i + j)), m0 + r + (j & 1), seqlen_k, off);
      float cap_grad;
      float const logit_log2 = bwd_logit_log2<T>(p, tS(i + j), cap_grad);
      if constexpr (T::kSoftcap) tCap(i + j) = static_cast<typename FragCap::value_type>(cap_grad);
      tS(i + j) = ok ? fast_exp2(logit_log2 - ((j & 1) ? lse.y : lse.x)) : 0.f;
    }
  }
  convert_pairs(tS, tP);
}

// The per-element mask only where the tile needs one (a warp-uniform branch):
// off the causal diagonal it was ~4 integer ops per element on the path
// from S^T to the dS^T barrier. (Softcap keeps one copy: two spill there.)
template <class T, class FragS, class FragP, class FragCap, class Coords>
CUTE_DEVICE void bwd_probs(typename T::Params const& p, FragS& tS, FragP& tP, FragCap& tCap, Coords const& tC,
                           float const* s_lse, int n0, int m0, int seqlen_k, int off) {
  if (!T::kSoftcap && bwd_tile_unmasked<T>(p.args, n0, m0, seqlen_k, off)) {
    bwd_probs_impl<T, false>(p, tS, tP, tCap, tC, s_lse, n0, m0, seqlen_k, off);
  } else {
    bwd_probs_impl<T, true>(p, tS, tP, tCap, tC, s_lse, n0, m0, seqlen_k, off);
  }
}

// dS^T = P^T (dP^T - dsum) [x (1 - tanh^2)], from the rounded P^T the dV
// GEMM sees; computed in place in tdP, then converted (as P^T above). tCap
// may be tdS itself (all of tCap is read before tdS is written).
template <class T, class FragdP, class FragP, class FragCap, class FragdS, class Coords>
CUTE_DEVICE void bwd_dscores(FragdP& tdP, FragP const& tP, FragCap const& tCap, FragdS& tdS, Coords const& tC,
                             float const* s_dsum) {
  using namespace cute;
  assert_c_fragment_quads(tdP);
  CUTE_UNROLL
  for (int i = 0; i < size(tdP); i += 4) {
    float2 const dsum = *reinterpret_cast<float2 const*>(s_dsum + get<1>(tC(i)));
    CUTE_UNROLL
    for (int j = 0; j < 4; ++j) {
      float ds = static_cast<float>(tP(i + j)) * (tdP(i + j) - ((j & 1) ? dsum.y : dsum.x));
      if constexpr (T::kSoftcap) ds *= static_cast<float>(tCap(i + j));
      tdP(i + j) = ds;
    }
  }
  convert_pairs(tdP, tdS);
}

// dK (scaled: S = scale * Q K^T) and dV from the dK/dV MMA's accumulators,
// through shared memory: the fragments go to a [kBlockN][D] tile as 4-byte
// pairs (16-byte chunks XOR-swizzled by the row's low bits, so a warp's
// pair stores hit 32 different banks), then every consumer thread copies
// whole 16-byte row chunks to global memory, rows past seqlen_k skipped.
// (Stored as 2-byte scalars straight from the fragments, a sector carried 8
// useful bytes of 32 and the epilogue took ~7% of the kernel's warp samples
// at S = 4096, D = 128.) dk / dv are contiguous (bwd_impl allocates them),
// so their rows are 16-byte aligned. The addressing is rebuilt from blockIdx
// here rather than kept live across the main loop (it costs registers
// there). The tiles are staged in the Q and dO buffers, after a barrier
// (barrier_id, over both consumer warpgroups) that each warpgroup reaches
// once its last wgmmas, which read those buffers, have retired.
template <class T, class FragdK, class FragdV>
CUTE_DEVICE void bwd_store_dk_dv_staged(cd42_attn_bwd_args const& a, typename T::SharedStorage& ss,
                                        FragdK const& tdKrdK, FragdV const& tdVrdV, int tidx, int barrier_id) {
  using namespace cute;
  using Element = typename T::Element;
  static_assert(sizeof(ss.Q) >= T::kBlockN * T::kHeadDim * sizeof(Element), "dK stages in the Q buffers");
  Element* sdK = reinterpret_cast<Element*>(ss.Q.begin());
  Element* sdV = reinterpret_cast<Element*>(ss.dO.begin());
  cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, barrier_id);
  constexpr int kChunks = T::kHeadDim / 8;  // 16-byte chunks per row
  constexpr int kSwizzle = kChunks % 8 == 0 ? 7 : 3;  // chunk ^ (row & kSwizzle) stays inside the row
  static_assert(kChunks % (kSwizzle + 1) == 0, "swizzle must permute chunks within a row");
  auto slot = [](int row, int col) { return row * T::kHeadDim + (((col >> 3) ^ (row & kSwizzle)) << 3) + (col & 7); };
  {
    typename T::TiledMmadKV mma_dkv;
    Tensor tC = mma_dkv.get_thread_slice(tidx).partition_C(
        make_identity_tensor(Shape<Int<T::kBlockN>, Int<T::kHeadDim>>{}));
    static_assert(decltype(size(tdKrdK))::value % 2 == 0, "accumulator values come in column pairs");
    CUTE_UNROLL
    for (int i = 0; i < size(tdKrdK); i += 2) {  // values i, i+1 sit at (row, col), (row, col + 1)
      int const at = slot(get<0>(tC(i)), get<1>(tC(i)));
      *reinterpret_cast<uint32_t*>(sdK + at) =
          pack_pair<Element>(tdKrdK(i) * a.softmax_scale, tdKrdK(i + 1) * a.softmax_scale);
      *reinterpret_cast<uint32_t*>(sdV + at) = pack_pair<Element>(tdVrdV(i), tdVrdV(i + 1));
    }
  }
  cutlass::arch::NamedBarrier::sync(T::kConsumerThreads, barrier_id);
  BwdTile const tile = BwdTileScheduler(a).initial_work();
  int const b = tile.batch, h = tile.head_kv;
  BwdSeq<T> const seq(a, b, a.heads_q);  // (varlen: batch strides are 0, rows start at k_offset)
  Element* dk = static_cast<Element*>(a.dk) + int64_t(b) * a.dk_batch_stride + int64_t(h) * a.dk_head_stride +
                int64_t(seq.k_offset) * a.dk_row_stride;
  Element* dv = static_cast<Element*>(a.dv) + int64_t(b) * a.dv_batch_stride + int64_t(h) * a.dv_head_stride +
                int64_t(seq.k_offset) * a.dv_row_stride;
  int const rows = min(T::kBlockN, seq.seqlen_k - tile.n_block * T::kBlockN);
  static_assert(T::kBlockN * kChunks % T::kConsumerThreads == 0, "whole passes over the tile");
  CUTE_UNROLL
  for (int pass = 0; pass < T::kBlockN * kChunks / T::kConsumerThreads; ++pass) {
    int const j = pass * T::kConsumerThreads + tidx;
    int const row = j / kChunks, c = j % kChunks;
    if (row < rows) {
      int const at = slot(row, c * 8);
      int64_t const key = tile.n_block * T::kBlockN + row;
      *reinterpret_cast<uint4*>(dk + key * a.dk_row_stride + c * 8) = *reinterpret_cast<uint4 const*>(sdK + at);
      *reinterpret_cast<uint4*>(dv + key * a.dv_row_stride + c * 8) = *reinterpret_cast<uint4 const*>(sdV + at);
    }
  }
}

// Thread-dependent addressing (smem slots, fragment coordinates) is rebuilt
// from a freshly read thread index where it is used instead of being
// hoisted out of the main loop: kept live it costs registers the loop needs.
CUTE_DEVICE int fresh_consumer_tidx() {
  int t;
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
  return t - kWarpGroupThreads;
}

}  // namespace cd42::attn
