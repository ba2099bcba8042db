// Host side of the fused MoE up-projection: argument checks, TMA
// descriptors, launch. Rows (T*k) are the permuted (token, slot) pairs in
// routing order; gather_idx[p] is the token of row p; offs (E,) the experts'
// cumulative row ends. h (rows, F) and pre (rows, 2F) are fully written:
// rows past offs[E-1] (sentinel ids) get zeros.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "cute/abi.h"
#include "kernels/grouped_gemm/ggemm_launch.hpp"
#include "kernels/moe/moe_up_kernel.hpp"

namespace cd42::moe {

template <class T>
int launch(void const* x, void const* w, int const* gather_idx, int const* offs, void* h, void* pre, int64_t tokens,
           int64_t rows, int64_t H, int64_t F, int64_t E, int64_t ldx, int64_t ldw, int64_t ldh, int64_t ldpre,
           int num_sms, cudaStream_t stream) {
  using Elem = typename T::Element;
  constexpr int eb = sizeof(Elem);
  constexpr int64_t kMax = INT32_MAX;
  if (tokens < 0 || rows < 0 || H < 0 || F < 0 || E <= 0 || tokens > kMax || rows > kMax || H > kMax ||
      2 * F > kMax || 2 * E > kMax) {
    return set_error(kBadArgument, "moe_up_swiglu: sizes must be in [0, 2^31) and experts in [1, 2^30)");
  }
  if (offs == nullptr || gather_idx == nullptr) return set_error(kBadArgument, "moe_up_swiglu: offs and gather_idx are required");
  if (rows == 0 || F == 0) return kOk;  // no output element
  if (H % 8 || F % 8) return set_error(kBadArgument, "moe_up_swiglu: H and F must be multiples of 8 (16-byte rows)");
  if (H > 0 && (!ggemm::tma_ok(x, ldx, eb) || ldx < H)) {
    return set_error(kBadArgument, "moe_up_swiglu: x needs a 16-byte aligned base and row stride >= H, a multiple of 8");
  }
  if (!ggemm::tma_ok(h, ldh, eb) || !ggemm::tma_ok(pre, ldpre, eb) || ldh < F || ldpre < 2 * F ||
      (H > 0 && (!ggemm::tma_ok(w, ldw, eb) || ldw < H))) {
    return set_error(kBadArgument, "moe_up_swiglu: TMA needs 16-byte aligned bases and row strides that are "
                                   "multiples of 16 bytes (h >= F, pre >= 2F, w >= H)");
  }
  if (num_sms <= 0) return set_error(kBadArgument, "moe_up_swiglu: num_sms must be positive");

  int const k_desc = H > 0 ? int(H) : 1;  // H == 0: every tile stores zeros; TMA never reads w
  int64_t const ldw_desc = H > 0 ? ldw : 8;
  ggemm::GroupedProblem prob{int(rows), int(F), int(H), int(E), int((rows + T::kTileM - 1) / T::kTileM),
                             int((F + T::kHalfN - 1) / T::kHalfN), offs, /*zero_tail=*/1, h, ldh, 0};
  MoeUpParams<T> p{T::make_tma_w(static_cast<Elem const*>(w), int(F), k_desc, int(E), ldw_desc),
                   T::make_tma_out(static_cast<Elem*>(h), int(rows), int(F), 1, ldh, ldh * rows + 8),
                   T::make_tma_out(static_cast<Elem*>(pre), int(rows), int(2 * F), 1, ldpre, ldpre * rows + 8),
                   prob,
                   static_cast<Elem const*>(x), ldx, int(tokens), gather_idx,
                   static_cast<Elem*>(h), static_cast<Elem*>(pre), ldh, ldpre};

  using Sched = ggemm::GroupedScheduler<T>;
  int64_t const tiles = Sched::max_tiles(prob);
  if (tiles <= 0) return kOk;
  if (tiles > kMax) return set_error(kBadArgument, "moe_up_swiglu: more than 2^31 work tiles");
  static int smem_status = raise_smem_limit(moe_up_swiglu_kernel<T>, T::kSmemBytes, "moe_up_swiglu");
  if (smem_status != kOk) smem_status = raise_smem_limit(moe_up_swiglu_kernel<T>, T::kSmemBytes, "moe_up_swiglu");
  if (smem_status != kOk) return smem_status;
  dim3 grid(Sched::grid_size(prob, num_sms));
  moe_up_swiglu_kernel<T><<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  return check_launch("moe_up_swiglu launch");
}

}  // namespace cd42::moe

// The exported entry of a generated MoE up-projection object: one Traits per object.
#define CD42_DEFINE_MOE_UP_EXPORTS(Traits)                                                                         \
  CD42_EXPORT int cd42_moe_up_swiglu_launch(void const* x, void const* w, int const* gather_idx, int const* offs,  \
                                            void* h, void* pre, int64_t tokens, int64_t rows, int64_t H, int64_t F, \
                                            int64_t E, int64_t ldx, int64_t ldw, int64_t ldh, int64_t ldpre,        \
                                            int num_sms, void* stream) {                                            \
    return cd42::moe::launch<Traits>(x, w, gather_idx, offs, h, pre, tokens, rows, H, F, E, ldx, ldw, ldh, ldpre,  \
                                     num_sms, static_cast<cudaStream_t>(stream));                                  \
  }                                                                                                                 \
  CD42_EXPORT int cd42_moe_up_swiglu_smem_bytes() { return Traits::kSmemBytes; }
