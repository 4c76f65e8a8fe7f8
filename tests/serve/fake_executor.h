// FakeExecutor: a one-rank StepExecutor (serve/step_executor.h) whose "model" reads each
// sequence's context back from a simulated KV cache — the tokens written to the slots the
// batch names, gathered through its block table — and returns next = model(context). A plan
// with a wrong block table, position or slot therefore changes the output, as it would on the
// real replica. step_seconds > 0 makes every step take that long (pacing tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "runtime/core/error.h"
#include "serve/step_executor.h"

namespace tandem::serve::testing {

// FNV-1a of the context, folded into [0, vocab).
inline int32_t hash_model(const std::vector<int32_t>& ctx, int32_t vocab) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : ctx) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
  return static_cast<int32_t>(h % static_cast<uint64_t>(vocab));
}

// The tokens `model` produces for `prompt` alone, greedy, n of them.
inline std::vector<int32_t> alone(const std::function<int32_t(const std::vector<int32_t>&)>& model,
                                  std::vector<int32_t> prompt, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(model(prompt));
    prompt.push_back(out.back());
  }
  return out;
}

class FakeExecutor : public StepExecutor {
 public:
  FakeExecutor(int64_t kv_blocks, int64_t block_tokens, std::function<int32_t(const std::vector<int32_t>&)> model)
      : slots_(static_cast<size_t>(kv_blocks * block_tokens), -1), block_tokens_(block_tokens),
        model_(std::move(model)) {}

  bool is_leader() const override { return true; }
  StepMessage exchange(const StepMessage* m) override {
    ++exchanges;
    commands.push_back(m->command);
    if (m->command == StepCommand::Refresh) ++refreshes;
    return *m;
  }
  std::vector<int32_t> run(const StepMessage& m) override {
    if (step_seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(step_seconds));
    const InferBatch& b = m.batch;
    for (size_t i = 0; i < b.tokens.size(); ++i) slots_.at(static_cast<size_t>(b.slots[i])) = b.tokens[i];
    std::vector<int32_t> out;
    for (int32_t row : b.logit_rows) {
      int64_t s = 0;
      while (b.q_start[s + 1] <= row) ++s;
      std::vector<int32_t> ctx;
      const int32_t len = b.positions[row] + 1;  // the context up to and including this row
      for (int32_t p = 0; p < len; ++p) {
        const int32_t block = b.block_table[s * b.max_blocks + p / block_tokens_];
        const int32_t t = slots_.at(static_cast<size_t>(block * block_tokens_ + p % block_tokens_));
        TANDEM_CHECK(t >= 0, "fake executor: position {} of sequence {} was never written", p, s);
        ctx.push_back(t);
      }
      out.push_back(model_(ctx));
    }
    ++steps;
    batch_sizes.push_back(static_cast<int64_t>(b.tokens.size()));
    return out;
  }
  int64_t weights_version() const override { return version; }

  int64_t version = 0;
  int64_t steps = 0, exchanges = 0, refreshes = 0;
  double step_seconds = 0.0;
  std::vector<StepCommand> commands;
  std::vector<int64_t> batch_sizes;

 private:
  std::vector<int32_t> slots_;
  int32_t block_tokens_;
  std::function<int32_t(const std::vector<int32_t>&)> model_;
};

}  // namespace tandem::serve::testing
