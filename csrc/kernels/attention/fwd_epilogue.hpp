// O epilogue of the attention forward: the normalised fp32 accumulator to the
// output dtype, two ways.
//
// - Through shared memory + one TMA store (configs with their own O buffer):
//   each thread converts a column pair with one cvt (F2FP) and writes it as
//   one 4-byte shared store. The pair stays inside one 16-byte swizzle chunk
//   (its column is even), so the swizzled address of its first element is
//   the pair's address.
// - Straight from registers to global memory, 4-byte row-predicated stores:
//   a varlen tile that ends inside its sequence (TMA would write into the
//   next sequence's rows), the configs whose O would have to reuse Q's
//   buffer (D=256), and D=64 (no barrier across the consumers, FwdTraits::
//   kSeparateO). At D=256, staging O in Q's buffer kept the next tile's Q
//   load waiting for this tile's O store to be read out of shared memory;
//   without staging, Q is released after the tile's last QK and the next Q
//   lands under the last PV and this epilogue.
#pragma once

#include <cute/tensor.hpp>

#include "kernels/attention/pack.hpp"
#include "kernels/attention/softmax.hpp"  // frag_index

namespace cd42::attn {

// tOsO: this thread's slice of the (swizzled) smem O tile, same value order
// as tOrO (frag_index).
template <class T, class FragO, class SmemO>
CUTE_DEVICE void store_o_smem(FragO const& tOrO, SmemO& tOsO) {
  using Element = typename T::Element;
  CUTE_UNROLL
  for (int h = 0; h < 2; ++h) {
    CUTE_UNROLL
    for (int b = 0; b < T::kHeadDim / 8; ++b) {
      uint32_t const pair = pack_pair<Element>(tOrO(frag_index(0, h, b)), tOrO(frag_index(1, h, b)));
      uint32_t const addr = cute::cast_smem_ptr_to_uint(&tOsO(frag_index(0, h, b)));
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(pair));
    }
  }
}

// o_rows: this (batch, head)'s first row of O (already offset by batch,
// head and, for varlen, the sequence start); row0/col0: the thread's first
// row in the tile and first column (softmax.hpp's convention).
template <class T, class FragO>
CUTE_DEVICE void store_o_global(FragO const& tOrO, typename T::Element* o_rows, int64_t row_stride, int m_start,
                                int row0, int col0, int seqlen_q) {
  using Element = typename T::Element;
  CUTE_UNROLL
  for (int h = 0; h < 2; ++h) {
    int const row = m_start + row0 + 8 * h;
    if (row < seqlen_q) {
      Element* orow = o_rows + int64_t(row) * row_stride + col0;
      CUTE_UNROLL
      for (int b = 0; b < T::kHeadDim / 8; ++b) {
        *reinterpret_cast<uint32_t*>(orow + 8 * b) =
            pack_pair<Element>(tOrO(frag_index(0, h, b)), tOrO(frag_index(1, h, b)));
      }
    }
  }
}

}  // namespace cd42::attn
