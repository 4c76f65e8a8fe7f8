// Executes pipeline actions with point-to-point transfers between stages.
#include "runtime/train/pipeline_executor.h"

#include <chrono>
#include <map>
#include <memory>

namespace tandem {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Messages between a pair of ranks with equal tags are delivered in order, so the micro-batch
// part of the tag may wrap.
int message_tag(int microbatch, int vstage, bool backward, int vstages) {
  return ((microbatch % 1024) * vstages + vstage) * 2 + (backward ? 1 : 0);
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

PipelineRunStats PipelineExecutor::run(const std::vector<Action>& actions, int microbatches,
                                       int64_t b, int64_t T, const Loader& load, bool train,
                                       float loss_scale,
                                       const std::vector<std::function<void(int64_t)>>& on_final,
                                       const std::function<void(size_t)>& after_action) {
  const int nchunks = static_cast<int>(chunks_.size());
  const int V = stages_ * nchunks;
  const int64_t C = chunks_[0]->options().dim;
  Backend& be = chunks_[0]->backend();
  PipelineRunStats stats;
  const auto t_run = Clock::now();

  std::map<std::pair<int, int>, std::unique_ptr<StageState>> live;  // (microbatch, chunk)
  struct Pending {
    std::unique_ptr<Request> req;
    Tensor keep;  // the buffer being sent stays alive until the send completes
  };
  std::vector<Pending> sends;
  std::vector<int32_t> inputs(b * T), targets(b * T);

  auto reap = [&] {
    for (auto it = sends.begin(); it != sends.end();)
      it = it->req->test() ? sends.erase(it) : it + 1;
  };
  auto recv = [&](int peer_stage, int tag) {
    Tensor t = be.empty({b * T, C});
    const auto t0 = Clock::now();
    pp_.recv(t, peer_stage, tag);
    stats.wait_s += since(t0);
    return t;
  };

  for (size_t k = 0; k < actions.size(); ++k) {
    const Action& a = actions[k];
    if (k > 0 && after_action) after_action(k);
    const int v = virtual_stage(stages_, stage_, a.chunk);
    Gpt& model = *chunks_[a.chunk];
    const bool first = v == 0, last = v == V - 1;
    if (a.phase == Phase::Forward) {
      Tensor input;
      if (!first) input = recv(stage_chunk_of(stages_, v - 1).stage, message_tag(a.microbatch, v, false, V));
      if (first || last) load(a.microbatch, inputs.data(), targets.data());
      const auto t0 = Clock::now();
      auto st = model.forward(b, T, first ? inputs.data() : nullptr, first ? nullptr : &input,
                              last ? targets.data() : nullptr, train, loss_scale);
      stats.compute_s += since(t0);
      if (last) {
        stats.loss_sum += st->loss_sum;
        stats.loss_tokens += st->loss_tokens;
      } else {
        Tensor out = st->output;
        sends.push_back({pp_.isend(out, stage_chunk_of(stages_, v + 1).stage,
                                   message_tag(a.microbatch, v + 1, false, V)),
                         out});
        st->output = Tensor();
      }
      if (train) live[{a.microbatch, a.chunk}] = std::move(st);
      stats.max_live_states = std::max<int>(stats.max_live_states, static_cast<int>(live.size()));
    } else {
      TANDEM_CHECK(train, "backward action {} in an evaluation schedule", to_string(a));
      auto it = live.find({a.microbatch, a.chunk});
      TANDEM_CHECK(it != live.end(), "backward {} before its forward", to_string(a));
      Tensor dout;
      if (!last) dout = recv(stage_chunk_of(stages_, v + 1).stage, message_tag(a.microbatch, v, true, V));
      const bool final_mb = a.microbatch == microbatches - 1;
      std::function<void(int64_t)> hook;
      if (final_mb && a.chunk < static_cast<int>(on_final.size())) hook = on_final[a.chunk];
      const auto t0 = Clock::now();
      Tensor din = model.backward(*it->second, last ? nullptr : &dout, hook);
      stats.compute_s += since(t0);
      live.erase(it);
      if (!first)
        sends.push_back({pp_.isend(din, stage_chunk_of(stages_, v - 1).stage,
                                   message_tag(a.microbatch, v - 1, true, V)),
                         din});
    }
    reap();
  }
  const auto t0 = Clock::now();
  for (Pending& p : sends) p.req->wait();
  stats.wait_s += since(t0);
  TANDEM_CHECK(!train || live.empty(), "{} micro-batch states left after the schedule", live.size());
  stats.total_s = since(t_run);
  return stats;
}

}  // namespace tandem
