// fp32 -> 16-bit conversion in pairs, shared by the forward's O epilogue and
// the backward's P^T / dS^T / dK / dV steps: one cvt.rn.{bf16,f16}x2 (F2FP)
// per two values. Per-element static_casts came out as one F2F each (a
// quarter-rate pipe the exp2s need too) where the floats were computed under
// a mask predicate.
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/numeric_conversion.h>

namespace cd42::attn {

// (lo, hi) as one 32-bit word, lo in the low half (lower address).
template <class Element>
CUTE_DEVICE uint32_t pack_pair(float lo, float hi) {
  cutlass::NumericArrayConverter<Element, float, 2, cutlass::FloatRoundStyle::round_to_nearest> conv;
  cutlass::Array<float, 2> in;
  in[0] = lo;
  in[1] = hi;
  cutlass::Array<Element, 2> out = conv(in);
  return reinterpret_cast<uint32_t const&>(out);
}

// float fragment -> 16-bit fragment of the same register order.
template <class FragF, class FragH>
CUTE_DEVICE void convert_pairs(FragF const& src, FragH& dst) {
  using namespace cute;
  using Element = typename FragH::value_type;
  Tensor dst2 = recast<uint32_t>(dst);
  CUTE_UNROLL
  for (int i = 0; i < size(dst2); ++i) dst2(i) = pack_pair<Element>(src(2 * i), src(2 * i + 1));
}

}  // namespace cd42::attn
