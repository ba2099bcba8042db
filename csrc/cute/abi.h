// C ABI shared by every JIT-built kernel object.
//
// A per-config shared object exports plain C functions only (no torch headers,
// no C++ types across the boundary) so it is independent of the torch version
// and loads with ctypes. Launch functions return 0 on success or a nonzero
// code; cd42_last_error() then holds a readable message for that thread.
// Argument structs are declared with cute/abi_layout.h, which exports each
// field's offset and size for the load-time check against the ctypes mirrors
// (kept apart from this header so a CPU test compiles it without CUDA).
#pragma once

#include <cstdio>
#include <cuda_runtime.h>

#define CD42_EXPORT extern "C" __attribute__((visibility("default")))

namespace cd42 {

// Codes above cudaError_t's range for failures detected on the host side.
enum HostError : int {
  kOk = 0,
  kBadArgument = 10001,   // shape/stride/alignment the kernel cannot take
  kTmaDescriptor = 10002, // cuTensorMapEncode rejected the tensor
};

inline char* last_error_buffer() {
  static thread_local char buf[512];
  return buf;
}

inline int set_error(int code, const char* what) {
  std::snprintf(last_error_buffer(), 512, "%s", what);
  return code;
}

// Checks the launch itself (bad config, too much shared memory...). Kernel
// faults surface asynchronously at the next synchronising call, as in torch.
inline int check_launch(const char* where) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    std::snprintf(last_error_buffer(), 512, "%s: %s (%s)", where,
                  cudaGetErrorString(err), cudaGetErrorName(err));
    return static_cast<int>(err);
  }
  return kOk;
}

// Opts `kernel` into `smem_bytes` of dynamic shared memory. The attribute is
// per function, so each kernel object does this once per process (the
// caller keeps the result in a function-local static).
template <class Kernel>
inline int raise_smem_limit(Kernel kernel, int smem_bytes, const char* what) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (err == cudaSuccess) return kOk;
  char msg[256];
  std::snprintf(msg, sizeof msg, "%s: cudaFuncSetAttribute(%d bytes smem) failed: %s", what, smem_bytes,
                cudaGetErrorString(err));
  return set_error(int(err), msg);
}

}  // namespace cd42

// Every kernel object exports these two next to its launch function.
#define CD42_DEFINE_COMMON_EXPORTS(config_name)                       \
  CD42_EXPORT const char* cd42_config_name() { return config_name; } \
  CD42_EXPORT const char* cd42_last_error() { return cd42::last_error_buffer(); }
