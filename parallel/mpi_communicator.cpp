// MpiCommunicator: host-tensor collectives and point-to-point over MPI, with a watchdog.
//
// Contract: see mpi_communicator.h. Every operation is started with a non-blocking MPI call
// and becomes a Pending (request, description, the tensors it keeps alive, an optional
// completion step); blocking calls wait on it at once, non-blocking calls hand it out inside an
// MpiRequest. wait_pending() is the one wait routine (PollBackoff pacing, watchdog, cancel of
// timed-out receives, stranding of everything MPI cannot cancel).
#include "parallel/mpi_communicator.h"

#include <spdlog/spdlog.h>

#include <climits>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace tandem {

namespace detail {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return fmt::format("MPI error {}: {}", code, std::string(buf, static_cast<size_t>(len)));
}

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

}  // namespace detail

namespace {

enum class OpKind { AllReduce, ReduceScatter, AllGather, Broadcast, Send, Recv, Barrier };

const char* op_name(OpKind k) {
  switch (k) {
    case OpKind::AllReduce: return "all_reduce";
    case OpKind::ReduceScatter: return "reduce_scatter";
    case OpKind::AllGather: return "all_gather";
    case OpKind::Broadcast: return "broadcast";
    case OpKind::Send: return "send";
    case OpKind::Recv: return "recv";
    case OpKind::Barrier: return "barrier";
  }
  return "?";
}

const char* reduce_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "max"; }

// One in-flight MPI operation.
struct Pending {
  MPI_Request req = MPI_REQUEST_NULL;
  OpKind kind = OpKind::Barrier;
  int64_t bytes = 0;
  int peer = -1;  // send/recv peer, broadcast root
  int tag = -1;
  const char* reduce = nullptr;
  std::vector<Tensor> keep;          // buffers MPI may still touch
  std::function<void()> on_complete;  // e.g. the move of an in-place reduce_scatter result
};

class MpiCommunicator;

class MpiRequest final : public Request {
 public:
  MpiRequest(MpiCommunicator* comm, std::unique_ptr<Pending> p) : comm_(comm), p_(std::move(p)) {}
  ~MpiRequest() override;
  bool test() override;
  void wait() override;

 private:
  MpiCommunicator* comm_;
  std::unique_ptr<Pending> p_;  // null once complete (or handed to the group after a timeout)
  std::string failed_;          // the error a timed-out request repeats
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s)
      : name_(std::move(name)), timeout_s_(timeout_s) {
    TANDEM_CHECK(comm != MPI_COMM_NULL, "make_mpi_communicator('{}'): MPI_COMM_NULL", name_);
    TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    TANDEM_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    TANDEM_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    TANDEM_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    void* ub = nullptr;
    int flag = 0;
    TANDEM_MPI_CHECK(MPI_Comm_get_attr(comm_, MPI_TAG_UB, &ub, &flag));
    if (flag && ub) tag_ub_ = *static_cast<int*>(ub);
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    bool leak = false;
    for (auto& p : stranded_) {
      int done = 0;
      if (p->req != MPI_REQUEST_NULL) MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
      if (!done) leak = true;
    }
    // MPI may still write into a stranded operation's buffers: keep them alive for good.
    if (leak) new std::vector<std::unique_ptr<Pending>>(std::move(stranded_));
    MPI_Comm_free(&comm_);  // deferred by MPI until pending operations complete
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  // ---------------------------------------------------------------- blocking: start + wait
  void all_reduce(Tensor& t, ReduceOp op) override { finish(start_all_reduce(t, op)); }
  void reduce_scatter(Tensor& out, const Tensor& in) override {
    finish(start_reduce_scatter(out, in));
  }
  void all_gather(Tensor& out, const Tensor& in) override { finish(start_all_gather(out, in)); }
  void broadcast(Tensor& t, int root) override { finish(start_broadcast(t, root)); }
  void send(const Tensor& t, int peer, int tag) override { finish(start_p2p(OpKind::Send, t, peer, tag)); }
  void recv(Tensor& t, int peer, int tag) override { finish(start_p2p(OpKind::Recv, t, peer, tag)); }
  void barrier() override {
    check_usable(OpKind::Barrier);
    auto p = std::make_unique<Pending>();
    p->kind = OpKind::Barrier;
    TANDEM_MPI_CHECK(MPI_Ibarrier(comm_, &p->req));
    count(0);
    finish(std::move(p));
  }

  // ---------------------------------------------------------------- non-blocking
  std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp op) override {
    return hand_out(start_all_reduce(t, op));
  }
  std::unique_ptr<Request> ireduce_scatter(Tensor& out, const Tensor& in) override {
    return hand_out(start_reduce_scatter(out, in));
  }
  std::unique_ptr<Request> iall_gather(Tensor& out, const Tensor& in) override {
    return hand_out(start_all_gather(out, in));
  }
  std::unique_ptr<Request> isend(const Tensor& t, int peer, int tag) override {
    return hand_out(start_p2p(OpKind::Send, t, peer, tag));
  }
  std::unique_ptr<Request> irecv(Tensor& t, int peer, int tag) override {
    return hand_out(start_p2p(OpKind::Recv, t, peer, tag));
  }

  // ---------------------------------------------------------------- used by MpiRequest
  // True once complete (runs the completion step and releases the buffers).
  bool test_pending(Pending& p) {
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&p.req, &done, MPI_STATUS_IGNORE));
    if (done) complete(p);
    return done != 0;
  }

  // Waits with the watchdog. On a timeout, `p` is either cancelled (recv) or moved into the
  // group's stranded list (p becomes null); then TimeoutError is thrown.
  void wait_pending(std::unique_ptr<Pending>& p) {
    detail::PollBackoff backoff(timeout_s_);
    while (!test_pending(*p)) {
      if (!backoff.pause()) {
        on_timeout(p, backoff.elapsed_s());  // throws unless the receive completed after all
        return;
      }
    }
  }

  // A request dropped before completion: cancel a receive, drain anything else.
  void abandon(std::unique_ptr<Pending> p) noexcept {
    try {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (finalized) return;
      if (p->kind == OpKind::Recv && !test_pending(*p)) {
        if (cancel_recv(*p) != CancelResult::Stuck) return;
        mark_broken(fmt::format("an abandoned recv from peer {} could not be cancelled", p->peer));
        stranded_.push_back(std::move(p));
        return;
      }
      wait_pending(p);
    } catch (const std::exception& e) {
      spdlog::error("group '{}': a request dropped before completion failed: {}", name_, e.what());
    }
  }

 private:
  void finish(std::unique_ptr<Pending> p) { wait_pending(p); }
  std::unique_ptr<Request> hand_out(std::unique_ptr<Pending> p) {
    return std::make_unique<MpiRequest>(this, std::move(p));
  }

  void complete(Pending& p) {
    p.req = MPI_REQUEST_NULL;
    if (p.on_complete) p.on_complete();
    p.on_complete = nullptr;
    p.keep.clear();
  }

  // ---------------------------------------------------------------- starting operations
  std::unique_ptr<Pending> start_all_reduce(Tensor& t, ReduceOp op) {
    check_usable(OpKind::AllReduce);
    check_tensor(t, OpKind::AllReduce, "tensor", /*reduce=*/true);
    auto p = make_pending(OpKind::AllReduce, t.nbytes());
    p->reduce = reduce_name(op);
    p->keep = {t};
    TANDEM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw(), count_of(t), mpi_type(t.dtype()),
                                    mpi_op(op), comm_, &p->req));
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_reduce_scatter(Tensor& out, const Tensor& in) {
    check_usable(OpKind::ReduceScatter);
    check_tensor(out, OpKind::ReduceScatter, "out", true);
    check_tensor(in, OpKind::ReduceScatter, "in", true);
    check_same_dtype(out, in, OpKind::ReduceScatter);
    TANDEM_CHECK(in.numel() == out.numel() * size_,
                 "group '{}': reduce_scatter needs in.numel() == out.numel() * size(): in {} has "
                 "{} elements, out {} has {}, size {} (expected in = {})",
                 name_, in.describe(), in.numel(), out.describe(), out.numel(), size_,
                 out.numel() * size_);
    auto p = make_pending(OpKind::ReduceScatter, in.nbytes());
    p->reduce = "sum";
    p->keep = {out, in};
    const int n = count_of(out);
    char* in_base = static_cast<char*>(in.raw());
    if (tensors_overlap(out, in)) {
      TANDEM_CHECK(out.raw() == in_base + static_cast<size_t>(rank_) * out.nbytes(),
                   "group '{}': reduce_scatter in place needs out to be slice {} of in "
                   "(offset {} bytes), but out starts {} bytes into in",
                   name_, rank_, static_cast<size_t>(rank_) * out.nbytes(),
                   static_cast<char*>(out.raw()) - in_base);
      // MPI_IN_PLACE leaves the result at the start of the buffer; move it to slice `rank`.
      if (rank_ != 0) {
        void* dst = out.raw();
        size_t nb = out.nbytes();
        p->on_complete = [dst, in_base, nb] { std::memmove(dst, in_base, nb); };
      }
      TANDEM_MPI_CHECK(MPI_Ireduce_scatter_block(MPI_IN_PLACE, in_base, n, mpi_type(in.dtype()),
                                                 MPI_SUM, comm_, &p->req));
    } else {
      TANDEM_MPI_CHECK(MPI_Ireduce_scatter_block(in_base, out.raw(), n, mpi_type(in.dtype()),
                                                 MPI_SUM, comm_, &p->req));
    }
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_all_gather(Tensor& out, const Tensor& in) {
    check_usable(OpKind::AllGather);
    check_tensor(out, OpKind::AllGather, "out", false);
    check_tensor(in, OpKind::AllGather, "in", false);
    check_same_dtype(out, in, OpKind::AllGather);
    TANDEM_CHECK(out.numel() == in.numel() * size_,
                 "group '{}': all_gather needs out.numel() == in.numel() * size(): out {} has "
                 "{} elements, in {} has {}, size {} (expected out = {})",
                 name_, out.describe(), out.numel(), in.describe(), in.numel(), size_,
                 in.numel() * size_);
    auto p = make_pending(OpKind::AllGather, in.nbytes());
    p->keep = {out, in};
    const int n = count_of(in);
    char* out_base = static_cast<char*>(out.raw());
    const void* send = in.raw();
    if (tensors_overlap(out, in)) {
      TANDEM_CHECK(in.raw() == out_base + static_cast<size_t>(rank_) * in.nbytes(),
                   "group '{}': all_gather in place needs in to be slice {} of out "
                   "(offset {} bytes), but in starts {} bytes into out",
                   name_, rank_, static_cast<size_t>(rank_) * in.nbytes(),
                   static_cast<char*>(in.raw()) - out_base);
      send = MPI_IN_PLACE;
    }
    TANDEM_MPI_CHECK(MPI_Iallgather(send, send == MPI_IN_PLACE ? 0 : n,
                                    send == MPI_IN_PLACE ? MPI_DATATYPE_NULL : mpi_type(in.dtype()),
                                    out_base, n, mpi_type(out.dtype()), comm_, &p->req));
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_broadcast(Tensor& t, int root) {
    check_usable(OpKind::Broadcast);
    check_tensor(t, OpKind::Broadcast, "tensor", false);
    TANDEM_CHECK(root >= 0 && root < size_, "group '{}' (size {}): broadcast root {} out of range",
                 name_, size_, root);
    auto p = make_pending(OpKind::Broadcast, t.nbytes());
    p->peer = root;
    p->keep = {t};
    TANDEM_MPI_CHECK(MPI_Ibcast(t.raw(), count_of(t), mpi_type(t.dtype()), root, comm_, &p->req));
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_p2p(OpKind kind, const Tensor& t, int peer, int tag) {
    check_usable(kind);
    check_tensor(t, kind, "tensor", false);
    TANDEM_CHECK(peer >= 0 && peer < size_, "group '{}' (size {}): {} peer {} out of range", name_,
                 size_, op_name(kind), peer);
    TANDEM_CHECK(tag >= 0 && tag <= tag_ub_, "group '{}': {} tag {} outside [0, {}]", name_,
                 op_name(kind), tag, tag_ub_);
    auto p = make_pending(kind, t.nbytes());
    p->peer = peer;
    p->tag = tag;
    p->keep = {t};
    if (kind == OpKind::Send) {
      TANDEM_MPI_CHECK(MPI_Isend(t.raw(), count_of(t), mpi_type(t.dtype()), peer, tag, comm_, &p->req));
      count(static_cast<int64_t>(t.nbytes()));
    } else {
      TANDEM_MPI_CHECK(MPI_Irecv(t.raw(), count_of(t), mpi_type(t.dtype()), peer, tag, comm_, &p->req));
      count(0);
    }
    return p;
  }

  std::unique_ptr<Pending> make_pending(OpKind kind, size_t bytes) {
    auto p = std::make_unique<Pending>();
    p->kind = kind;
    p->bytes = static_cast<int64_t>(bytes);
    return p;
  }

  // ---------------------------------------------------------------- checks and types
  void check_usable(OpKind kind) const {
    if (!broken_.empty())
      throw Error(fmt::format("group '{}' (rank {} of {}) is unusable for {}: {}", name_, rank_,
                              size_, op_name(kind), broken_));
  }

  void check_tensor(const Tensor& t, OpKind kind, const char* what, bool reduce) const {
    TANDEM_CHECK(t.defined(), "group '{}': {} {} is an undefined tensor", name_, op_name(kind), what);
    TANDEM_CHECK(t.device() == DeviceKind::CPU,
                 "group '{}' (MPI) moves host tensors only: {} {} is {}", name_, op_name(kind),
                 what, t.describe());
    TANDEM_CHECK(!reduce || t.dtype() == DType::F32 || t.dtype() == DType::I32,
                 "group '{}': {} reduces f32 or i32 tensors, {} is {}", name_, op_name(kind), what,
                 t.describe());
    TANDEM_CHECK(t.numel() <= INT_MAX, "group '{}': {} {} has {} elements, more than MPI's int "
                 "count {} allows", name_, op_name(kind), what, t.numel(), INT_MAX);
  }

  void check_same_dtype(const Tensor& out, const Tensor& in, OpKind kind) const {
    TANDEM_CHECK(out.dtype() == in.dtype(), "group '{}': {} dtypes differ: out {} vs in {}", name_,
                 op_name(kind), out.describe(), in.describe());
  }

  static int count_of(const Tensor& t) { return static_cast<int>(t.numel()); }

  static MPI_Datatype mpi_type(DType d) {
    switch (d) {
      case DType::F32: return MPI_FLOAT;
      case DType::I32: return MPI_INT32_T;
      case DType::U16: return MPI_UINT16_T;
      case DType::BF16: return MPI_UINT16_T;  // moved as bytes; reductions refuse it
    }
    return MPI_BYTE;
  }
  static MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::Sum ? MPI_SUM : MPI_MAX; }

  // ---------------------------------------------------------------- the watchdog's end
  std::string describe(const Pending& p) const {
    std::string s = op_name(p.kind);
    if (p.reduce) s += fmt::format("({})", p.reduce);
    s += fmt::format(" of {} bytes", p.bytes);
    if (!p.keep.empty()) s += fmt::format(" [{}]", p.keep.back().describe());
    switch (p.kind) {
      case OpKind::Send: s += fmt::format(" to peer {} (tag {})", p.peer, p.tag); break;
      case OpKind::Recv: s += fmt::format(" from peer {} (tag {})", p.peer, p.tag); break;
      case OpKind::Broadcast: s += fmt::format(" from root {}", p.peer); break;
      default: break;
    }
    return s;
  }

  void mark_broken(std::string why) {
    if (broken_.empty()) broken_ = std::move(why);
  }

  enum class CancelResult { Cancelled, Completed, Stuck };

  // Cancels a pending receive. A cancelled receive completes locally; one that matched a
  // message just before completes normally (its data is delivered). Stuck: neither happened
  // within a grace second, the request was freed, and the caller must strand `p`.
  CancelResult cancel_recv(Pending& p) {
    MPI_Status st;
    int done = 0;
    if (MPI_Cancel(&p.req) == MPI_SUCCESS) {
      detail::PollBackoff grace(1.0);
      while (MPI_Test(&p.req, &done, &st) == MPI_SUCCESS && !done && grace.pause()) {
      }
    }
    if (!done) {
      if (p.req != MPI_REQUEST_NULL) MPI_Request_free(&p.req);
      p.req = MPI_REQUEST_NULL;
      return CancelResult::Stuck;
    }
    int cancelled = 0;
    MPI_Test_cancelled(&st, &cancelled);
    if (!cancelled) {
      complete(p);
      return CancelResult::Completed;
    }
    p.req = MPI_REQUEST_NULL;
    p.on_complete = nullptr;
    p.keep.clear();
    return CancelResult::Cancelled;
  }

  // Returns only when a timed-out receive completed while being cancelled; otherwise throws.
  void on_timeout(std::unique_ptr<Pending>& p, double waited) {
    const std::string what = describe(*p);
    std::string after;
    if (p->kind == OpKind::Recv) {
      switch (cancel_recv(*p)) {
        case CancelResult::Completed: return;
        case CancelResult::Cancelled:
          after = "the receive was cancelled (MPI_Cancel); the group stays usable";
          break;
        case CancelResult::Stuck:
          mark_broken(fmt::format("a timed-out {} could not be cancelled", what));
          stranded_.push_back(std::move(p));
          after = "the receive could not be cancelled, so the group is now unusable";
          break;
      }
    } else {
      mark_broken(fmt::format("{} timed out after {:.2f} s", what, waited));
      stranded_.push_back(std::move(p));
      after = "MPI cannot cancel it, so the group is now unusable";
    }
    throw TimeoutError(fmt::format(
        "group '{}' (rank {} of {}): {} did not complete within {:.2f} s (waited {:.2f} s, "
        "parallel.timeout_s = {}); a rank of the group is missing, stuck, or in a different "
        "operation; {}",
        name_, rank_, size_, what, timeout_s_, waited, timeout_s_, after));
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  int tag_ub_ = 32767;
  std::string name_;
  double timeout_s_;
  std::string broken_;  // non-empty: why every later call fails
  std::vector<std::unique_ptr<Pending>> stranded_;  // timed out, still owned by MPI
};

MpiRequest::~MpiRequest() {
  if (p_) comm_->abandon(std::move(p_));
}

bool MpiRequest::test() {
  if (!failed_.empty()) throw Error(failed_);
  if (!p_) return true;
  if (!comm_->test_pending(*p_)) return false;
  p_.reset();
  return true;
}

void MpiRequest::wait() {
  if (!failed_.empty()) throw Error(failed_);
  if (!p_) return;
  try {
    comm_->wait_pending(p_);
  } catch (const TimeoutError& e) {
    failed_ = e.what();
    p_.reset();  // cancelled, or now owned by the group's stranded list
    throw;
  }
  p_.reset();
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    double timeout_s) {
  return std::make_unique<MpiCommunicator>(comm, std::move(name), timeout_s);
}

}  // namespace tandem
