// NcclCommunicator: device-tensor collectives and point-to-point over NCCL, on the
// communicator's own stream, with a watchdog.
//
// Contract: see nccl_communicator.h. Every operation waits (on the device) for the compute
// stream's work queued before it, runs on the comm stream and records a completion event; an
// NcclPending (that event, plus the host barrier of barrier()) is waited on by
// WatchedCommunicator. What is NCCL's own: polling the event and the asynchronous error, the
// compute stream's wait once an operation is seen done, and ncclCommAbort on a timeout.
#include "parallel/cuda/nccl_communicator.h"

#include <cuda_runtime.h>

#include <climits>
#include <vector>

#include "parallel/device_comm.h"
#include "parallel/mpi_communicator.h"
#include "parallel/watched_communicator.h"
#include "runtime/core/cuda/cuda_context.h"

namespace tandem {

namespace {

using detail::OpKind;
using detail::PendingOp;

struct NcclPending final : PendingOp {
  cudaEvent_t done = nullptr;  // recorded on the comm stream after the operation (null: nothing queued)
  bool device_done = false;    // `done` has been seen to fire
  bool host_barrier = false;   // barrier(): then an MPI barrier over the duplicate
  MPI_Request barrier_req = MPI_REQUEST_NULL;
};

class NcclCommunicator final : public detail::WatchedCommunicator {
 public:
  NcclCommunicator(MPI_Comm comm, std::string name, double timeout_s, CudaContext& ctx)
      : WatchedCommunicator(std::move(name), timeout_s, "NCCL", DeviceKind::CUDA), ctx_(ctx) {
    TANDEM_CHECK(comm != MPI_COMM_NULL, "make_nccl_communicator('{}'): MPI_COMM_NULL", name_);
    TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &mpi_));
    try {
      TANDEM_MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
      TANDEM_MPI_CHECK(MPI_Comm_rank(mpi_, &rank_));
      TANDEM_MPI_CHECK(MPI_Comm_size(mpi_, &size_));
      TANDEM_CUDA_CHECK(cudaSetDevice(ctx_.device));
      check_distinct_gpus();
      int least = 0, greatest = 0;
      TANDEM_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
      TANDEM_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, greatest));
      TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
      ncclUniqueId id{};
      if (rank_ == 0) TANDEM_NCCL_CHECK(ncclGetUniqueId(&id));
      TANDEM_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi_));
      TANDEM_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
    } catch (...) {
      release();
      throw;
    }
  }

  ~NcclCommunicator() override {
    if (comm_ && !aborted_) (void)cudaStreamSynchronize(stream_);
    release_stranded([](PendingOp& op) {
      auto& p = static_cast<NcclPending&>(op);
      if (p.done && cudaEventQuery(p.done) != cudaSuccess) return false;
      if (p.done) (void)cudaEventDestroy(p.done);
      p.done = nullptr;
      return true;
    });
    release();
  }

  void all_reduce(Tensor& t, ReduceOp op) override { finish(start_all_reduce(t, op)); }
  void reduce_scatter(Tensor& out, const Tensor& in) override {
    finish(start_reduce_scatter(out, in));
  }
  void all_gather(Tensor& out, const Tensor& in) override { finish(start_all_gather(out, in)); }
  void broadcast(Tensor& t, int root) override { finish(start_broadcast(t, root)); }
  void send(const Tensor& t, int peer, int tag) override {
    finish(start_batch({P2POp::send(t, peer, tag)}, OpKind::Send));
  }
  void recv(Tensor& t, int peer, int tag) override {
    finish(start_batch({P2POp::recv(t, peer, tag)}, OpKind::Recv));
  }

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
    return hand_out(start_batch({P2POp::send(t, peer, tag)}, OpKind::Send));
  }
  std::unique_ptr<Request> irecv(Tensor& t, int peer, int tag) override {
    return hand_out(start_batch({P2POp::recv(t, peer, tag)}, OpKind::Recv));
  }
  std::unique_ptr<Request> batch_isend_irecv(const std::vector<P2POp>& ops) override {
    return hand_out(start_batch(ops, OpKind::Batch));
  }

  void barrier() override {
    check_usable(OpKind::Barrier);
    auto p = make_pending(OpKind::Barrier, 0);
    p->host_barrier = true;
    queue_after_compute();
    record_done(*p);
    count(0);
    finish(std::move(p));
  }

 protected:
  // ---------------------------------------------------------------- WatchedCommunicator
  bool poll(PendingOp& op) override {
    auto& p = static_cast<NcclPending&>(op);
    if (p.done && !p.device_done) {
      const cudaError_t e = cudaEventQuery(p.done);
      if (e == cudaErrorNotReady) {
        check_async_error(p);
        return false;
      }
      TANDEM_CUDA_CHECK(e);
      p.device_done = true;
    }
    if (!p.host_barrier) return true;
    if (p.barrier_req == MPI_REQUEST_NULL) TANDEM_MPI_CHECK(MPI_Ibarrier(mpi_, &p.barrier_req));
    int done = 0;
    TANDEM_MPI_CHECK(MPI_Test(&p.barrier_req, &done, MPI_STATUS_IGNORE));
    if (done) p.host_barrier = false;  // MPI freed the request
    return done != 0;
  }

  // Seen done: later work on the compute stream follows the operation; the event is reusable.
  void on_done(PendingOp& op) override {
    auto& p = static_cast<NcclPending&>(op);
    if (!p.done) return;
    TANDEM_CUDA_CHECK(cudaStreamWaitEvent(ctx_.stream, p.done, 0));
    free_events_.push_back(p.done);
    p.done = nullptr;
  }

  TimeoutVerdict on_timeout(PendingOp&, const std::string& what, double waited) override {
    const std::string why = fmt::format("{} timed out after {:.2f} s", what, waited);
    abort_comm(why);
    return {TimeoutVerdict::Outcome::Stranded,
            "the NCCL communicator was aborted (ncclCommAbort) and the group is unusable", why};
  }

  // An aborted communicator never finishes its operations: keep their buffers.
  AbandonVerdict on_abandon(PendingOp&) override {
    return aborted_ ? AbandonVerdict::Stranded : AbandonVerdict::Wait;
  }

 private:
  // ---------------------------------------------------------------- starting operations
  std::unique_ptr<NcclPending> make_pending(OpKind kind, size_t bytes) {
    auto p = std::make_unique<NcclPending>();
    p->kind = kind;
    p->bytes = static_cast<int64_t>(bytes);
    return p;
  }

  // The comm stream waits for the work queued so far on the compute stream.
  void queue_after_compute() {
    TANDEM_CUDA_CHECK(cudaEventRecord(ready_, ctx_.stream));
    TANDEM_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
  }

  void record_done(NcclPending& p) {
    if (free_events_.empty()) {
      cudaEvent_t e = nullptr;
      TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      free_events_.push_back(e);
    }
    p.done = free_events_.back();
    free_events_.pop_back();
    TANDEM_CUDA_CHECK(cudaEventRecord(p.done, stream_));
  }

  // Runs `queue` (the NCCL call and record_done). Once NCCL may hold the operation's tensors, a
  // failure must not hand them back to the allocator: the operation is stranded (kept until
  // its stream is idle, as a timed-out one is) and the group is marked unusable.
  template <class F>
  void queue_or_strand(std::unique_ptr<NcclPending>& p, F&& queue) {
    try {
      queue();
    } catch (const std::exception& e) {
      mark_broken(fmt::format("{} failed once NCCL work may have been queued: {}", describe(*p), e.what()));
      strand(std::unique_ptr<PendingOp>(std::move(p)));
      throw;
    }
  }

  std::unique_ptr<PendingOp> start_all_reduce(Tensor& t, ReduceOp op) {
    check_usable(OpKind::AllReduce);
    check_tensor(t, OpKind::AllReduce, "tensor", true);
    auto p = make_pending(OpKind::AllReduce, t.nbytes());
    p->reduce = detail::reduce_name(op);
    p->keep = {t};
    queue_after_compute();
    queue_or_strand(p, [&] {
      TANDEM_NCCL_CHECK(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()),
                                      nccl_type(t.dtype()), op == ReduceOp::Sum ? ncclSum : ncclMax,
                                      comm_, stream_));
      record_done(*p);
    });
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_reduce_scatter(Tensor& out, const Tensor& in) {
    check_usable(OpKind::ReduceScatter);
    check_reduce_scatter(out, in);  // NCCL reads in place as it is (out = slice rank of in)
    auto p = make_pending(OpKind::ReduceScatter, in.nbytes());
    p->reduce = "sum";
    p->keep = {out, in};
    queue_after_compute();
    queue_or_strand(p, [&] {
      TANDEM_NCCL_CHECK(ncclReduceScatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()),
                                          nccl_type(in.dtype()), ncclSum, comm_, stream_));
      record_done(*p);
    });
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_all_gather(Tensor& out, const Tensor& in) {
    check_usable(OpKind::AllGather);
    check_all_gather(out, in);  // in place: in = slice rank of out, as NCCL expects
    auto p = make_pending(OpKind::AllGather, in.nbytes());
    p->keep = {out, in};
    queue_after_compute();
    queue_or_strand(p, [&] {
      TANDEM_NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), in.nbytes(), ncclInt8, comm_, stream_));
      record_done(*p);
    });
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<PendingOp> start_broadcast(Tensor& t, int root) {
    check_usable(OpKind::Broadcast);
    check_tensor(t, OpKind::Broadcast, "tensor", false);
    check_root(root);
    auto p = make_pending(OpKind::Broadcast, t.nbytes());
    p->peer = root;
    p->keep = {t};
    queue_after_compute();
    queue_or_strand(p, [&] {
      TANDEM_NCCL_CHECK(ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclInt8, root, comm_, stream_));
      record_done(*p);
    });
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  // send/recv (kind Send or Recv: one transfer) and batches: one ncclGroupStart/End.
  std::unique_ptr<PendingOp> start_batch(const std::vector<P2POp>& ops, OpKind kind) {
    check_usable(kind);
    auto p = make_pending(kind, 0);
    if (kind == OpKind::Batch) {
      check_batch(ops, /*allow_self=*/false, INT_MAX);
      describe_batch(*p, ops);
    } else {
      check_tensor(ops[0].tensor, kind, "tensor", false);
      check_peer_tag(kind, ops[0].peer, ops[0].tag, /*allow_self=*/false, INT_MAX);
      p->bytes = static_cast<int64_t>(ops[0].tensor.nbytes());
      p->peer = ops[0].peer;
      p->tag = ops[0].tag;
      p->keep = {ops[0].tensor};
    }
    if (ops.empty()) return p;  // nothing queued: complete at once
    queue_after_compute();
    TANDEM_NCCL_CHECK(ncclGroupStart());
    queue_or_strand(p, [&] {
      ncclResult_t r = ncclSuccess;
      for (const P2POp& op : ops) {
        const Tensor& t = op.tensor;
        r = op.kind == P2POp::Kind::Send ? ncclSend(t.raw(), t.nbytes(), ncclInt8, op.peer, comm_, stream_)
                                         : ncclRecv(t.raw(), t.nbytes(), ncclInt8, op.peer, comm_, stream_);
        if (r != ncclSuccess) break;
      }
      const ncclResult_t end = ncclGroupEnd();
      TANDEM_NCCL_CHECK(r);
      TANDEM_NCCL_CHECK(end);
      record_done(*p);
    });
    for (const P2POp& op : ops)
      count(op.kind == P2POp::Kind::Send ? static_cast<int64_t>(op.tensor.nbytes()) : 0);
    return p;
  }

  static ncclDataType_t nccl_type(DType d) {
    return d == DType::I32 ? ncclInt32 : d == DType::BF16 ? ncclBfloat16 : ncclFloat32;
  }

  // Every rank publishes "host|bus id"; a repeat means two ranks of this group share a GPU.
  void check_distinct_gpus() {
    const std::vector<std::string> keys = allgather_gpu_keys(mpi_, gpu_key(ctx_.device));
    if (const auto shared = first_shared_gpu(keys))
      throw ConfigError(fmt::format(
          "group '{}': ranks {} and {} of the group would share one GPU ({}); NCCL needs one "
          "GPU per rank: start at most as many ranks per node as it has GPUs",
          name_, shared->first, shared->second, keys[shared->first]));
  }

  // ---------------------------------------------------------------- failure paths
  void abort_comm(const std::string& why) {
    mark_broken(why);
    if (!aborted_ && comm_) {
      (void)ncclCommAbort(comm_);
      aborted_ = true;
    }
  }

  void check_async_error(const PendingOp& p) {
    ncclResult_t async = ncclSuccess;
    if (aborted_ || ncclCommGetAsyncError(comm_, &async) != ncclSuccess) return;
    if (async == ncclSuccess || async == ncclInProgress) return;
    const std::string what = describe(p);
    const std::string last = ncclGetLastError(comm_);
    abort_comm(fmt::format("NCCL reported {} during {}", ncclGetErrorString(async), what));
    throw Error(fmt::format("group '{}' (rank {} of {}): NCCL error during {}: {} ({}); the "
                            "communicator was aborted",
                            name_, rank_, size_, what, ncclGetErrorString(async), last));
  }

  // Frees what the constructor made (also after a failed construction).
  void release() noexcept {
    if (comm_ && !aborted_) (void)ncclCommDestroy(comm_);  // ncclCommAbort already released it
    comm_ = nullptr;
    for (cudaEvent_t e : free_events_) (void)cudaEventDestroy(e);
    free_events_.clear();
    if (ready_) (void)cudaEventDestroy(ready_);
    ready_ = nullptr;
    if (stream_) (void)cudaStreamDestroy(stream_);  // returns at once; resources go when idle
    stream_ = nullptr;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
  }

  MPI_Comm mpi_ = MPI_COMM_NULL;
  ncclComm_t comm_ = nullptr;
  CudaContext& ctx_;
  cudaStream_t stream_ = nullptr;  // the comm stream
  cudaEvent_t ready_ = nullptr;    // re-recorded on ctx.stream before each operation
  bool aborted_ = false;
  std::vector<cudaEvent_t> free_events_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name,
                                                     double timeout_s, CudaContext& ctx) {
  return std::make_unique<NcclCommunicator>(comm, std::move(name), timeout_s, ctx);
}

}  // namespace tandem
