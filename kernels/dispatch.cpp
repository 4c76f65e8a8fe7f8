// Error for CUDA kernels requested in a CPU-only build.
#include "kernels/dispatch.h"

namespace tandem::kernels {

void no_cuda(const char* kernel) {
  throw Error(fmt::format("kernel {} called on a CUDA backend, but this build has no CUDA", kernel));
}

}  // namespace tandem::kernels
