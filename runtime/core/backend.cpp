// Backend selection and the CPU backend.
#include "runtime/core/backend.h"

#include <omp.h>

#include <cstring>
#include <thread>

#include "runtime/core/caching_allocator.h"

extern "C" void openblas_set_num_threads(int);

namespace tandem {

#ifdef TANDEM_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(const BackendOptions& opts);  // cuda/backend_cuda.cpp
#else
int cuda_device_count() { return 0; }
#endif

Tensor Backend::empty(Shape shape, DType dtype) {
  return Tensor::allocate(allocator(), kind(), std::move(shape), dtype);
}

Tensor Backend::zeros(Shape shape, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  zero(t);
  return t;
}

Tensor Backend::host_empty(Shape shape, DType dtype) {
  return Tensor::allocate(host_allocator(), DeviceKind::CPU, std::move(shape), dtype);
}

namespace {

int g_threads = 1;  // mirror of what set_cpu_threads applied (process-wide by nature of OpenMP)

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) {
    if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
    threads_ = threads < 1 ? 1 : threads;
    set_cpu_threads(threads_);
  }
  DeviceKind kind() const override { return DeviceKind::CPU; }
  std::string name() const override { return fmt::format("cpu ({} threads)", threads_); }
  Allocator& allocator() override { return alloc_; }
  Allocator& host_allocator() override { return alloc_; }
  void zero(Tensor& t) override {
    TANDEM_CHECK(t.is_cpu(), "cpu backend asked to zero a {} tensor", device_name(t.device()));
    std::memset(t.raw(), 0, t.nbytes());
  }
  void copy(Tensor& dst, const Tensor& src) override {
    TANDEM_CHECK(dst.is_cpu() && src.is_cpu(), "cpu backend copy {} <- {}", dst.describe(),
                 src.describe());
    TANDEM_CHECK(dst.nbytes() == src.nbytes() && dst.dtype() == src.dtype(), "copy {} <- {}",
                 dst.describe(), src.describe());
    if (dst.raw() != src.raw()) std::memcpy(dst.raw(), src.raw(), src.nbytes());
  }
  void synchronize() override {}

 private:
  CachingHostAllocator alloc_{AlignedHostMemory{}, default_host_cache_limit()};
};

}  // namespace

void set_cpu_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cpu_threads() { return g_threads; }

bool cuda_compiled() {
#ifdef TANDEM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef TANDEM_HAVE_CUDA
  return cuda_device_count() > 0;
#else
  return false;
#endif
}

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

std::unique_ptr<Backend> make_backend(const BackendOptions& opts) {
  std::string dev = opts.device;
  if (dev == "auto") dev = cuda_available() ? "cuda" : "cpu";
  if (dev == "cpu") return make_cpu_backend(opts.threads);
  if (dev == "cuda") {
#ifdef TANDEM_HAVE_CUDA
    TANDEM_CHECK(cuda_available(), "device 'cuda' requested but no CUDA device is visible");
    return make_cuda_backend(opts);
#else
    throw Error("device 'cuda' requested but this build has no CUDA backend (TANDEM_CUDA=OFF)");
#endif
  }
  throw Error(fmt::format("unknown device '{}' (expected cpu, cuda or auto)", opts.device));
}

}  // namespace tandem
