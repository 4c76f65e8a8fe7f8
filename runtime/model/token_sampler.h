// TokenSampler: picks the next token of each row from vocabulary-sharded logits, without ever
// gathering a full row onto one rank (tp > 1 ranks each hold [R, V/tp] columns).
//
// Per row:
//   temperature < kMinSamplingTemperature (0 included): greedy argmax (ties: the lowest token
//                     id, so every layout agrees). Below 1e-6, 1/temperature would overflow
//                     (and the Gumbel noise no longer matters against logit gaps / temperature).
//   temperature >= kMinSamplingTemperature: z = logits / temperature, restricted to the top_k largest (top_k > 0)
//                     and then to the nucleus: the largest z-threshold whose kept
//                     probability mass is >= top_p (top_p < 1); then Gumbel-max sampling,
//                     argmax(z + g), with g = -log(-log u) and u a hash of (seed, step,
//                     global token id). A request's draws therefore depend only on its seed
//                     and its token index, not on the batch, the rank or the layout.
// Distributed: the top-k threshold comes from an all-gather of each rank's local k largest,
// the nucleus threshold from a bisection whose every probe sums masses with one all-reduce
// (all rows at once), the argmax from two all-reduces (max value, then lowest id with it).
// All ranks of the tp group call sample() together with identical rows.
//
// Contract: logits [R, local_vocab] on the backend; column j is global id vocab_begin + j;
// ids >= vocab (padding) are never chosen. Returns R token ids, the same on every tp rank.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/core/backend.h"

namespace tandem {

constexpr float kMinSamplingTemperature = 1e-6f;

struct SamplingParams {
  float temperature = 0.0f;  // 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
  int64_t step = 0;          // index of the token being drawn within its request
};

class TokenSampler {
 public:
  TokenSampler(Backend& be, Communicator& tp, int64_t vocab_begin, int64_t local_vocab,
               int64_t vocab);
  std::vector<int32_t> sample(const Tensor& logits, const std::vector<SamplingParams>& rows);

  // The Gumbel noise of (seed, step, id): exposed for tests.
  static float gumbel(uint64_t seed, int64_t step, int64_t id);

 private:
  // In-place reduction of a host vector across the tp group (staged through the device on
  // a GPU backend, where the group's communicator is NCCL).
  void all_reduce(std::vector<float>& v, ReduceOp op);
  std::vector<float> all_gather(const std::vector<float>& v);

  Backend& be_;
  Communicator& tp_;
  int64_t begin_, local_, valid_;  // valid_: columns of this shard below vocab
};

}  // namespace tandem
