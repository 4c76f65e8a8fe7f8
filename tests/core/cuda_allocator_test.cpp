// The caching allocator's CUDA instantiations (device and pinned host memory): reuse, the
// 25% fit of device blocks, the bound, stats and the out-of-memory message, on the real
// memory kinds. Every test skips visibly ("no CUDA device") where no GPU is present.
#include <gtest/gtest.h>

#include <string>

#include "runtime/core/backend.h"

#ifdef TANDEM_HAVE_CUDA
#include <cuda_runtime.h>

#include "runtime/core/cuda/cuda_allocator.h"
#endif

namespace tandem {
namespace {

#ifdef TANDEM_HAVE_CUDA

class CudaAllocators : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_F(CudaAllocators, DeviceBlocksAreReusedWithinAQuarter) {
  CudaDeviceAllocator a(CudaDeviceMemory{0}, size_t{64} << 20);
  const size_t mib = size_t{1} << 20;
  void* p = a.allocate(4 * mib);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(cudaMemset(p, 0, 4 * mib), cudaSuccess) << "the block is usable device memory";
  a.deallocate(p, 4 * mib);
  EXPECT_EQ(a.stats().cached, 4 * mib);
  void* q = a.allocate(3 * mib + 512 * 1024);  // 3.5 MiB: the 4 MiB block is within 25%
  EXPECT_EQ(q, p);
  EXPECT_EQ(a.stats().current, 3 * mib + 512 * 1024);
  EXPECT_EQ(a.stats().reserved, 4 * mib);
  a.deallocate(q, 3 * mib + 512 * 1024);
  void* r = a.allocate(2 * mib);  // 4 MiB is more than 25% larger: a new block
  EXPECT_NE(r, p);
  EXPECT_EQ(a.stats().reserved, 6 * mib);
  a.deallocate(r, 2 * mib);
  a.set_cache_limit(3 * mib);  // the 4 MiB block was freed first: released; 2 MiB stays
  EXPECT_EQ(a.stats().cached, 2 * mib);
  a.release_cache();
  EXPECT_EQ(a.stats().reserved, 0u);
  EXPECT_EQ(a.stats().peak, 4 * mib);
}

TEST_F(CudaAllocators, DeviceOutOfMemoryReleasesRetriesAndSaysWhy) {
  CudaDeviceAllocator a(CudaDeviceMemory{0}, size_t{64} << 20);
  void* p = a.allocate(size_t{1} << 20);
  a.deallocate(p, size_t{1} << 20);
  const size_t absurd = size_t{1} << 50;  // 1 PiB
  try {
    a.allocate(absurd);
    FAIL() << "cudaMalloc of 1 PiB succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(fmt::format("cuda:0 device memory: out of memory allocating {} bytes", absurd)),
              std::string::npos) << m;
    EXPECT_NE(m.find("cudaMalloc: "), std::string::npos) << m;
    EXPECT_NE(m.find("released its 1048576 cached bytes (1 blocks)"), std::string::npos) << m;
    EXPECT_NE(m.find("the device has "), std::string::npos) << m;
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the failure left no sticky error";
  void* q = a.allocate(1024);  // the device still allocates
  EXPECT_NE(q, nullptr);
  a.deallocate(q, 1024);
}

TEST_F(CudaAllocators, PinnedBlocksAreExactFitAndCounted) {
  CudaPinnedHostAllocator a(CudaPinnedMemory{}, size_t{1} << 20);
  void* p = a.allocate(1000);  // block 1024
  cudaPointerAttributes attr{};
  ASSERT_EQ(cudaPointerGetAttributes(&attr, p), cudaSuccess);
  EXPECT_EQ(attr.type, cudaMemoryTypeHost) << "pinned (page-locked) host memory";
  EXPECT_EQ(a.stats().reserved, 1024u);
  a.deallocate(p, 1000);
  EXPECT_EQ(a.allocate(1024), p);  // same block size: reused
  void* q = a.allocate(960);       // block 960: exact fit only, so a new block
  EXPECT_NE(q, p);
  a.deallocate(p, 1024);
  a.deallocate(q, 960);
  EXPECT_EQ(a.stats().cached, 1984u);
  try {
    a.allocate(size_t{1} << 50);
    FAIL() << "cudaMallocHost of 1 PiB succeeded";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("pinned host memory: out of memory allocating"), std::string::npos) << m;
    EXPECT_NE(m.find("cudaMallocHost: "), std::string::npos) << m;
    EXPECT_NE(m.find("released its 1984 cached bytes (2 blocks)"), std::string::npos) << m;
  }
  EXPECT_EQ(a.stats().cached, 0u);
}

TEST_F(CudaAllocators, BackendCountsItsWorkspace) {
  auto be = make_backend(BackendOptions{.device = "cuda"});
  // The 32 MiB cuBLAS/cuBLASLt workspace is a block of the device allocator.
  EXPECT_GE(be->allocator().stats().current, size_t{32} << 20);
}

#else

TEST(CudaAllocators, NeedsACudaBuild) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace
}  // namespace tandem
