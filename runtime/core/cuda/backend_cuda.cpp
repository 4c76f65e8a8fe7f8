// The CUDA backend: one device, one stream, cuBLAS/cuBLASLt handles bound to that stream.
//
// Contract:
//   make_cuda_backend(opts)  sets device opts.device_index (checked against the device count),
//                            creates the allocators, a non-blocking stream, a cuBLAS handle on
//                            it (default math: plain fp32 FMA, no TF32, so results match the
//                            CPU backend), a cuBLASLt handle and a 32 MiB workspace from the
//                            device allocator, given to cuBLAS with cublasSetWorkspace (after
//                            cublasSetStream, which resets it), so cuBLAS allocates nothing of
//                            its own; the kernels' scratch (kernels/cuda/common.cuh) also
//                            comes from the device allocator.
//   allocator()              caching cudaMalloc allocator (cuda_allocator.h): every device
//                            byte of the backend; peak/current count the workspace too.
//   host_allocator()         caching pinned (cudaMallocHost) allocator.
//   zero(t)                  cudaMemsetAsync on the stream (memset for a host tensor).
//   copy(dst, src)           H2D, D2H, D2D, H2H by the tensors' devices; cudaMemcpyAsync on the
//                            stream. Whenever host memory is involved the call returns only
//                            after the copy completed, so the host buffer may be reused or
//                            freed at once (pinned staging blocks are recycled by the cache);
//                            D2D stays asynchronous in stream order.
//   synchronize()            waits for the stream.
//   cuda_device_count()      0 (never throws) when no driver or device is present.
// Calls made from a thread other than the one that built the backend first select its device.
#include <cuda_runtime.h>

#include <cstring>
#include <memory>

#include "runtime/core/backend.h"
#include "runtime/core/cuda/cuda_allocator.h"
#include "runtime/core/cuda/cuda_context.h"
#include "runtime/core/error.h"

namespace tandem {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

const char* copy_kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToDevice: return "H2D";
    case cudaMemcpyDeviceToHost: return "D2H";
    case cudaMemcpyDeviceToDevice: return "D2D";
    case cudaMemcpyHostToHost: return "H2H";
    default: return "default";
  }
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& opts) {
    int count = 0;
    TANDEM_CUDA_CHECK(cudaGetDeviceCount(&count));
    TANDEM_CHECK(opts.device_index >= 0 && opts.device_index < count,
                 "cuda device_index {} out of range: {} device(s) visible", opts.device_index,
                 count);
    threads_ = opts.threads > 0 ? opts.threads : 1;
    ctx_.device = opts.device_index;
    try {
      TANDEM_CUDA_CHECK(cudaSetDevice(ctx_.device));
      device_alloc_ = std::make_unique<CudaDeviceAllocator>(CudaDeviceMemory{ctx_.device},
                                                            default_device_cache_limit(ctx_.device));
      host_alloc_ = std::make_unique<CudaPinnedHostAllocator>(CudaPinnedMemory{},
                                                              default_pinned_cache_limit());
      ctx_.allocator = device_alloc_.get();
      cudaDeviceProp prop{};
      TANDEM_CUDA_CHECK(cudaGetDeviceProperties(&prop, ctx_.device));
      ctx_.sm_count = prop.multiProcessorCount;
      device_name_ = prop.name;
      cc_major_ = prop.major;
      cc_minor_ = prop.minor;
      TANDEM_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking));
      TANDEM_CUBLAS_CHECK(cublasCreate(&ctx_.cublas));
      TANDEM_CUBLAS_CHECK(cublasSetStream(ctx_.cublas, ctx_.stream));
      // Plain fp32: CUBLAS_DEFAULT_MATH never uses TF32 for cublasSgemm.
      TANDEM_CUBLAS_CHECK(cublasSetMathMode(ctx_.cublas, CUBLAS_DEFAULT_MATH));
      TANDEM_CUBLAS_CHECK(cublasSetPointerMode(ctx_.cublas, CUBLAS_POINTER_MODE_HOST));
      TANDEM_CUBLAS_CHECK(cublasLtCreate(&ctx_.cublaslt));
      ctx_.workspace = device_alloc_->allocate(kWorkspaceBytes);
      ctx_.workspace_bytes = kWorkspaceBytes;
      // After cublasSetStream, which resets the handle to cuBLAS's own workspace pool.
      TANDEM_CUBLAS_CHECK(cublasSetWorkspace(ctx_.cublas, ctx_.workspace, ctx_.workspace_bytes));
    } catch (...) {
      destroy();
      throw;
    }
  }

  ~CudaBackend() override { destroy(); }

  DeviceKind kind() const override { return DeviceKind::CUDA; }
  std::string name() const override {
    return fmt::format("cuda:{} ({}, sm_{}{}, {} SMs)", ctx_.device, device_name_, cc_major_,
                       cc_minor_, ctx_.sm_count);
  }
  Allocator& allocator() override { return *device_alloc_; }
  Allocator& host_allocator() override { return *host_alloc_; }
  CudaContext* cuda() override { return &ctx_; }

  void zero(Tensor& t) override {
    TANDEM_CHECK(t.defined(), "cuda backend asked to zero an undefined tensor");
    if (t.nbytes() == 0) return;
    if (t.is_cpu()) {
      std::memset(t.raw(), 0, t.nbytes());
      return;
    }
    select_device();
    TANDEM_CUDA_CHECK(cudaMemsetAsync(t.raw(), 0, t.nbytes(), ctx_.stream));
  }

  void copy(Tensor& dst, const Tensor& src) override {
    TANDEM_CHECK(dst.defined() && src.defined(), "copy {} <- {}", dst.describe(), src.describe());
    TANDEM_CHECK(dst.nbytes() == src.nbytes() && dst.dtype() == src.dtype(), "copy {} <- {}",
                 dst.describe(), src.describe());
    const size_t n = src.nbytes();
    if (n == 0 || dst.raw() == src.raw()) return;
    const bool dh = dst.is_cpu(), sh = src.is_cpu();
    if (dh && sh) {
      std::memcpy(dst.raw(), src.raw(), n);
      return;
    }
    cudaMemcpyKind kind = dh ? cudaMemcpyDeviceToHost
                             : (sh ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
    select_device();
    cudaError_t e = cudaMemcpyAsync(dst.raw(), src.raw(), n, kind, ctx_.stream);
    TANDEM_CHECK(e == cudaSuccess, "cudaMemcpyAsync {} of {} bytes ({} <- {}): {}",
                 copy_kind_name(kind), n, dst.describe(), src.describe(), cudaGetErrorString(e));
    if (dh || sh) TANDEM_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  }

  void synchronize() override {
    select_device();
    TANDEM_CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
  }

 private:
  void select_device() {
    int cur = -1;
    TANDEM_CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != ctx_.device) TANDEM_CUDA_CHECK(cudaSetDevice(ctx_.device));
  }

  // Releases what exists, in dependency order (queued work, handles, workspace, allocators,
  // stream); safe on a partly built backend. Never throws.
  void destroy() noexcept {
    (void)cudaSetDevice(ctx_.device);
    if (ctx_.stream) (void)cudaStreamSynchronize(ctx_.stream);
    if (ctx_.cublaslt) (void)cublasLtDestroy(ctx_.cublaslt);
    if (ctx_.cublas) (void)cublasDestroy(ctx_.cublas);
    if (ctx_.workspace) {
      try {
        device_alloc_->deallocate(ctx_.workspace, ctx_.workspace_bytes);
      } catch (...) {  // cannot happen: the workspace came from this allocator
      }
    }
    host_alloc_.reset();
    device_alloc_.reset();  // releases the cache (cudaFree)
    if (ctx_.stream) (void)cudaStreamDestroy(ctx_.stream);
    ctx_ = CudaContext{};
  }

  CudaContext ctx_;
  std::string device_name_;
  int cc_major_ = 0, cc_minor_ = 0;
  std::unique_ptr<CudaDeviceAllocator> device_alloc_;
  std::unique_ptr<CudaPinnedHostAllocator> host_alloc_;
};

}  // namespace

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device: not an error for callers
      return 0;
    }
    return n;
  }();
  return count;
}

std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts) {
  return std::make_unique<CudaBackend>(opts);
}

}  // namespace tandem
