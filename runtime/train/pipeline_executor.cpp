// Executes pipeline actions and the batched transfers between stages that the rank's plan lists.
#include "runtime/train/pipeline_executor.h"

#include <chrono>
#include <map>
#include <memory>
#include <tuple>

namespace tandem {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Messages between a pair of ranks with equal tags are delivered in order, so the micro-batch
// part of the tag may wrap.
int message_tag(int microbatch, int vstage, bool backward, int vstages) {
  return ((microbatch % 1024) * vstages + vstage) * 2 + (backward ? 1 : 0);
}

// A tensor passed between virtual stages is named by what it feeds: (backward?, micro-batch,
// consuming virtual stage), as a Transfer is.
using Key = std::tuple<bool, int, int>;

std::string key_name(const Key& k) {
  return fmt::format("{}{} of virtual stage {}", std::get<0>(k) ? "B" : "F", std::get<1>(k), std::get<2>(k));
}

}  // namespace

PipelineExecutor::PipelineExecutor(std::vector<Gpt*> chunks, Communicator& pp, int stages, int stage)
    : chunks_(std::move(chunks)), pp_(pp), stages_(stages), stage_(stage) {
  TANDEM_CHECK(!chunks_.empty(), "pipeline executor needs at least one model chunk");
  TANDEM_CHECK(pp.size() == stages && pp.rank() == stage, "pp group rank {}/{} vs stage {}/{}",
               pp.rank(), pp.size(), stage, stages);
  TANDEM_CHECK(static_cast<int>(chunks_.size()) * stages <= 2 * 16384, "too many virtual stages");
}

std::vector<Action> PipelineExecutor::forward_only(int microbatches, int chunks) {
  std::vector<Action> a;
  for (int m = 0; m < microbatches; ++m)
    for (int c = 0; c < chunks; ++c) a.push_back({m, c, Phase::Forward});
  return a;
}

PipelineRunStats PipelineExecutor::run(const std::vector<Action>& actions, const TransferPlan& plan,
                                       int microbatches, int64_t b, int64_t T, const Loader& load,
                                       bool train, float loss_scale,
                                       const std::vector<std::function<void(int64_t)>>& on_final,
                                       const std::function<void(size_t)>& at_window) {
  const int nchunks = static_cast<int>(chunks_.size());
  const int V = stages_ * nchunks;
  const int64_t C = chunks_[0]->options().dim;
  Backend& be = chunks_[0]->backend();
  PipelineRunStats stats;
  const auto t_run = Clock::now();

  std::map<std::pair<int, int>, std::unique_ptr<StageState>> live;  // (microbatch, chunk)
  std::map<Key, Tensor> inbox;   // inputs of later actions: received, or handed over by this rank
  std::map<Key, Tensor> outbox;  // outputs for other ranks, until the plan sends them
  std::vector<int32_t> inputs(b * T), targets(b * T);

  auto take_input = [&](const Key& k, const Action& a) {
    auto it = inbox.find(k);
    TANDEM_CHECK(it != inbox.end(), "pipeline stage {}: {} runs before its input {} arrived (the "
                 "transfer plan does not fit this action list)", stage_, to_string(a), key_name(k));
    Tensor t = std::move(it->second);
    inbox.erase(it);
    return t;
  };
  auto pass_on = [&](const Key& k, Tensor t) {
    const bool here = stage_chunk_of(stages_, std::get<2>(k)).stage == stage_;
    TANDEM_CHECK((here ? inbox : outbox).emplace(k, std::move(t)).second,
                 "pipeline stage {}: {} produced twice", stage_, key_name(k));
  };

  auto compute = [&](const Action& a) {
    const int v = virtual_stage(stages_, stage_, a.chunk);
    Gpt& model = *chunks_[a.chunk];
    const bool first = v == 0, last = v == V - 1;
    if (a.phase == Phase::Forward) {
      Tensor input;
      if (!first) input = take_input({false, a.microbatch, v}, a);
      if (first || last) load(a.microbatch, inputs.data(), targets.data());
      const auto t0 = Clock::now();
      auto st = model.forward(b, T, first ? inputs.data() : nullptr, first ? nullptr : &input,
                              last ? targets.data() : nullptr, train, loss_scale);
      stats.compute_s += since(t0);
      if (last) {
        stats.loss_sum += st->loss_sum;
        stats.loss_tokens += st->loss_tokens;
      } else {
        pass_on({false, a.microbatch, v + 1}, std::move(st->output));
        st->output = Tensor();
      }
      if (train) live[{a.microbatch, a.chunk}] = std::move(st);
      stats.max_live_states = std::max<int>(stats.max_live_states, static_cast<int>(live.size()));
      return;
    }
    TANDEM_CHECK(train, "backward action {} in an evaluation schedule", to_string(a));
    auto it = live.find({a.microbatch, a.chunk});
    TANDEM_CHECK(it != live.end(), "backward {} before its forward", to_string(a));
    Tensor dout;
    if (!last) dout = take_input({true, a.microbatch, v}, a);
    const bool final_mb = a.microbatch == microbatches - 1;
    std::function<void(int64_t)> hook;
    if (final_mb && a.chunk < static_cast<int>(on_final.size())) hook = on_final[a.chunk];
    const auto t0 = Clock::now();
    Tensor din = model.backward(*it->second, last ? nullptr : &dout, hook);
    stats.compute_s += since(t0);
    live.erase(it);
    if (!first) pass_on({true, a.microbatch, v - 1}, std::move(din));
  };

  // One batch: this step's sends (from the outbox) and receives (into fresh buffers), posted
  // together and waited for together.
  auto exchange = [&](const std::vector<Transfer>& transfers) {
    std::vector<P2POp> ops;
    std::vector<Tensor> sending;  // released once the batch completed
    for (const Transfer& t : transfers) {
      const Key k{t.phase == Phase::Backward, t.microbatch, t.vstage};
      const int tag = message_tag(t.microbatch, t.vstage, t.phase == Phase::Backward, V);
      if (t.send) {
        auto it = outbox.find(k);
        TANDEM_CHECK(it != outbox.end(), "pipeline stage {}: the plan sends {} before it was "
                     "computed", stage_, key_name(k));
        ops.push_back(P2POp::send(it->second, t.peer, tag));
        sending.push_back(std::move(it->second));
        outbox.erase(it);
      } else {
        Tensor buf = be.empty({b * T, C});
        ops.push_back(P2POp::recv(buf, t.peer, tag));
        TANDEM_CHECK(inbox.emplace(k, std::move(buf)).second, "pipeline stage {}: {} received twice",
                     stage_, key_name(k));
      }
    }
    const auto t0 = Clock::now();
    pp_.batch_isend_irecv(ops)->wait();
    stats.wait_s += since(t0);
  };

  size_t computed = 0;
  for (const PipelineStep& step : plan) {
    switch (step.kind) {
      case PipelineStep::Kind::Compute:
        TANDEM_CHECK(step.index == computed && step.index < actions.size(), "pipeline stage {}: "
                     "the plan runs action #{} where #{} of {} is next", stage_, step.index,
                     computed, actions.size());
        compute(actions[computed++]);
        break;
      case PipelineStep::Kind::Exchange: exchange(step.transfers); break;
      case PipelineStep::Kind::Window:
        if (at_window) at_window(step.index);
        break;
    }
  }
  TANDEM_CHECK(computed == actions.size() && inbox.empty() && outbox.empty(),
               "pipeline stage {}: after the plan, {} of {} actions ran and {} received and {} "
               "computed tensors are left (it does not fit this action list)", stage_, computed,
               actions.size(), inbox.size(), outbox.size());
  TANDEM_CHECK(!train || live.empty(), "{} micro-batch states left after the schedule", live.size());
  stats.total_s = since(t_run);
  return stats;
}

}  // namespace tandem
