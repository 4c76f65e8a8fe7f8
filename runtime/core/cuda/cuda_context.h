// CUDA state owned by one CudaBackend: device, stream, and library handles.
//
// Contract: every CUDA kernel and library call of a backend goes to `stream`; the handles
// are bound to it. Every device byte comes from `allocator` (the backend's counting, caching
// device allocator; its stream-ordered reuse rule is in runtime/core/caching_allocator.h),
// the cuBLAS/cuBLASLt `workspace` included. Checked-call macros keep file:line and the call
// text (error tier 2).
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>

#include "runtime/core/error.h"

namespace tandem {

class Allocator;

struct CudaContext {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  Allocator* allocator = nullptr;  // the backend's device allocator (kernels' scratch too)
  void* workspace = nullptr;       // cuBLAS (cublasSetWorkspace) and cuBLASLt workspace
  size_t workspace_bytes = 0;
  int sm_count = 0;
  // kernels/cuda/matmul_lt.cu's cache of cuBLASLt heuristic answers per GEMM configuration
  // (opaque here; made on first use, freed with the context).
  std::shared_ptr<void> lt_algo_cache;
};

}  // namespace tandem

#define TANDEM_CUDA_CHECK(call)                                                             \
  do {                                                                                      \
    cudaError_t tandem_e_ = (call);                                                         \
    if (tandem_e_ != cudaSuccess) [[unlikely]]                                              \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #call, cudaGetErrorString(tandem_e_)); \
  } while (0)

#define TANDEM_CUBLAS_CHECK(call)                                                     \
  do {                                                                                \
    cublasStatus_t tandem_s_ = (call);                                                \
    if (tandem_s_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                              \
      ::tandem::detail::throw_check(__FILE__, __LINE__, #call,                        \
                                    fmt::format("cublas status {}", (int)tandem_s_)); \
  } while (0)
