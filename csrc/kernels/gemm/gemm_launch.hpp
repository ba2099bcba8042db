// Host side of the GEMM: argument checks, TMA descriptors, launch.
//
// Everything that TMA would reject (unaligned base, row stride not a
// multiple of 16 bytes) is checked here and reported as kBadArgument, since
// CuTe only prints when cuTensorMapEncodeTiled fails and would go on with a
// garbage descriptor. The Python layer checks the same things first with
// friendlier messages; this is the last line of defence.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cuda_runtime.h>

#include "cute/abi.h"
#include "kernels/gemm/gemm_kernel.hpp"

namespace cd42::gemm {

inline bool tma_compatible(void const* ptr, int64_t row_stride_elems, int elem_bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && (row_stride_elems * elem_bytes) % 16 == 0 &&
         row_stride_elems > 0 && row_stride_elems * elem_bytes < (int64_t(1) << 40);
}

template <class T, class Scheduler = typename T::Scheduler>
int launch(void const* a, void const* b, void* c, int64_t M, int64_t N, int64_t K, int64_t lda,
           int64_t ldb, int64_t ldc, int num_sms, cudaStream_t stream) {
  using E = typename T::Element;
  constexpr int eb = sizeof(E);
  if (M <= 0 || N <= 0 || K <= 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX) {
    return set_error(kBadArgument, "gemm: M, N, K must be in [1, 2^31)");
  }
  if (!tma_compatible(a, lda, eb) || !tma_compatible(b, ldb, eb) || !tma_compatible(c, ldc, eb)) {
    return set_error(kBadArgument,
                     "gemm: TMA needs 16-byte aligned base pointers and row strides that are multiples of 16 bytes");
  }
  if (num_sms <= 0) return set_error(kBadArgument, "gemm: num_sms must be positive");

  typename T::Params p{
      T::make_tma_a(static_cast<E const*>(a), int(M), int(K), lda),
      T::make_tma_b(static_cast<E const*>(b), int(N), int(K), ldb),
      T::make_tma_c(static_cast<E*>(c), int(M), int(N), ldc),
      int(M), int(N), int(K),
      int((M + T::kTileM - 1) / T::kTileM), int((N + T::kTileN - 1) / T::kTileN)};

  // Once per process: the limit is a per-function attribute.
  auto* kernel = gemm_kernel<T, Scheduler>;
  static int smem_status = raise_smem_limit(kernel, T::kSmemBytes, "gemm");
  if (smem_status != kOk) smem_status = raise_smem_limit(kernel, T::kSmemBytes, "gemm");  // again: re-sets the message
  if (smem_status != kOk) return smem_status;
  dim3 grid(Scheduler::grid_size(p.tiles_m, p.tiles_n, num_sms));
  kernel<<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  return check_launch("gemm launch");
}

}  // namespace cd42::gemm

// The exported entry of a generated GEMM object: one Traits per object.
#define CD42_DEFINE_GEMM_EXPORTS(Traits)                                                                   \
  CD42_EXPORT int cd42_gemm_launch(void const* a, void const* b, void* c, int64_t M, int64_t N, int64_t K, \
                                   int64_t lda, int64_t ldb, int64_t ldc, int num_sms, void* stream) {    \
    return cd42::gemm::launch<Traits>(a, b, c, M, N, K, lda, ldb, ldc, num_sms,                          \
                                      static_cast<cudaStream_t>(stream));                                  \
  }                                                                                                        \
  CD42_EXPORT int cd42_gemm_smem_bytes() { return Traits::kSmemBytes; }
