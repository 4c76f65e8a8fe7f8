// Test support: bitwise comparison of ckpt::HostTensor lists (names, shapes, bytes, in order).
// Header-only because tests/ has no library target.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "ckpt/safetensors.h"

namespace tandem::testing {

inline void expect_bitwise_equal(const std::vector<ckpt::HostTensor>& a, const std::vector<ckpt::HostTensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    EXPECT_EQ(a[k].name, b[k].name);
    EXPECT_EQ(a[k].shape, b[k].shape) << a[k].name;
    ASSERT_EQ(a[k].data.size(), b[k].data.size()) << a[k].name;
    EXPECT_EQ(std::memcmp(a[k].data.data(), b[k].data.data(), a[k].data.size() * 4), 0) << a[k].name;
  }
}

}  // namespace tandem::testing
