// WatchedCommunicator: one wait routine (PollBackoff pacing, watchdog, verdicts), one Request,
// the stranded list, the broken-group state and the precondition checks shared by the MPI and
// NCCL communicators. Contract: watched_communicator.h.
#include "parallel/watched_communicator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

namespace tandem::detail {

bool PollBackoff::pause() {
  const double el = elapsed_s();
  if (timeout_s_ > 0 && el >= timeout_s_) return false;
  if (el < kSpinSeconds) return true;  // spin: poll again at once
  std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
  sleep_us_ = std::min(sleep_us_ * 2, kMaxSleepUs);
  return true;
}

double PollBackoff::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::AllReduce: return "all_reduce";
    case OpKind::ReduceScatter: return "reduce_scatter";
    case OpKind::AllGather: return "all_gather";
    case OpKind::Broadcast: return "broadcast";
    case OpKind::Send: return "send";
    case OpKind::Recv: return "recv";
    case OpKind::Barrier: return "barrier";
    case OpKind::Batch: return "batch_isend_irecv";
  }
  return "?";
}

const char* reduce_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "max"; }

namespace {

class WatchedRequest final : public Request {
 public:
  WatchedRequest(WatchedCommunicator* comm, std::unique_ptr<PendingOp> p)
      : comm_(comm), p_(std::move(p)) {}
  ~WatchedRequest() override {
    if (p_) comm_->abandon(std::move(p_));
  }
  bool test() override {
    if (!failed_.empty()) throw Error(failed_);
    if (!p_) return true;
    try {
      if (!comm_->test_pending(p_)) return false;
    } catch (const Error& e) {
      fail(e);
      throw;
    }
    p_.reset();
    return true;
  }
  void wait() override {
    if (!failed_.empty()) throw Error(failed_);
    if (!p_) return;
    try {
      comm_->wait_pending(p_);
    } catch (const Error& e) {
      fail(e);
      throw;
    }
    p_.reset();
  }

 private:
  void fail(const Error& e) {
    failed_ = e.what();
    p_.reset();  // released, or already owned by the communicator's stranded list
  }
  WatchedCommunicator* comm_;
  std::unique_ptr<PendingOp> p_;  // null once complete (or failed)
  std::string failed_;            // the error a failed request repeats
};

std::string describe_transfer(const P2POp& op) {
  const bool send = op.kind == P2POp::Kind::Send;
  return fmt::format("{} of {} bytes [{}] {} peer {} (tag {})", send ? "send" : "recv",
                     op.tensor.defined() ? op.tensor.nbytes() : 0,
                     op.tensor.defined() ? op.tensor.describe() : "undefined", send ? "to" : "from",
                     op.peer, op.tag);
}

}  // namespace

std::unique_ptr<Request> WatchedCommunicator::hand_out(std::unique_ptr<PendingOp> p) {
  return std::make_unique<WatchedRequest>(this, std::move(p));
}

void WatchedCommunicator::complete(PendingOp& p) {
  on_done(p);
  if (p.on_complete) p.on_complete();
  p.on_complete = nullptr;
  p.keep.clear();
}

bool WatchedCommunicator::test_pending(std::unique_ptr<PendingOp>& p) {
  bool done = false;
  try {
    done = poll(*p);
  } catch (const Error&) {
    strand(std::move(p));  // the library failed: it may still touch the buffers
    throw;
  }
  if (done) complete(*p);
  return done;
}

void WatchedCommunicator::wait_pending(std::unique_ptr<PendingOp>& p) {
  PollBackoff backoff(timeout_s_);
  while (!test_pending(p)) {
    if (backoff.pause()) continue;
    const double waited = backoff.elapsed_s();
    const std::string what = describe(*p);
    TimeoutVerdict v = on_timeout(*p, what, waited);
    if (!v.broken.empty()) mark_broken(v.broken);
    switch (v.outcome) {
      case TimeoutVerdict::Outcome::Completed: complete(*p); return;
      case TimeoutVerdict::Outcome::Released:
        p->on_complete = nullptr;
        p->keep.clear();
        p.reset();
        break;
      case TimeoutVerdict::Outcome::Stranded: strand(std::move(p)); break;
    }
    throw TimeoutError(fmt::format(
        "group '{}' (rank {} of {}): {} did not complete within {:.2f} s (waited {:.2f} s, "
        "parallel.timeout_s = {}); a rank of the group is missing, stuck, or in a different "
        "operation; {}",
        name_, rank_, size_, what, timeout_s_, waited, timeout_s_, v.after));
  }
}

void WatchedCommunicator::abandon(std::unique_ptr<PendingOp> p) noexcept {
  try {
    switch (on_abandon(*p)) {
      case AbandonVerdict::Dropped:
        p->on_complete = nullptr;
        p->keep.clear();
        return;
      case AbandonVerdict::Stranded: strand(std::move(p)); return;
      case AbandonVerdict::Wait: wait_pending(p); return;
    }
  } catch (const std::exception& e) {
    spdlog::error("group '{}': a request dropped before completion failed: {}", name_, e.what());
  }
}

void WatchedCommunicator::release_stranded(
    const std::function<bool(PendingOp&)>& finished) noexcept {
  bool leak = false;
  for (auto& p : stranded_) {
    try {
      if (!finished(*p)) leak = true;
    } catch (...) {
      leak = true;
    }
  }
  // The library may still write into an unfinished operation's buffers: keep them for good.
  if (leak) new std::vector<std::unique_ptr<PendingOp>>(std::move(stranded_));
  stranded_.clear();
}

std::string WatchedCommunicator::describe(const PendingOp& p) const {
  std::string s = op_name(p.kind);
  if (p.reduce) s += fmt::format("({})", p.reduce);
  s += fmt::format(" of {} bytes", p.bytes);
  if (p.kind == OpKind::Batch) {
    s += fmt::format(" ({} transfers", p.parts.size());
    constexpr size_t kShown = 8;
    for (size_t i = 0; i < p.parts.size() && i < kShown; ++i)
      s += (i ? ", " : ": ") + describe_transfer(p.parts[i]);
    if (p.parts.size() > kShown) s += fmt::format(", and {} more", p.parts.size() - kShown);
    return s + ")";
  }
  if (!p.keep.empty()) s += fmt::format(" [{}]", p.keep.back().describe());
  switch (p.kind) {
    case OpKind::Send: s += fmt::format(" to peer {} (tag {})", p.peer, p.tag); break;
    case OpKind::Recv: s += fmt::format(" from peer {} (tag {})", p.peer, p.tag); break;
    case OpKind::Broadcast: s += fmt::format(" from root {}", p.peer); break;
    default: break;
  }
  return s;
}

void WatchedCommunicator::describe_batch(PendingOp& p, const std::vector<P2POp>& ops) {
  p.kind = OpKind::Batch;
  p.parts = ops;
  p.bytes = 0;
  for (const P2POp& op : ops) {
    p.bytes += static_cast<int64_t>(op.tensor.nbytes());
    p.keep.push_back(op.tensor);
  }
}

// ---------------------------------------------------------------- precondition checks

void WatchedCommunicator::check_usable(OpKind kind) const {
  if (!broken_.empty())
    throw Error(fmt::format("group '{}' (rank {} of {}) is unusable for {}: {}", name_, rank_,
                            size_, op_name(kind), broken_));
}

void WatchedCommunicator::check_tensor(const Tensor& t, OpKind kind, const char* what,
                                       bool reduce) const {
  TANDEM_CHECK(t.defined(), "group '{}': {} {} is an undefined tensor", name_, op_name(kind), what);
  TANDEM_CHECK(t.device() == device_, "group '{}' ({}) moves {} tensors only: {} {} is {}", name_,
               library_, device_ == DeviceKind::CPU ? "host" : "device", op_name(kind), what,
               t.describe());
  TANDEM_CHECK(!reduce || t.dtype() == DType::F32 || t.dtype() == DType::I32,
               "group '{}': {} reduces f32 or i32 tensors, {} is {}", name_, op_name(kind), what,
               t.describe());
}

bool WatchedCommunicator::check_in_place(const Tensor& part, const Tensor& whole, OpKind kind,
                                         const char* pn, const char* wn) const {
  if (!tensors_overlap(part, whole)) return false;
  const char* base = static_cast<const char*>(whole.raw());
  const size_t want = static_cast<size_t>(rank_) * part.nbytes();
  TANDEM_CHECK(static_cast<const char*>(part.raw()) == base + want,
               "group '{}': {} in place needs {} to be slice {} of {} (offset {} bytes), but {} "
               "starts {} bytes into {}",
               name_, op_name(kind), pn, rank_, wn, want, pn,
               static_cast<const char*>(part.raw()) - base, wn);
  return true;
}

bool WatchedCommunicator::check_reduce_scatter(const Tensor& out, const Tensor& in) const {
  constexpr OpKind k = OpKind::ReduceScatter;
  check_tensor(out, k, "out", true);
  check_tensor(in, k, "in", true);
  TANDEM_CHECK(out.dtype() == in.dtype(), "group '{}': reduce_scatter dtypes differ: out {} vs in {}",
               name_, out.describe(), in.describe());
  TANDEM_CHECK(in.numel() == out.numel() * size_,
               "group '{}': reduce_scatter needs in.numel() == out.numel() * size(): in {} has "
               "{} elements, out {} has {}, size {} (expected in = {})",
               name_, in.describe(), in.numel(), out.describe(), out.numel(), size_,
               out.numel() * size_);
  return check_in_place(out, in, k, "out", "in");
}

bool WatchedCommunicator::check_all_gather(const Tensor& out, const Tensor& in) const {
  constexpr OpKind k = OpKind::AllGather;
  check_tensor(out, k, "out", false);
  check_tensor(in, k, "in", false);
  TANDEM_CHECK(out.dtype() == in.dtype(), "group '{}': all_gather dtypes differ: out {} vs in {}",
               name_, out.describe(), in.describe());
  TANDEM_CHECK(out.numel() == in.numel() * size_,
               "group '{}': all_gather needs out.numel() == in.numel() * size(): out {} has "
               "{} elements, in {} has {}, size {} (expected out = {})",
               name_, out.describe(), out.numel(), in.describe(), in.numel(), size_,
               in.numel() * size_);
  return check_in_place(in, out, k, "in", "out");
}

void WatchedCommunicator::check_root(int root) const {
  TANDEM_CHECK(root >= 0 && root < size_, "group '{}' (size {}): broadcast root {} out of range",
               name_, size_, root);
}

void WatchedCommunicator::check_peer_tag(OpKind kind, int peer, int tag, bool allow_self,
                                         int tag_ub) const {
  TANDEM_CHECK(peer >= 0 && peer < size_ && (allow_self || peer != rank_),
               "group '{}' (rank {} of {}): {} peer {} out of range{}", name_, rank_, size_,
               op_name(kind), peer, allow_self ? "" : " (it must be another rank of the group)");
  TANDEM_CHECK(tag >= 0 && tag <= tag_ub, "group '{}': {} tag {} outside [0, {}]", name_,
               op_name(kind), tag, tag_ub);
}

void WatchedCommunicator::check_batch(const std::vector<P2POp>& ops, bool allow_self,
                                      int tag_ub) const {
  for (size_t i = 0; i < ops.size(); ++i) {
    const P2POp& op = ops[i];
    const OpKind k = op.kind == P2POp::Kind::Send ? OpKind::Send : OpKind::Recv;
    const std::string what = fmt::format("transfer #{} of a batch of {}", i, ops.size());
    check_tensor(op.tensor, k, what.c_str(), false);
    check_peer_tag(k, op.peer, op.tag, allow_self, tag_ub);
    if (k == OpKind::Recv)
      for (size_t j = 0; j < ops.size(); ++j)
        TANDEM_CHECK(j == i || !tensors_overlap(op.tensor, ops[j].tensor),
                     "group '{}': batch_isend_irecv receives into {} (transfer #{}), which "
                     "overlaps transfer #{} ({})",
                     name_, op.tensor.describe(), i, j, ops[j].tensor.describe());
  }
}

}  // namespace tandem::detail
