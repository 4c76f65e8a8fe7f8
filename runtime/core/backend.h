// Backend: where tensors live and kernels run (CPU or one CUDA device), chosen at run time.
//
// Contract: a Backend owns its allocator(s) and, for CUDA, its stream and library handles.
// It is an explicit object passed down to every kernel call (no global device state).
// Kernels in kernels/ dispatch on backend.kind(); a CUDA kernel is only ever called with a
// CUDA backend. host_allocator() hands out host memory suited for transfers (pinned on CUDA).
#pragma once

#include <memory>
#include <string>

#include "runtime/core/allocator.h"
#include "runtime/core/tensor.h"

namespace tandem {

struct CudaContext;  // defined in runtime/core/cuda/cuda_context.h (CUDA builds only)

struct BackendOptions {
  std::string device = "cpu";  // "cpu" | "cuda" | "auto" (cuda when a GPU is visible)
  int threads = 0;             // CPU threads for kernels/BLAS; 0 = all cores of this rank's share
  int device_index = 0;        // CUDA device ordinal
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind kind() const = 0;
  virtual std::string name() const = 0;
  virtual Allocator& allocator() = 0;
  // Host memory for staging and offload (pinned for CUDA, the main allocator for CPU).
  virtual Allocator& host_allocator() = 0;

  Tensor empty(Shape shape, DType dtype = DType::F32);
  Tensor zeros(Shape shape, DType dtype = DType::F32);
  Tensor host_empty(Shape shape, DType dtype = DType::F32);

  virtual void zero(Tensor& t) = 0;
  // Copies src into dst (same dtype and element count); either may be host or device.
  virtual void copy(Tensor& dst, const Tensor& src) = 0;
  // Waits until all queued work on this backend has finished.
  virtual void synchronize() = 0;
  virtual CudaContext* cuda() { return nullptr; }
  int threads() const { return threads_; }

 protected:
  int threads_ = 1;
};

// True when this build has CUDA and at least one device is visible.
bool cuda_available();
bool cuda_compiled();
int cuda_device_count();  // visible CUDA devices; 0 without CUDA (never throws)

std::unique_ptr<Backend> make_backend(const BackendOptions& opts);
std::unique_ptr<Backend> make_cpu_backend(int threads);

// Sets the thread count of OpenMP and OpenBLAS for this process (clamped to >= 1).
void set_cpu_threads(int n);
int cpu_threads();

}  // namespace tandem
