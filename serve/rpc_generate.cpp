// Generate calls from parameters to Outcome: preparation off the loop, acknowledged token
// delivery, sink failures and stalls, outcome counters (contract in rpc_generate.h).
#include "serve/rpc_generate.h"

#include <capnp/capability.h>
#include <spdlog/spdlog.h>

#include <cmath>

#include "serve/rpc_convert.h"

namespace tandem::serve {

namespace {

kj::Duration seconds(double s) { return static_cast<int64_t>(s * 1e6) * kj::MICROSECONDS; }

void write_error(rpc::Outcome::Builder o, ErrorKind kind, const std::string& msg, double retry) {
  auto e = o.initError();
  e.setKind(static_cast<rpc::ErrorKind>(kind));
  e.setMessage(as_text(msg));
  e.setRetryAfterS(retry);
}

// Errors of a call's sink deliveries are handled in their own continuations; anything that
// still escapes is logged here.
class SinkTaskErrors final : public kj::TaskSet::ErrorHandler {
 public:
  void taskFailed(kj::Exception&& e) override {
    spdlog::debug("serve rpc: a token delivery ended with: {}", e.getDescription().cStr());
  }
};
SinkTaskErrors sink_task_errors;

}  // namespace

void OutcomeCounters::fill(StatsSnapshot& s) const {
  s.requests_finished = finished;
  s.requests_cancelled = cancelled;
  for (int k = 0; k < 5; ++k) s.rejected[k] = rejected[k];
}

// ------------------------------------------------------------------------------- Mailbox

void Mailbox::post(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  queue_.push_back(std::move(f));
  if (wake_) {
    wake_->fulfill();
    wake_ = nullptr;
  }
}

kj::Promise<void> Mailbox::wait() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!queue_.empty() || closed_) return kj::READY_NOW;
  auto pair = kj::newPromiseAndCrossThreadFulfiller<void>();
  wake_ = kj::mv(pair.fulfiller);
  return kj::mv(pair.promise);
}

std::vector<std::function<void()>> Mailbox::take() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::function<void()>> out;
  out.swap(queue_);
  return out;
}

void Mailbox::close() {
  std::vector<std::function<void()>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  dropped.swap(queue_);
  wake_ = nullptr;
}

// ---------------------------------------------------------------------------- PrepWorker

PrepWorker::PrepWorker(size_t capacity) : capacity_(capacity), thread_([this] { loop(); }) {}

PrepWorker::~PrepWorker() { stop(); }

bool PrepWorker::post(std::function<void()> job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (quit_ || jobs_.size() >= capacity_) return false;
  jobs_.push_back(std::move(job));
  cv_.notify_one();
  return true;
}

void PrepWorker::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PrepWorker::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return quit_ || !jobs_.empty(); });
    if (quit_) return;
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();  // jobs catch what they throw
    job = nullptr;
    lock.lock();
  }
}

// ------------------------------------------------------------------------- GenerateFront

struct GenerateFront::Call {
  uint64_t id = 0;
  bool submitted = false;  // the backend accepted it: id is valid
  bool ended = false;      // the backend's finished() or failed() arrived
  bool complete = false;   // the outcome is decided and counted
  bool sending = false;    // a sink call is in flight
  std::vector<TokenPiece> pending;
  bool ok = false;
  GenerateResult result;
  ErrorKind error_kind = ErrorKind::Internal;
  std::string error_message;
  double retry_after_s = 0.0;
  kj::Maybe<kj::TimePoint> deadline;  // the request's own
  kj::Maybe<rpc::TokenSink::Client> sink;
  kj::Own<kj::PromiseFulfiller<void>> done;
  kj::TaskSet sink_calls{sink_task_errors};  // the delivery in flight; dropped with the call
};

namespace {

// What the backend holds for a request: posts each event to the loop thread.
class MailboxStream final : public GenerateStream {
 public:
  MailboxStream(std::shared_ptr<Mailbox> box, GenerateFront* front, std::weak_ptr<GenerateFront::Call> call)
      : box_(std::move(box)), front_(front), call_(std::move(call)) {}
  void tokens(std::vector<TokenPiece> pieces) override {
    box_->post([f = front_, c = call_, p = std::move(pieces)]() mutable { f->on_tokens(c, std::move(p)); });
  }
  void finished(const GenerateResult& r) override {
    box_->post([f = front_, c = call_, r] {
      if (auto s = c.lock(); s && !s->complete) {
        s->ok = true;
        s->result = r;
      }
      f->on_end(c);
    });
  }
  void failed(const ServeError& e) override {
    box_->post([f = front_, c = call_, kind = e.kind(), msg = std::string(e.what()), retry = e.retry_after_s()] {
      if (auto s = c.lock(); s && !s->complete) {
        s->ok = false;
        s->error_kind = kind;
        s->error_message = msg;
        s->retry_after_s = retry;
      }
      f->on_end(c);
    });
  }

 private:
  std::shared_ptr<Mailbox> box_;
  GenerateFront* front_;
  std::weak_ptr<GenerateFront::Call> call_;
};

}  // namespace

GenerateFront::GenerateFront(ServingBackend& backend, kj::Timer& timer, std::shared_ptr<Mailbox> box,
                             std::shared_ptr<PrepWorker> prep, GenerateOptions opt)
    : backend_(backend), timer_(timer), box_(std::move(box)), prep_(std::move(prep)), opt_(opt) {}

GenerateFront::~GenerateFront() = default;

kj::Promise<void> GenerateFront::generate(GenerateCallContext context) {
  context.allowCancellation();
  auto refuse = [&](ErrorKind kind, const std::string& msg, double retry) {
    ++counters_.rejected[static_cast<int>(kind)];
    write_error(context.getResults().initOutcome(), kind, msg, retry);
    return kj::Promise<void>(kj::READY_NOW);
  };
  auto call = std::make_shared<Call>();
  auto req = std::make_shared<GenerateRequest>();
  try {
    auto params = context.getParams();
    *req = from_capnp(params.getParams());
    rpc::TokenSink::Client sink = params.getSink();
    if (capnp::ClientHook::from(sink)->isNull())
      throw ServeError(ErrorKind::InvalidRequest, "no TokenSink: generate streams its reply through the sink it is given");
    call->sink = kj::mv(sink);
  } catch (const ServeError& e) {
    return refuse(e.kind(), e.what(), e.retry_after_s());
  } catch (const kj::Exception& e) {
    return refuse(ErrorKind::InvalidRequest,
                  std::string("malformed generate parameters: ") + e.getDescription().cStr(), 0.0);
  }
  if (std::isfinite(req->deadline_s) && req->deadline_s > 0 && req->deadline_s < 1e9)
    call->deadline = timer_.now() + seconds(req->deadline_s);
  std::weak_ptr<Call> weak = call;
  auto stream = std::make_shared<MailboxStream>(box_, this, weak);
  const bool queued = prep_->post([backend = &backend_, box = box_, front = this, weak, req, stream] {
    try {
      const uint64_t id = backend->submit(std::move(*req), stream);
      box->post([front, weak, id] { front->on_submitted(weak, id); });
    } catch (const ServeError& e) {
      box->post([front, weak, kind = e.kind(), msg = std::string(e.what()), retry = e.retry_after_s()] {
        front->on_refused(weak, kind, msg, retry);
      });
    } catch (const std::exception& e) {
      box->post([front, weak, msg = std::string(e.what())] { front->on_refused(weak, ErrorKind::Internal, msg, 0.0); });
    }
  });
  if (!queued)
    return refuse(ErrorKind::Overloaded,
                  fmt::format("{} requests are waiting to be tokenized and admitted", opt_.max_preparing), 0.1);
  ++open_calls_;
  auto paf = kj::newPromiseAndFulfiller<void>();
  call->done = kj::mv(paf.fulfiller);
  // Runs when the call's promise is destroyed: after completion, or when the client dropped
  // the call or the connection (then the request is cancelled).
  auto guard = kj::defer([this, call] {
    --open_calls_;
    if (call->complete) return;
    call->complete = true;
    ++counters_.cancelled;
    if (call->submitted && !call->ended) {
      try {
        backend_.cancel(call->id);
      } catch (const std::exception& e) {  // never throw from a promise's destructor
        spdlog::error("serve rpc: cancel of request {} failed: {}", call->id, e.what());
      }
    }
  });
  return paf.promise
      .then([context, call]() mutable {
        auto out = context.getResults().initOutcome();
        if (call->ok) to_capnp(call->result, out.initResult());
        else write_error(out, call->error_kind, call->error_message, call->retry_after_s);
      })
      .attach(kj::mv(guard));
}

void GenerateFront::on_submitted(const std::weak_ptr<Call>& c, uint64_t id) {
  auto s = c.lock();
  if (s && !s->complete) {
    s->id = id;
    s->submitted = true;
    return;
  }
  // The client left, or the front ended the call (its sink failed) before the backend took it.
  if (!s || !s->ended) backend_.cancel(id);
}

void GenerateFront::on_refused(const std::weak_ptr<Call>& c, ErrorKind kind, const std::string& msg, double retry) {
  auto s = c.lock();
  if (!s || s->complete) return;  // the client left meanwhile: counted as cancelled
  s->ok = false;
  s->error_kind = kind;
  s->error_message = msg;
  s->retry_after_s = retry;
  complete(s);
}

void GenerateFront::on_tokens(const std::weak_ptr<Call>& c, std::vector<TokenPiece> pieces) {
  auto s = c.lock();
  if (!s || s->complete) return;
  s->pending.insert(s->pending.end(), std::make_move_iterator(pieces.begin()), std::make_move_iterator(pieces.end()));
  send_pending(s);
}

void GenerateFront::on_end(const std::weak_ptr<Call>& c) {
  auto s = c.lock();
  if (!s || s->complete) return;
  s->ended = true;
  maybe_complete(s);
}

void GenerateFront::send_pending(const std::shared_ptr<Call>& s) {
  if (s->complete || s->sending || s->pending.empty()) return;
  rpc::TokenSink::Client* sink = nullptr;
  KJ_IF_MAYBE(k, s->sink) { sink = k; }
  if (!sink) return;
  // An ordinary call (not `-> stream`), so that its promise is the client's return.
  auto req = sink->typelessRequest(capnp::typeId<rpc::TokenSink>(), 0, nullptr);
  auto list = req.initAs<rpc::TokenSink::TokensParams>().initTokens(static_cast<unsigned>(s->pending.size()));
  to_capnp(s->pending, list);
  s->pending.clear();
  s->sending = true;
  kj::Duration limit = seconds(opt_.sink_timeout_s);
  bool by_deadline = false;
  KJ_IF_MAYBE(d, s->deadline) {
    const kj::Duration left = *d - timer_.now();
    if (left < limit) {
      limit = left > 0 * kj::SECONDS ? left : 0 * kj::SECONDS;
      by_deadline = true;
    }
  }
  std::weak_ptr<Call> w = s;
  auto delivered = req.send().then(
      [this, w](capnp::Response<capnp::AnyPointer>&&) {
        auto st = w.lock();
        if (!st || st->complete) return;
        st->sending = false;
        send_pending(st);
        maybe_complete(st);
      },
      [this, w](kj::Exception&& e) {
        if (auto st = w.lock())
          fail(st, ErrorKind::Internal, std::string("the client's TokenSink failed: ") + e.getDescription().cStr());
      });
  auto stalled = timer_.afterDelay(limit).then([this, w, by_deadline, t = opt_.sink_timeout_s] {
    if (auto st = w.lock())
      fail(st, ErrorKind::DeadlineExceeded,
           by_deadline ? std::string("the request's deadline passed while the client's TokenSink held a call")
                       : fmt::format("the client's TokenSink did not return a call within {} s (serve.sink_timeout_s)", t));
  });
  s->sink_calls.add(delivered.exclusiveJoin(kj::mv(stalled)));
}

void GenerateFront::maybe_complete(const std::shared_ptr<Call>& s) {
  if (!s->complete && s->ended && !s->sending && s->pending.empty()) complete(s);
}

void GenerateFront::fail(const std::shared_ptr<Call>& s, ErrorKind kind, const std::string& msg) {
  if (s->complete) return;
  if (s->submitted && !s->ended) {
    try {
      backend_.cancel(s->id);  // frees its KV blocks now; no further events follow
    } catch (const std::exception& e) {
      spdlog::error("serve rpc: cancel of request {} failed: {}", s->id, e.what());
    }
  }
  s->ok = false;
  s->error_kind = kind;
  s->error_message = msg;
  s->retry_after_s = 0.0;
  s->pending.clear();
  complete(s);
}

void GenerateFront::complete(const std::shared_ptr<Call>& s) {
  s->complete = true;
  if (s->ok) ++counters_.finished;
  else ++counters_.rejected[static_cast<int>(s->error_kind)];
  s->done->fulfill();
}

}  // namespace tandem::serve
