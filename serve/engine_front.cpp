// The threaded side of a replica's engine (contract in engine_front.h).
#include "serve/engine_front.h"

#include <fmt/format.h>

#include <cmath>

#include "runtime/core/error.h"

namespace tandem::serve {

namespace {
constexpr size_t kMaxStops = 8;
constexpr size_t kMaxStopBytes = 256;

CoreOptions core_options(const ModelInfo& info, const BpeTokenizer* tok, const EngineOptions& opt) {
  CoreOptions c;
  c.scheduler = opt.scheduler;
  c.vocab = info.vocab;
  c.eot_id = tok ? tok->eot_id() : -1;
  c.recompute = opt.recompute;
  return c;
}
}  // namespace

EngineFront::EngineFront(const ModelInfo& info, const BpeTokenizer* tokenizer, const EngineOptions& opt,
                         int64_t weights_version)
    : info_(info), tok_(tokenizer), opt_(opt), t0_(std::chrono::steady_clock::now()),
      core_(core_options(info, tokenizer, opt), weights_version) {
  TANDEM_CHECK(opt.scheduler.seq_len == info.seq_len, "engine: scheduler seq_len {} != the model's {}",
               opt.scheduler.seq_len, info.seq_len);
}

EngineFront::~EngineFront() {
  stop_rpc();  // the loop's last calls (cancels of open calls) reach a live core
}

void EngineFront::start_rpc(RpcServerOptions options) {
  TANDEM_CHECK(!server_, "engine: the RPC server is already started");
  TANDEM_CHECK(tok_ != nullptr, "engine: an RPC server needs the leader's tokenizer");
  server_ = std::make_unique<RpcServer>(*this, std::move(options));
  server_->start();
}

void EngineFront::stop_rpc() {
  if (server_) server_->stop();
}

int EngineFront::port() const { return server_ ? server_->port() : 0; }
int EngineFront::metrics_port() const { return server_ ? server_->metrics_port() : 0; }

double EngineFront::now() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void EngineFront::set_ready(bool ready) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_ = ready;
}

void EngineFront::request_stop() {
  stop_ = true;
  work_.notify_all();
}

bool EngineFront::stop_requested() const {
  return stop_.load() || (opt_.stop_requested && opt_.stop_requested());
}

void EngineFront::stop_accepting() { accepting_ = false; }

void EngineFront::wait_for_work(double seconds) {
  std::unique_lock<std::mutex> lock(mu_);
  work_.wait_for(lock, std::chrono::duration<double>(seconds),
                 [&] { return stop_.load() || core_.queued() > 0; });
}

std::vector<int32_t> EngineFront::validate(const GenerateRequest& req) const {
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
  if (!(req.top_p > 0.0f && req.top_p <= 1.0f)) throw bad(fmt::format("top_p {} must be in (0, 1]", req.top_p));
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

uint64_t EngineFront::submit(GenerateRequest req, std::shared_ptr<GenerateStream> stream) {
  if (stop_ || !accepting_) throw ServeError(ErrorKind::ShuttingDown, "the server is shutting down");
  TANDEM_CHECK(tok_ != nullptr, "engine: submit on a rank without the tokenizer");
  CoreRequest r;
  r.prompt = validate(req);  // tokenizes: outside the lock
  r.priority = req.priority;
  r.max_tokens = req.max_tokens;
  r.deadline_s = req.deadline_s;
  r.sampling.temperature = req.temperature < kMinSamplingTemperature ? 0.0f : req.temperature;
  r.sampling.top_k = req.top_k;
  r.sampling.top_p = req.top_p;
  r.sampling.seed = req.seed;
  auto e = std::make_shared<Entry>();
  e->stream = std::move(stream);
  e->text = std::make_unique<TextStream>(*tok_, req.stop);
  e->prompt_tokens = static_cast<int32_t>(r.prompt.size());
  std::lock_guard<std::mutex> lock(mu_);
  e->arrival = now();
  const uint64_t id = core_.admit(std::move(r), e->arrival);  // throws Overloaded
  entries_.emplace(id, std::move(e));
  work_.notify_all();
  return id;
}

void EngineFront::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto f = entries_.find(id);
  if (f == entries_.end()) return;
  f->second->cancelled = true;
  core_.cancel(id);
  entries_.erase(f);
  work_.notify_all();
}

HealthInfo EngineFront::health() {
  std::lock_guard<std::mutex> lock(mu_);
  HealthInfo h;
  h.live = true;
  h.ready = ready_ && !stop_;
  h.detail = stop_ ? "shutting down" : ready_ ? "serving" : "starting";
  return h;
}

StatsSnapshot EngineFront::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  StatsSnapshot s;
  core_.fill_stats(now(), s);
  return s;
}

ModelInfo EngineFront::model_info() {
  std::lock_guard<std::mutex> lock(mu_);
  ModelInfo m = info_;
  m.weights_version = core_.weights_version();
  return m;
}

void EngineFront::send_held(Entry& e, double t) {
  if (e.held.empty()) return;
  e.stream->tokens(std::move(e.held));
  e.held.clear();
  e.last_sent = t;
}

void EngineFront::dispatch() {
  std::vector<CoreEvent> events;
  std::vector<std::shared_ptr<Entry>> who;
  {
    std::lock_guard<std::mutex> lock(mu_);
    events = core_.take_events();
    who.reserve(events.size());
    for (const CoreEvent& ev : events) {
      auto f = entries_.find(ev.id);
      who.push_back(f == entries_.end() ? nullptr : f->second);
      if (f != entries_.end() && ev.kind != CoreEvent::Kind::Token) entries_.erase(f);
    }
  }
  if (events.empty()) return;
  // Outside the lock: detokenize, match stop sequences, hand pieces and outcomes to streams.
  const double t = now();
  std::vector<uint64_t> stopped_ids;
  std::vector<Entry*> due;  // entries whose held pieces go out after this batch
  for (size_t i = 0; i < events.size(); ++i) {
    Entry* e = who[i].get();
    const CoreEvent& ev = events[i];
    if (!e || e->ended || e->cancelled) continue;
    switch (ev.kind) {
      case CoreEvent::Kind::Token: {
        ++e->output_tokens;
        if (e->output_tokens == 1) e->first_token = t;
        TokenPiece piece{ev.token, {}};
        bool stopped = false;
        if (ev.token == tok_->eot_id()) piece.text = e->text->flush();
        else piece.text = e->text->push(ev.token, &stopped);
        e->held.push_back(std::move(piece));
        if (stopped) {
          e->ended = true;
          stopped_ids.push_back(ev.id);
          send_held(*e, t);
          GenerateResult r;
          r.finish = FinishReason::Stop;
          r.prompt_tokens = e->prompt_tokens;
          r.output_tokens = e->output_tokens;
          r.ttft_s = e->first_token - e->arrival;
          r.total_s = t - e->arrival;
          r.weights_version = ev.result.weights_version;
          e->stream->finished(r);
        } else if (e->output_tokens == 1 || t - e->last_sent >= opt_.stream_interval_s) {
          due.push_back(e);
        }
        break;
      }
      case CoreEvent::Kind::Finished: {
        e->ended = true;
        if (ev.result.finish != FinishReason::EndOfText) {
          std::string tail = e->text->flush();
          if (!tail.empty() && !e->held.empty()) e->held.back().text += tail;
        }
        send_held(*e, t);
        GenerateResult r = ev.result;
        r.ttft_s = e->first_token - e->arrival;
        r.total_s = t - e->arrival;
        e->stream->finished(r);
        break;
      }
      case CoreEvent::Kind::Failed:
        e->ended = true;
        send_held(*e, t);  // the tokens it produced before the failure
        e->stream->failed(ServeError(ev.error, ev.message));
        break;
    }
  }
  for (Entry* e : due)
    if (!e->ended) send_held(*e, t);
  if (stopped_ids.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t id : stopped_ids) {
    core_.end(id);
    entries_.erase(id);
  }
}

void EngineFront::flush_held() {
  std::vector<std::shared_ptr<Entry>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, e] : entries_)
      if (!e->held.empty()) all.push_back(e);
  }
  const double t = now();
  for (auto& e : all)
    if (!e->cancelled && !e->ended) send_held(*e, t);
}

}  // namespace tandem::serve
