// Online softmax over wgmma accumulator fragments (fp32, in registers).
//
// Fragment convention (PTX ISA, wgmma D layout for m64nNk16): thread t of a
// warpgroup holds, for value index i = c + 2*h + 4*b,
//   row = (t/32)*16 + (t%32)/4 + 8*h,   col = 2*(t%4) + c + 8*b.
// So each thread owns two rows (h = 0, 1) and the four threads of a quad
// (same t/4) share them: row reductions are two xor-shuffles.
//
// Scores are kept raw; `scale_log2` (softmax_scale * log2 e, or log2 e after
// softcap) is folded into the exp2 argument so one FFMA feeds each MUFU.EX2.
#pragma once

#include <cmath>
#include <cute/tensor.hpp>

namespace cd42::attn {

CUTE_DEVICE float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
}
CUTE_DEVICE float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  return x + __shfl_xor_sync(0xffffffff, x, 2);
}

CUTE_DEVICE float fast_tanh(float x) {
  float y;
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// exp2 as one MUFU.EX2. Plain exp2f (no --use_fast_math) adds a range test
// and two multiplies per call to keep subnormal results exact, which costs
// FP32 issue slots the softmax needs; results below 2^-126 flushing to zero
// is harmless for probabilities.
CUTE_DEVICE float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Value index of (column pair c, row half h, column block b) in a fragment.
CUTE_HOST_DEVICE constexpr int frag_index(int c, int h, int b) { return c + 2 * h + 4 * b; }

template <int BlockN, int HeadDim, bool SkipUnmovedRescale = true>
struct OnlineSoftmax {
  static constexpr int kColBlocksS = BlockN / 8;
  static constexpr int kColBlocksO = HeadDim / 8;
  float row_max[2];
  float row_sum[2];  // this thread's partial sums; quad-reduced in finalize()

  CUTE_DEVICE OnlineSoftmax() {
    CUTE_UNROLL
    for (int h = 0; h < 2; ++h) {
      row_max[h] = -INFINITY;
      row_sum[h] = 0.f;
    }
  }

  // With SkipUnmovedRescale (FlashAttention-4's conditional rescale) the
  // running max moves only when a row's new max exceeds it by more than
  // kStaleMaxLog2 after scaling, in log2 units. Below that, P is taken
  // against the stale max, so its values reach at most 2^8 = 256 (exact
  // enough in fp32, in range for bf16/fp16 P; the row sum and O stay
  // consistent with the max actually used), and O needs no rescale. Past
  // the first few blocks of a row the max rarely jumps that far, so most
  // blocks skip the O multiply (D/2 FMULs per thread). Without it the max
  // is exact and O is rescaled every block.
  static constexpr float kStaleMaxLog2 = 8.f;

  // S (raw scores, masked entries -inf) -> P = exp2(S*scale - max*scale) in
  // place. Returns, per row, the factor by which O must be rescaled for the
  // new running max (exactly 1 where a stale max stayed; the caller applies it
  // once the PV wgmma reading O has completed, so the exponentials overlap
  // that wgmma).
  template <class TensorS>
  CUTE_DEVICE void update(TensorS& S, float scale_log2, float correction[2]) {
    CUTE_UNROLL
    for (int h = 0; h < 2; ++h) {
      float m = row_max[h];
      CUTE_UNROLL
      for (int b = 0; b < kColBlocksS; ++b) {
        m = fmaxf(m, fmaxf(S(frag_index(0, h, b)), S(frag_index(1, h, b))));
      }
      m = quad_max(m);
      if constexpr (SkipUnmovedRescale) {
        // Quad-uniform (m is the quad's max). The first finite max always
        // moves it (also at softmax_scale 0); a row with nothing visible yet
        // keeps -inf.
        bool const moves =
            m > row_max[h] && (row_max[h] == -INFINITY || (m - row_max[h]) * scale_log2 > kStaleMaxLog2);
        correction[h] = moves ? fast_exp2(row_max[h] * scale_log2 - m * scale_log2) : 1.f;  // 0 on the first block
        if (moves) row_max[h] = m;
      } else {  // exact max: no test on the softmax's path where nothing is skipped
        correction[h] = fast_exp2(row_max[h] * scale_log2 - (m == -INFINITY ? 0.f : m * scale_log2));
        row_max[h] = m;
      }
      // A row with no visible key so far keeps max -inf: use 0 as the
      // exponent offset so exp2(-inf - 0) = 0 instead of NaN.
      float const m_scaled = row_max[h] == -INFINITY ? 0.f : row_max[h] * scale_log2;
      float sum = 0.f;
      CUTE_UNROLL
      for (int b = 0; b < kColBlocksS; ++b) {
        CUTE_UNROLL
        for (int c = 0; c < 2; ++c) {
          float& s = S(frag_index(c, h, b));
          s = fast_exp2(s * scale_log2 - m_scaled);
          sum += s;
        }
      }
      row_sum[h] = row_sum[h] * correction[h] + sum;
    }
  }

  // O *= correction per row; with SkipUnmovedRescale, skipped by a warp none
  // of whose rows moved its max (the common case, see kStaleMaxLog2).
  template <class TensorO>
  CUTE_DEVICE static void rescale(TensorO& O, float const correction[2]) {
    if constexpr (SkipUnmovedRescale) {
      if (!__any_sync(0xffffffff, correction[0] != 1.f || correction[1] != 1.f)) return;
    }
    CUTE_UNROLL
    for (int h = 0; h < 2; ++h) {
      CUTE_UNROLL
      for (int b = 0; b < kColBlocksO; ++b) {
        O(frag_index(0, h, b)) *= correction[h];
        O(frag_index(1, h, b)) *= correction[h];
      }
    }
  }

  // Normalises O and returns the natural-log LSE of each of the two rows;
  // rows that saw no key get O = 0 and LSE = +inf (FlashAttention's convention,
  // so the backward's exp(S - LSE) is 0 there).
  template <class TensorO>
  CUTE_DEVICE void finalize(TensorO& O, float scale, float lse[2]) {
    CUTE_UNROLL
    for (int h = 0; h < 2; ++h) {
      float const sum = quad_sum(row_sum[h]);
      bool const empty = sum == 0.f || sum != sum;
      float const inv = empty ? 0.f : 1.f / sum;
      lse[h] = empty ? INFINITY : row_max[h] * scale + logf(sum);
      CUTE_UNROLL
      for (int b = 0; b < kColBlocksO; ++b) {
        O(frag_index(0, h, b)) *= inv;
        O(frag_index(1, h, b)) *= inv;
      }
    }
  }
};

}  // namespace cd42::attn
