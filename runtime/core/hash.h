// Portable integer mixing shared by layout-independent initialisation and checkpoint checksums.
//
// Contract: splitmix64 is Steele, Lea and Flood's SplitMix64 finaliser applied to x + the
// golden-ratio increment; identical on every platform and compiler, so values derived from it
// (initial weights, checksums) do not depend on where they were computed.
#pragma once

#include <cstdint>

namespace tandem {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace tandem
