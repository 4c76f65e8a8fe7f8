// The serving loop of one replica (contract in engine.h).
#include "serve/engine.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "runtime/core/error.h"

namespace tandem::serve {

namespace {
constexpr size_t kMaxStops = 8;
constexpr size_t kMaxStopBytes = 256;
}  // namespace

Engine::Engine(ReplicaExecutor& exec, const BpeTokenizer* tokenizer, const EngineOptions& opt)
    : exec_(exec), tok_(tokenizer), opt_(opt), t0_(std::chrono::steady_clock::now()),
      sched_(opt.scheduler) {
  const ModelOptions& m = exec.replica().options();
  Mesh& mesh = exec.replica().mesh();
  info_.name = opt.model_name;
  info_.layers = m.layers;
  info_.dim = m.dim;
  info_.heads = m.heads;
  info_.vocab = m.vocab;
  info_.seq_len = m.seq_len;
  info_.dp = mesh.dp_size();
  info_.tp = mesh.tp_size();
  info_.pp = mesh.pp_size();
  info_.layout = fmt::format("dp {} x tp {} x pp {} (order {})", mesh.dp_size(), mesh.tp_size(),
                             mesh.pp_size(), mesh.order());
  info_.kv_block_tokens = opt.scheduler.block_tokens;
  info_.kv_blocks = opt.scheduler.kv_blocks;
  TANDEM_CHECK(opt.scheduler.seq_len == m.seq_len && opt.scheduler.block_tokens == exec.block_tokens() &&
                   opt.scheduler.kv_blocks == exec.kv_blocks(),
               "engine: scheduler (seq_len {}, {} blocks of {}) does not match the model ({}) and "
               "cache ({} blocks of {})",
               opt.scheduler.seq_len, opt.scheduler.kv_blocks, opt.scheduler.block_tokens, m.seq_len,
               exec.kv_blocks(), exec.block_tokens());
  TANDEM_CHECK(!exec.is_leader() || tokenizer != nullptr, "engine leader needs a tokenizer");
  weights_version_ = exec.replica().weights_version();
}

Engine::~Engine() = default;

double Engine::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Engine::request_stop() {
  stop_ = true;
  work_.notify_all();
}

std::vector<int32_t> Engine::validate(const GenerateRequest& req) const {
  auto bad = [](const std::string& msg) { return ServeError(ErrorKind::InvalidRequest, msg); };
  if (req.max_tokens < 1) throw bad(fmt::format("max_tokens {} must be >= 1", req.max_tokens));
  if (req.max_tokens >= info_.seq_len)
    throw bad(fmt::format("max_tokens {} leaves no room for a prompt in the model's seq_len {}", req.max_tokens,
                          info_.seq_len));
  // The prompt may have at most `room` tokens; a text is tokenized only as far as it could fit.
  const auto room = static_cast<size_t>(info_.seq_len - req.max_tokens);
  std::vector<int32_t> ids;
  if (!req.prompt_tokens.empty()) {
    if (req.prompt_tokens.size() > room)
      throw bad(fmt::format("prompt ({} tokens) + max_tokens ({}) exceeds the model's seq_len {}",
                            req.prompt_tokens.size(), req.max_tokens, info_.seq_len));
    ids = req.prompt_tokens;
  } else if (!req.prompt_text.empty() && !tok_->encode_bounded(req.prompt_text, room, ids)) {
    throw bad(fmt::format("the prompt text ({} bytes) is longer than {} tokens: with max_tokens {} it exceeds the "
                          "model's seq_len {}",
                          req.prompt_text.size(), room, req.max_tokens, info_.seq_len));
  }
  if (ids.empty()) throw bad("empty prompt: give prompt text or at least one token id");
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= info_.vocab)
      throw bad(fmt::format("prompt token {} at index {} is outside [0, vocab={})", ids[i], i, info_.vocab));
  if (!std::isfinite(req.temperature) || req.temperature < 0.0f)
    throw bad(fmt::format("temperature {} must be finite and >= 0", req.temperature));
  if (req.top_k < 0 || req.top_k > info_.vocab)
    throw bad(fmt::format("top_k {} must be in [0, vocab={}]", req.top_k, info_.vocab));
  if (!(req.top_p > 0.0f && req.top_p <= 1.0f))
    throw bad(fmt::format("top_p {} must be in (0, 1]", req.top_p));
  if (req.stop.size() > kMaxStops)
    throw bad(fmt::format("{} stop sequences (at most {})", req.stop.size(), kMaxStops));
  for (size_t i = 0; i < req.stop.size(); ++i)
    if (req.stop[i].empty() || req.stop[i].size() > kMaxStopBytes)
      throw bad(fmt::format("stop sequence {} has {} bytes (want 1..{})", i, req.stop[i].size(), kMaxStopBytes));
  if (!std::isfinite(req.deadline_s) || req.deadline_s < 0.0)
    throw bad(fmt::format("deadline {} s must be >= 0 (0: none)", req.deadline_s));
  if (static_cast<int>(req.priority) >= kNumPriorities)
    throw bad(fmt::format("priority {} is not realtime or batch", static_cast<int>(req.priority)));
  return ids;
}

uint64_t Engine::submit(GenerateRequest req, std::shared_ptr<GenerateStream> stream) {
  if (stop_ || !accepting_) throw ServeError(ErrorKind::ShuttingDown, "the server is shutting down");
  std::vector<int32_t> ids = validate(req);  // tokenizes: outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  SeqRequest r;
  r.id = next_id_++;
  r.priority = req.priority;
  r.max_tokens = req.max_tokens;
  r.arrival = now();
  r.deadline = req.deadline_s > 0 ? r.arrival + req.deadline_s : 0.0;
  r.sampling.temperature = req.temperature < kMinSamplingTemperature ? 0.0f : req.temperature;
  r.sampling.top_k = req.top_k;
  r.sampling.top_p = req.top_p;
  r.sampling.seed = req.seed;
  const auto prompt_len = static_cast<int32_t>(ids.size());
  r.prompt = std::move(ids);
  const uint64_t id = r.id;
  const double arrival = r.arrival;
  sched_.enqueue(std::move(r));  // throws Overloaded when the class's queue is full
  Active a;
  a.stream = std::move(stream);
  a.text = std::make_unique<TextStream>(*tok_, req.stop);
  a.priority = req.priority;
  a.prompt_tokens = prompt_len;
  a.max_tokens = req.max_tokens;
  a.arrival = arrival;
  a.deadline_s = req.deadline_s;
  active_.emplace(id, std::move(a));
  work_.notify_all();
  return id;
}

void Engine::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto f = active_.find(id);
  if (f == active_.end() || f->second.cancelled) return;
  f->second.cancelled = true;
  sched_.cancel(id);
  work_.notify_all();
}

HealthInfo Engine::health() {
  std::lock_guard<std::mutex> lock(mu_);
  HealthInfo h;
  h.live = true;
  h.ready = running_ && !stop_;
  h.detail = stop_ ? "shutting down" : running_ ? "serving" : "starting";
  return h;
}

StatsSnapshot Engine::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  StatsSnapshot s;
  stats_.fill(now(), s);
  for (int p = 0; p < kNumPriorities; ++p) s.queue_depth[p] = sched_.queued(static_cast<Priority>(p));
  s.active_sequences = sched_.running();
  s.kv_blocks_used = sched_.pool().used();
  s.kv_blocks_free = sched_.pool().free_count();
  s.kv_blocks_total = sched_.pool().total();
  s.weights_version = weights_version_;
  s.training_version = std::max(training_version_, weights_version_);
  s.windows_opened = windows_opened_;
  s.staleness = s.training_version - s.weights_version;
  s.weight_syncs = weight_syncs_;
  s.busy_s = busy_s_;
  return s;
}

ModelInfo Engine::model_info() {
  std::lock_guard<std::mutex> lock(mu_);
  ModelInfo m = info_;
  m.weights_version = weights_version_;
  return m;
}

void Engine::run() {
  if (exec_.is_leader()) run_leader();
  else run_follower();
}

void Engine::run_follower() {
  for (;;) {
    StepMessage m = exec_.exchange(nullptr);
    if (m.command == StepCommand::Stop) return;
    if (m.command == StepCommand::Idle) continue;
    exec_.run(m);
  }
}

void Engine::fail_all(const ServeError& err) {
  // Called with mu_ held: every queued and running request ends with `err`.
  std::vector<uint64_t> ids;
  for (auto& [id, a] : active_) ids.push_back(id);
  for (uint64_t id : ids) {
    Active& a = active_.at(id);
    if (!a.cancelled) {
      send_held(a, now());
      a.stream->failed(err);
    }
    sched_.cancel(id);
  }
  active_.clear();
  sched_.plan(now());  // drops them all and frees their blocks
}

StepMessage Engine::build_step(const StepPlan& plan) {
  StepMessage m;
  m.command = opt_.recompute ? StepCommand::Recompute : StepCommand::Forward;
  if (!opt_.recompute) {
    m.batch = plan.batch(sched_);
    m.sampling = plan.sampling();
    return m;
  }
  // Reference mode: each sequence that samples this step runs its whole context from scratch.
  for (const StepPlan::Item& it : plan.items) {
    if (!it.wants_logits) continue;
    const std::vector<int32_t>& all = sched_.tokens_of(it.id);
    std::vector<int32_t> ctx(all.begin(), all.begin() + it.past + static_cast<int64_t>(it.tokens.size()));
    m.batch.add_sequence(ctx, 0, sched_.blocks_of(it.id), opt_.scheduler.block_tokens, true);
    m.sampling.push_back(it.sampling);
  }
  return m;
}

void Engine::deliver(const StepPlan& plan, const std::vector<int32_t>& sampled) {
  // Called with mu_ held, after commit(): hand each sampled token to its stream.
  const double t = now();
  size_t k = 0;
  int64_t emitted = 0;
  for (const StepPlan::Item& it : plan.items) {
    if (!it.wants_logits) continue;
    const int32_t token = sampled[k++];
    auto f = active_.find(it.id);
    if (f == active_.end()) continue;
    Active& a = f->second;
    if (a.cancelled) continue;  // freed at the next plan()
    ++a.output_tokens;
    ++emitted;
    if (a.output_tokens == 1) {
      a.first_token = t;
      stats_.record_ttft(a.priority, t - a.arrival);
    } else {
      stats_.record_tpot(a.priority, t - a.last_token);
    }
    a.last_token = t;
    bool done = false, stopped = false;
    FinishReason why = FinishReason::Length;
    TokenPiece piece{token, {}};
    if (token == tok_->eot_id()) {
      done = true;
      why = FinishReason::EndOfText;
      piece.text = a.text->flush();
    } else {
      piece.text = a.text->push(token, &stopped);
      if (stopped) {
        done = true;
        why = FinishReason::Stop;
      } else if (a.output_tokens >= a.max_tokens) {
        done = true;
        why = FinishReason::Length;
      } else if (a.prompt_tokens + a.output_tokens >= info_.seq_len) {
        done = true;
        why = FinishReason::ContextFull;
      }
      if (done && !stopped) piece.text += a.text->flush();
    }
    a.held.push_back(std::move(piece));
    if (done || a.output_tokens == 1 || t - a.last_sent >= opt_.stream_interval_s) send_held(a, t);
    if (!done) continue;
    GenerateResult r;
    r.finish = why;
    r.prompt_tokens = a.prompt_tokens;
    r.output_tokens = a.output_tokens;
    r.ttft_s = a.first_token - a.arrival;
    r.total_s = t - a.arrival;
    r.weights_version = weights_version_;
    a.stream->finished(r);
    stats_.record_prompt_tokens(a.prompt_tokens);
    sched_.finish(it.id);
    active_.erase(f);
  }
  stats_.record_tokens(t, emitted);
}

void Engine::send_held(Active& a, double t) {
  if (a.held.empty()) return;
  a.stream->tokens(std::move(a.held));
  a.held.clear();
  a.last_sent = t;
}

void Engine::send_all_held() {
  const double t = now();
  for (auto& [id, a] : active_)
    if (!a.cancelled) send_held(a, t);
}

void Engine::report_dropped(const StepPlan& plan) {
  for (const auto& [id, why] : plan.dropped) {
    auto f = active_.find(id);
    if (f == active_.end()) continue;
    if (why != DropReason::Cancelled && !f->second.cancelled) {
      send_held(f->second, now());  // the tokens it produced before the deadline
      f->second.stream->failed(ServeError(
          ErrorKind::DeadlineExceeded,
          fmt::format("the deadline of {:.3f} s passed after {} output tokens",
                      f->second.deadline_s, f->second.output_tokens)));
    }
    active_.erase(f);
  }
}

bool Engine::has_realtime_item(const StepPlan& plan) const {
  for (const StepPlan::Item& it : plan.items) {
    auto f = active_.find(it.id);
    if (f != active_.end() && f->second.priority == Priority::Realtime) return true;
  }
  return false;
}

void Engine::begin_windows() {
  std::lock_guard<std::mutex> lock(mu_);
  running_ = true;
  weights_version_ = exec_.replica().weights_version();
}

void Engine::stop_accepting() { accepting_ = false; }

void Engine::wait_for_work(double seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  work_.wait_for(lock, std::chrono::duration<double>(seconds), [&] {
    return stop_.load() || sched_.queued(Priority::Realtime) + sched_.queued(Priority::Batch) > 0;
  });
}

WindowReport Engine::follow_window(const WindowRequest& w) {
  WindowReport rep;
  for (;;) {
    StepMessage m = exec_.exchange(nullptr);
    if (m.command == StepCommand::EndWindow) break;
    if (m.command == StepCommand::Refresh) {
      w.refresh();
      rep.refreshed = true;
    } else if (m.command == StepCommand::Forward || m.command == StepCommand::Recompute) {
      exec_.run(m);
      ++rep.steps;
    } else {
      TANDEM_CHECK(m.command == StepCommand::Idle, "serving window: unexpected step command {}",
                   static_cast<int>(m.command));
    }
  }
  return rep;
}

WindowReport Engine::window(const WindowRequest& w) {
  if (!exec_.is_leader()) return follow_window(w);
  WindowReport rep;
  for (;;) {
    if (w.max_steps > 0 && rep.steps >= w.max_steps) break;  // before planning: nothing half-done
    StepPlan plan;
    bool refresh = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const double t = now();
      training_version_ = w.training_version >= 0 ? w.training_version : w.live_version;
      if (w.weight_syncs >= 0) weight_syncs_ = w.weight_syncs;
      const bool stale = w.live_version > weights_version_;
      const bool waiting = sched_.queued(Priority::Realtime) + sched_.queued(Priority::Batch) > 0;
      if (stale && sched_.running() == 0 && !waiting && !w.eager_refresh) {
        // Nothing to serve: the copy stays as it is until a request needs it (a refresh
        // costs a copy of this rank's weights; an idle safe point costs a broadcast).
        sched_.set_admission(true);
        plan = sched_.sweep(t);
        report_dropped(plan);
      } else if (stale && sched_.running() == 0) {
        refresh = true;
      } else {
        sched_.set_admission(!stale);
        // A realtime request queued behind a stale copy waits for the sequences still running
        // on it: draining them is realtime work too (not held to the batch budget).
        const int64_t queued_rt = sched_.queued(Priority::Realtime);
        const int64_t queued_all = stale ? 0 : queued_rt + sched_.queued(Priority::Batch);
        const bool realtime = sched_.running(Priority::Realtime) > 0 || queued_rt > 0;
        const bool any = sched_.running() > 0 || queued_all > 0;
        const bool batch_ok = w.drain || batch_s_ < w.batch_budget * t;
        plan = realtime || (any && batch_ok) ? sched_.plan(t) : sched_.sweep(t);
        report_dropped(plan);
      }
    }
    if (refresh) {
      const double tr = now();
      StepMessage m;
      m.command = StepCommand::Refresh;
      exec_.exchange(&m);
      w.refresh();
      std::lock_guard<std::mutex> lock(mu_);
      busy_s_ += now() - tr;
      weights_version_ = exec_.replica().weights_version();
      sched_.set_admission(true);
      rep.refreshed = true;
      continue;
    }
    if (plan.empty()) break;  // nothing (more) this window may run
    StepMessage m;
    bool realtime_step = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      m = build_step(plan);
      realtime_step = has_realtime_item(plan);
    }
    const double ts = now();
    exec_.exchange(&m);
    std::vector<int32_t> sampled = exec_.run(m);
    std::lock_guard<std::mutex> lock(mu_);
    busy_s_ += now() - ts;
    if (!realtime_step) batch_s_ += now() - ts;
    if (rep.steps == 0) ++windows_opened_;
    sched_.commit(plan, sampled);
    deliver(plan, sampled);
    ++rep.steps;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    send_all_held();  // nothing waits for the next window
  }
  StepMessage end;
  end.command = StepCommand::EndWindow;
  exec_.exchange(&end);
  return rep;
}

void Engine::run_leader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_ = true;
  }
  for (;;) {
    StepPlan plan;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (opt_.stop_requested && opt_.stop_requested()) stop_ = true;
      if (stop_) {
        fail_all(ServeError(ErrorKind::ShuttingDown, "the server is shutting down"));
        break;
      }
      plan = sched_.plan(now());
      report_dropped(plan);
      if (plan.empty()) {
        send_all_held();
        work_.wait_for(lock, std::chrono::duration<double>(opt_.idle_heartbeat_s));
      }
    }
    if (plan.empty()) {
      StepMessage idle;
      exec_.exchange(&idle);
      continue;
    }
    StepMessage m;
    {
      std::lock_guard<std::mutex> lock(mu_);
      m = build_step(plan);
    }
    const double ts = now();
    exec_.exchange(&m);
    std::vector<int32_t> sampled = exec_.run(m);
    std::lock_guard<std::mutex> lock(mu_);
    busy_s_ += now() - ts;
    weights_version_ = exec_.replica().weights_version();
    sched_.commit(plan, sampled);
    deliver(plan, sampled);
  }
  StepMessage stop;
  stop.command = StepCommand::Stop;
  exec_.exchange(&stop);
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
}

}  // namespace tandem::serve
