// Shared helpers for the tensor-level kernel entry points (kernels/<family>.cpp).
//
// Contract: `on_cpu(be)` says which implementation runs; CUDA entry points throw a clear
// error in builds without CUDA. Shape preconditions are checked once here, so the cpu/ and
// cuda/ implementations receive plain pointers and sizes.
#pragma once

#include "runtime/core/backend.h"
#include "runtime/core/error.h"

namespace tandem::kernels {

inline bool on_cpu(const Backend& be) { return be.kind() == DeviceKind::CPU; }

// Every tensor handed to a kernel must live where the backend computes.
inline void check_device(const Backend& be, const Tensor& t, const char* what) {
  TANDEM_CHECK(t.defined(), "{}: undefined tensor", what);
  TANDEM_CHECK(t.device() == be.kind(), "{}: tensor {} on a {} backend", what, t.describe(),
               device_name(be.kind()));
}

[[noreturn]] void no_cuda(const char* kernel);

}  // namespace tandem::kernels

#ifdef TANDEM_HAVE_CUDA
#define TANDEM_CUDA_DISPATCH(be, call) call
#define TANDEM_CUDA_CTX(be) (*(be).cuda())
#else
#define TANDEM_CUDA_DISPATCH(be, call) ::tandem::kernels::no_cuda(__func__)
#endif
