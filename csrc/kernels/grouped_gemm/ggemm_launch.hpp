// Host side of the grouped GEMM: argument checks, TMA descriptors, launch.
//
// The caller passes the extents of the (rows, K, batch) views of A, B and C
// (see ggemm_traits.hpp) and the element strides of each view's strided
// dimension and batch. Everything TMA would reject (unaligned base, strides
// not multiples of 16 bytes) is refused here as kBadArgument: CuTe only
// prints when cuTensorMapEncodeTiled fails and would go on with a garbage
// descriptor. The Python layer checks the same first, with friendlier text.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "cute/abi.h"
#include "kernels/grouped_gemm/ggemm_kernel.hpp"

namespace cd42::ggemm {

inline bool tma_ok(void const* ptr, int64_t stride_elems, int elem_bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && stride_elems > 0 && (stride_elems * elem_bytes) % 16 == 0 &&
         stride_elems * elem_bytes < (int64_t(1) << 40);
}

template <class T>
int launch(void const* a, void const* b, void* c, int const* offs, int64_t M, int64_t N, int64_t K, int64_t G,
           int64_t lda, int64_t a_bs, int64_t ldb, int64_t b_bs, int64_t ldc, int64_t c_bs, int zero_tail,
           int num_sms, cudaStream_t stream) {
  using E = typename T::Element;
  constexpr int eb = sizeof(E);
  constexpr int64_t kMax = INT32_MAX;
  if (M < 0 || N < 0 || K < 0 || G <= 0 || M > kMax || N > kMax || K > kMax || G > kMax) {
    return set_error(kBadArgument, "grouped_gemm: M, N, K must be in [0, 2^31) and groups in [1, 2^31)");
  }
  if ((T::kMode == Ragged::kNone) != (offs == nullptr)) {
    return set_error(kBadArgument, "grouped_gemm: offsets are required exactly for the ragged forms");
  }
  if (M == 0 || N == 0) return kOk;  // no output element
  if (!tma_ok(a, lda, eb) || !tma_ok(b, ldb, eb) || !tma_ok(c, ldc, eb) || !tma_ok(a, a_bs, eb) ||
      !tma_ok(b, b_bs, eb) || !tma_ok(c, c_bs, eb)) {
    return set_error(kBadArgument,
                     "grouped_gemm: TMA needs 16-byte aligned base pointers and strides that are multiples of 16 bytes");
  }
  if (num_sms <= 0) return set_error(kBadArgument, "grouped_gemm: num_sms must be positive");

  int const ga = T::kMode == Ragged::kNone || T::kMode == Ragged::kN ? int(G) : 1;
  int const gb = T::kMode == Ragged::kNone || T::kMode == Ragged::kM ? int(G) : 1;
  int const gc = T::kMode == Ragged::kNone || T::kMode == Ragged::kK ? int(G) : 1;
  // K == 0 (or every ragged-K group empty): every tile stores zeros, but the
  // descriptors still need a valid extent; TMA never reads it.
  int const k_desc = K > 0 ? int(K) : 1;
  GroupedProblem prob{int(M), int(N), int(K), int(G),
                      int((M + T::kTileM - 1) / T::kTileM), int((N + T::kTileN - 1) / T::kTileN),
                      offs, (T::kMode == Ragged::kM || T::kMode == Ragged::kN) && zero_tail ? 1 : 0,
                      c, ldc, c_bs};
  GroupedParams<T> p{T::make_tma_a(static_cast<E const*>(a), int(M), k_desc, ga, lda, a_bs),
                     T::make_tma_b(static_cast<E const*>(b), int(N), k_desc, gb, ldb, b_bs),
                     T::make_tma_c(static_cast<E*>(c), int(M), int(N), gc, ldc, c_bs), prob};

  int64_t const tiles = GroupedScheduler<T>::max_tiles(prob);
  if (tiles <= 0) return kOk;
  if (tiles > kMax) return set_error(kBadArgument, "grouped_gemm: more than 2^31 work tiles");
  static int smem_status = raise_smem_limit(grouped_gemm_kernel<T>, T::kSmemBytes, "grouped_gemm");
  if (smem_status != kOk) smem_status = raise_smem_limit(grouped_gemm_kernel<T>, T::kSmemBytes, "grouped_gemm");
  if (smem_status != kOk) return smem_status;
  dim3 grid(GroupedScheduler<T>::grid_size(prob, num_sms));
  grouped_gemm_kernel<T><<<grid, T::kThreads, T::kSmemBytes, stream>>>(p);
  return check_launch("grouped_gemm launch");
}

}  // namespace cd42::ggemm

// The exported entry of a generated grouped-GEMM object: one Traits per object.
#define CD42_DEFINE_GROUPED_GEMM_EXPORTS(Traits)                                                             \
  CD42_EXPORT int cd42_grouped_gemm_launch(void const* a, void const* b, void* c, int const* offs, int64_t M, \
                                           int64_t N, int64_t K, int64_t G, int64_t lda, int64_t a_bs,        \
                                           int64_t ldb, int64_t b_bs, int64_t ldc, int64_t c_bs, int zero_tail,   \
                                           int num_sms, void* stream) {                                                  \
    return cd42::ggemm::launch<Traits>(a, b, c, offs, M, N, K, G, lda, a_bs, ldb, b_bs, ldc, c_bs, zero_tail, \
                                       num_sms,                                                               \
                                       static_cast<cudaStream_t>(stream));                                    \
  }                                                                                                           \
  CD42_EXPORT int cd42_grouped_gemm_smem_bytes() { return Traits::kSmemBytes; }
