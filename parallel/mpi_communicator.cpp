// MpiCommunicator: host-tensor collectives and point-to-point over MPI, with a watchdog.
//
// Contract: see mpi_communicator.h. Every operation is started with non-blocking MPI calls and
// becomes an MpiPending (its MPI requests, one per transfer of a batch); WatchedCommunicator
// waits on it. What is MPI's own: polling (MPI_Testall), cancelling receives on a timeout or
// when a request is dropped, and stranding what MPI cannot cancel.
#include "parallel/mpi_communicator.h"

#include <climits>
#include <cstring>
#include <vector>

#include "parallel/watched_communicator.h"

namespace tandem {

namespace detail {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return fmt::format("MPI error {}: {}", code, std::string(buf, static_cast<size_t>(len)));
}

}  // namespace detail

namespace {

using detail::OpKind;
using detail::PendingOp;

// One in-flight MPI operation: its requests (a batch: one per transfer, in the order of
// `parts`; otherwise one) and which of them are receives (the only ones MPI can cancel).
struct MpiPending final : PendingOp {
  std::vector<MPI_Request> reqs;
  std::vector<char> is_recv;
};

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

class MpiCommunicator final : public detail::WatchedCommunicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name, double timeout_s)
      : WatchedCommunicator(std::move(name), timeout_s, "MPI", DeviceKind::CPU) {
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
    if (mpi_finalized()) return;
    release_stranded([](PendingOp& p) {
      for (MPI_Request& r : static_cast<MpiPending&>(p).reqs) {
        int done = 0;
        if (r != MPI_REQUEST_NULL && (MPI_Test(&r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done))
          return false;
      }
      return true;
    });
    MPI_Comm_free(&comm_);  // deferred by MPI until pending operations complete
  }

  // ---------------------------------------------------------------- blocking: start + wait
  void all_reduce(Tensor& t, ReduceOp op) override { finish(start_all_reduce(t, op)); }
  void reduce_scatter(Tensor& out, const Tensor& in) override {
    finish(start_reduce_scatter(out, in));
  }
  void all_gather(Tensor& out, const Tensor& in) override { finish(start_all_gather(out, in)); }
  void broadcast(Tensor& t, int root) override { finish(start_broadcast(t, root)); }
  void send(const Tensor& t, int peer, int tag) override {
    finish(start_p2p(OpKind::Send, t, peer, tag));
  }
  void recv(Tensor& t, int peer, int tag) override { finish(start_p2p(OpKind::Recv, t, peer, tag)); }
  void barrier() override {
    check_usable(OpKind::Barrier);
    auto p = make_pending(OpKind::Barrier, 0);
    TANDEM_MPI_CHECK(MPI_Ibarrier(comm_, &p->reqs[0]));
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
  std::unique_ptr<Request> batch_isend_irecv(const std::vector<P2POp>& ops) override {
    check_usable(OpKind::Batch);
    check_batch(ops, /*allow_self=*/true, tag_ub_);
    for (const P2POp& op : ops) check_count(op.tensor, OpKind::Batch, "transfer");
    auto p = std::make_unique<MpiPending>();
    describe_batch(*p, ops);
    p->reqs.assign(ops.size(), MPI_REQUEST_NULL);
    p->is_recv.assign(ops.size(), 0);
    // Receives first, so a message finds its receive posted; each transfer's request sits at
    // its index. A failed post leaves the posted ones to the stranded list (they cannot be freed).
    try {
      for (int pass = 0; pass < 2; ++pass)
        for (size_t i = 0; i < ops.size(); ++i) {
          const P2POp& op = ops[i];
          const bool recv = op.kind == P2POp::Kind::Recv;
          if (recv != (pass == 0)) continue;
          p->is_recv[i] = recv;
          if (recv)
            TANDEM_MPI_CHECK(MPI_Irecv(op.tensor.raw(), count_of(op.tensor), mpi_type(op.tensor.dtype()),
                                       op.peer, op.tag, comm_, &p->reqs[i]));
          else
            TANDEM_MPI_CHECK(MPI_Isend(op.tensor.raw(), count_of(op.tensor), mpi_type(op.tensor.dtype()),
                                       op.peer, op.tag, comm_, &p->reqs[i]));
          count(recv ? 0 : static_cast<int64_t>(op.tensor.nbytes()));
        }
    } catch (const Error& e) {
      mark_broken(fmt::format("a batch_isend_irecv failed half-posted: {}", e.what()));
      strand(std::unique_ptr<PendingOp>(std::move(p)));
      throw;
    }
    return hand_out(std::move(p));
  }

 protected:
  // ---------------------------------------------------------------- WatchedCommunicator
  bool poll(PendingOp& op) override {
    auto& p = static_cast<MpiPending&>(op);
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Testall(static_cast<int>(p.reqs.size()), p.reqs.data(), &done,
                                 MPI_STATUSES_IGNORE));
    return done != 0;
  }

  TimeoutVerdict on_timeout(PendingOp& op, const std::string& what, double waited) override {
    using Outcome = TimeoutVerdict::Outcome;
    auto& p = static_cast<MpiPending&>(op);
    if (!only_receives_left(p))
      return {Outcome::Stranded, "MPI cannot cancel it, so the group is now unusable",
              fmt::format("{} timed out after {:.2f} s", what, waited)};
    switch (cancel_receives(p)) {
      case Cancel::Completed: return {Outcome::Completed, "", ""};
      case Cancel::Cancelled:
        return {Outcome::Released, "the receive was cancelled (MPI_Cancel); the group stays usable", ""};
      case Cancel::Stuck: break;
    }
    return {Outcome::Stranded, "the receive could not be cancelled, so the group is now unusable",
            fmt::format("a timed-out {} could not be cancelled", what)};
  }

  AbandonVerdict on_abandon(PendingOp& op) override {
    if (mpi_finalized()) return AbandonVerdict::Dropped;  // MPI is gone: nothing touches the buffers
    auto& p = static_cast<MpiPending&>(op);
    // Finished by now (the wait completes it), or a send or collective left: wait for it.
    if (!only_receives_left(p) || all_finished(p)) return AbandonVerdict::Wait;
    if (cancel_receives(p) != Cancel::Stuck) return AbandonVerdict::Dropped;
    mark_broken(fmt::format("an abandoned {} could not be cancelled", describe(p)));
    return AbandonVerdict::Stranded;
  }

 private:
  // ---------------------------------------------------------------- starting operations
  std::unique_ptr<MpiPending> make_pending(OpKind kind, size_t bytes) {
    auto p = std::make_unique<MpiPending>();
    p->kind = kind;
    p->bytes = static_cast<int64_t>(bytes);
    p->reqs.assign(1, MPI_REQUEST_NULL);
    p->is_recv.assign(1, kind == OpKind::Recv);
    return p;
  }

  std::unique_ptr<PendingOp> start_all_reduce(Tensor& t, ReduceOp op) {
    check_usable(OpKind::AllReduce);
    check_tensor(t, OpKind::AllReduce, "tensor", /*reduce=*/true);
    check_count(t, OpKind::AllReduce, "tensor");
    auto p = make_pending(OpKind::AllReduce, t.nbytes());
    p->reduce = detail::reduce_name(op);
    p->keep = {t};
    TANDEM_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw(), count_of(t), mpi_type(t.dtype()),
                                    mpi_op(op), comm_, &p->reqs[0]));
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_reduce_scatter(Tensor& out, const Tensor& in) {
    check_usable(OpKind::ReduceScatter);
    const bool in_place = check_reduce_scatter(out, in);
    check_count(in, OpKind::ReduceScatter, "in");
    auto p = make_pending(OpKind::ReduceScatter, in.nbytes());
    p->reduce = "sum";
    p->keep = {out, in};
    const int n = count_of(out);
    char* in_base = static_cast<char*>(in.raw());
    if (in_place) {
      // MPI_IN_PLACE leaves the result at the start of the buffer; move it to slice `rank`.
      if (rank_ != 0) {
        void* dst = out.raw();
        size_t nb = out.nbytes();
        p->on_complete = [dst, in_base, nb] { std::memmove(dst, in_base, nb); };
      }
      TANDEM_MPI_CHECK(MPI_Ireduce_scatter_block(MPI_IN_PLACE, in_base, n, mpi_type(in.dtype()),
                                                 MPI_SUM, comm_, &p->reqs[0]));
    } else {
      TANDEM_MPI_CHECK(MPI_Ireduce_scatter_block(in_base, out.raw(), n, mpi_type(in.dtype()),
                                                 MPI_SUM, comm_, &p->reqs[0]));
    }
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_all_gather(Tensor& out, const Tensor& in) {
    check_usable(OpKind::AllGather);
    const bool in_place = check_all_gather(out, in);
    check_count(out, OpKind::AllGather, "out");
    auto p = make_pending(OpKind::AllGather, in.nbytes());
    p->keep = {out, in};
    const int n = count_of(in);
    TANDEM_MPI_CHECK(MPI_Iallgather(in_place ? MPI_IN_PLACE : in.raw(), in_place ? 0 : n,
                                    in_place ? MPI_DATATYPE_NULL : mpi_type(in.dtype()), out.raw(),
                                    n, mpi_type(out.dtype()), comm_, &p->reqs[0]));
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_broadcast(Tensor& t, int root) {
    check_usable(OpKind::Broadcast);
    check_tensor(t, OpKind::Broadcast, "tensor", false);
    check_count(t, OpKind::Broadcast, "tensor");
    check_root(root);
    auto p = make_pending(OpKind::Broadcast, t.nbytes());
    p->peer = root;
    p->keep = {t};
    TANDEM_MPI_CHECK(MPI_Ibcast(t.raw(), count_of(t), mpi_type(t.dtype()), root, comm_, &p->reqs[0]));
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_p2p(OpKind kind, const Tensor& t, int peer, int tag) {
    check_usable(kind);
    check_tensor(t, kind, "tensor", false);
    check_count(t, kind, "tensor");
    check_peer_tag(kind, peer, tag, /*allow_self=*/true, tag_ub_);
    auto p = make_pending(kind, t.nbytes());
    p->peer = peer;
    p->tag = tag;
    p->keep = {t};
    if (kind == OpKind::Send) {
      TANDEM_MPI_CHECK(MPI_Isend(t.raw(), count_of(t), mpi_type(t.dtype()), peer, tag, comm_, &p->reqs[0]));
      count(static_cast<int64_t>(t.nbytes()));
    } else {
      TANDEM_MPI_CHECK(MPI_Irecv(t.raw(), count_of(t), mpi_type(t.dtype()), peer, tag, comm_, &p->reqs[0]));
      count(0);
    }
    return p;
  }

  // ---------------------------------------------------------------- checks and types
  void check_count(const Tensor& t, OpKind kind, const char* what) const {
    TANDEM_CHECK(t.numel() <= INT_MAX, "group '{}': {} {} has {} elements, more than MPI's int "
                 "count {} allows", name_, detail::op_name(kind), what, t.numel(), INT_MAX);
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

  // ---------------------------------------------------------------- cancelling receives
  // Completes the requests that have finished (MPI_Test each); true when every one left is a
  // receive.
  static bool only_receives_left(MpiPending& p) {
    bool ok = true;
    for (size_t i = 0; i < p.reqs.size(); ++i) {
      if (p.reqs[i] == MPI_REQUEST_NULL) continue;
      int done = 0;
      TANDEM_MPI_CHECK(MPI_Test(&p.reqs[i], &done, MPI_STATUS_IGNORE));
      if (!done && !p.is_recv[i]) ok = false;
    }
    return ok;
  }

  static bool all_finished(const MpiPending& p) {
    for (MPI_Request r : p.reqs)
      if (r != MPI_REQUEST_NULL) return false;
    return true;
  }

  enum class Cancel { Cancelled, Completed, Stuck };

  // Cancels every unfinished receive of `p`. A cancelled receive completes locally; one that
  // matched a message just before completes normally (its data is delivered). Completed: all
  // of them delivered after all; Stuck: one did neither within a grace second (it was freed,
  // and the caller strands `p`); otherwise Cancelled.
  static Cancel cancel_receives(MpiPending& p) {
    bool cancelled = false, stuck = false;
    for (MPI_Request& req : p.reqs) {
      if (req == MPI_REQUEST_NULL) continue;
      MPI_Status st;
      int done = 0;
      if (MPI_Cancel(&req) == MPI_SUCCESS) {
        detail::PollBackoff grace(1.0);
        while (MPI_Test(&req, &done, &st) == MPI_SUCCESS && !done && grace.pause()) {
        }
      }
      if (!done) {
        if (req != MPI_REQUEST_NULL) MPI_Request_free(&req);
        req = MPI_REQUEST_NULL;
        stuck = true;
        continue;
      }
      int was_cancelled = 0;
      MPI_Test_cancelled(&st, &was_cancelled);
      if (was_cancelled) cancelled = true;
      req = MPI_REQUEST_NULL;
    }
    return stuck ? Cancel::Stuck : cancelled ? Cancel::Cancelled : Cancel::Completed;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int tag_ub_ = 32767;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, std::string name,
                                                    double timeout_s) {
  return std::make_unique<MpiCommunicator>(comm, std::move(name), timeout_s);
}

}  // namespace tandem
