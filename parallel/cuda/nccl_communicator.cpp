// NcclCommunicator: device-tensor collectives and point-to-point over NCCL, with a watchdog.
//
// Contract: see nccl_communicator.h. Every operation is queued on the context's stream and
// followed by a recorded cudaEvent; a Pending (event, description, tensors kept alive) is
// waited on at once by blocking calls or handed out inside an NcclRequest.
#include "parallel/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "runtime/core/cuda/cuda_context.h"

namespace tandem {

namespace {

struct Pending {
  cudaEvent_t event = nullptr;
  const char* op = "";
  const char* reduce = nullptr;
  int64_t bytes = 0;
  int peer = -1;  // send/recv peer, broadcast root
  std::vector<Tensor> keep;
};

class NcclCommunicator;

class NcclRequest final : public Request {
 public:
  NcclRequest(NcclCommunicator* comm, std::unique_ptr<Pending> p) : comm_(comm), p_(std::move(p)) {}
  ~NcclRequest() override;
  bool test() override;
  void wait() override;

 private:
  NcclCommunicator* comm_;
  std::unique_ptr<Pending> p_;
  std::string failed_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm comm, std::string name, double timeout_s, CudaContext& ctx)
      : name_(std::move(name)), timeout_s_(timeout_s), ctx_(ctx) {
    TANDEM_CHECK(comm != MPI_COMM_NULL, "make_nccl_communicator('{}'): MPI_COMM_NULL", name_);
    TANDEM_MPI_CHECK(MPI_Comm_dup(comm, &mpi_));
    TANDEM_MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
    TANDEM_MPI_CHECK(MPI_Comm_rank(mpi_, &rank_));
    TANDEM_MPI_CHECK(MPI_Comm_size(mpi_, &size_));
    TANDEM_CUDA_CHECK(cudaSetDevice(ctx_.device));
    check_distinct_gpus();
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (rank_ == 0) TANDEM_NCCL_CHECK(ncclGetUniqueId(&id));
    TANDEM_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi_));
    TANDEM_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
  }

  ~NcclCommunicator() override {
    if (comm_) {
      if (aborted_) {
        // ncclCommAbort already released it.
      } else {
        (void)cudaStreamSynchronize(ctx_.stream);
        (void)ncclCommDestroy(comm_);
      }
    }
    for (cudaEvent_t e : free_events_) (void)cudaEventDestroy(e);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }

  void all_reduce(Tensor& t, ReduceOp op) override { finish(start_all_reduce(t, op)); }
  void reduce_scatter(Tensor& out, const Tensor& in) override {
    finish(start_reduce_scatter(out, in));
  }
  void all_gather(Tensor& out, const Tensor& in) override { finish(start_all_gather(out, in)); }
  void broadcast(Tensor& t, int root) override { finish(start_broadcast(t, root)); }
  void send(const Tensor& t, int peer, int tag) override { finish(start_p2p(true, t, peer, tag)); }
  void recv(Tensor& t, int peer, int tag) override { finish(start_p2p(false, t, peer, tag)); }

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
    return hand_out(start_p2p(true, t, peer, tag));
  }
  std::unique_ptr<Request> irecv(Tensor& t, int peer, int tag) override {
    return hand_out(start_p2p(false, t, peer, tag));
  }

  // Drains the stream (with the watchdog), then a host barrier over the MPI duplicate.
  void barrier() override {
    check_usable("barrier");
    auto p = make_pending("barrier", 0);
    record(*p);
    finish(std::move(p));
    MPI_Request req = MPI_REQUEST_NULL;
    TANDEM_MPI_CHECK(MPI_Ibarrier(mpi_, &req));
    count(0);
    detail::PollBackoff backoff(timeout_s_);
    int done = 0;
    while (true) {
      TANDEM_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
      if (done) return;
      if (!backoff.pause()) {
        broken_ = fmt::format("barrier timed out after {:.2f} s", backoff.elapsed_s());
        throw TimeoutError(fmt::format(
            "group '{}' (rank {} of {}): barrier did not complete within {:.2f} s (waited {:.2f} s, "
            "parallel.timeout_s = {}); a rank of the group is missing or stuck; the group is now "
            "unusable",
            name_, rank_, size_, timeout_s_, backoff.elapsed_s(), timeout_s_));
      }
    }
  }

  // ---------------------------------------------------------------- used by NcclRequest
  bool test_pending(Pending& p) {
    cudaError_t e = cudaEventQuery(p.event);
    if (e == cudaErrorNotReady) {
      check_async_error(p);
      return false;
    }
    TANDEM_CUDA_CHECK(e);
    release(p);
    return true;
  }

  void wait_pending(Pending& p) {
    detail::PollBackoff backoff(timeout_s_);
    while (!test_pending(p)) {
      if (!backoff.pause()) on_timeout(p, backoff.elapsed_s());
    }
  }

  void abandon(Pending& p) noexcept {
    try {
      if (!aborted_) wait_pending(p);
    } catch (const std::exception& e) {
      spdlog::error("group '{}': a request dropped before completion failed: {}", name_, e.what());
    }
  }

 private:
  void finish(std::unique_ptr<Pending> p) { wait_pending(*p); }
  std::unique_ptr<Request> hand_out(std::unique_ptr<Pending> p) {
    return std::make_unique<NcclRequest>(this, std::move(p));
  }

  // ---------------------------------------------------------------- starting operations
  std::unique_ptr<Pending> start_all_reduce(Tensor& t, ReduceOp op) {
    check_usable("all_reduce");
    check_tensor(t, "all_reduce", "tensor", true);
    auto p = make_pending("all_reduce", t.nbytes());
    p->reduce = op == ReduceOp::Sum ? "sum" : "max";
    p->keep = {t};
    TANDEM_NCCL_CHECK(ncclAllReduce(t.raw(), t.raw(), static_cast<size_t>(t.numel()),
                                    nccl_type(t.dtype()), op == ReduceOp::Sum ? ncclSum : ncclMax,
                                    comm_, ctx_.stream));
    record(*p);
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_reduce_scatter(Tensor& out, const Tensor& in) {
    check_usable("reduce_scatter");
    check_tensor(out, "reduce_scatter", "out", true);
    check_tensor(in, "reduce_scatter", "in", true);
    TANDEM_CHECK(out.dtype() == in.dtype(), "group '{}': reduce_scatter dtypes differ: out {} vs in {}",
                 name_, out.describe(), in.describe());
    TANDEM_CHECK(in.numel() == out.numel() * size_,
                 "group '{}': reduce_scatter needs in.numel() == out.numel() * size(): in {} has "
                 "{} elements, out {} has {}, size {} (expected in = {})",
                 name_, in.describe(), in.numel(), out.describe(), out.numel(), size_,
                 out.numel() * size_);
    check_alias(out, in, "reduce_scatter", "out", "in");
    auto p = make_pending("reduce_scatter", in.nbytes());
    p->reduce = "sum";
    p->keep = {out, in};
    TANDEM_NCCL_CHECK(ncclReduceScatter(in.raw(), out.raw(), static_cast<size_t>(out.numel()),
                                        nccl_type(in.dtype()), ncclSum, comm_, ctx_.stream));
    record(*p);
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_all_gather(Tensor& out, const Tensor& in) {
    check_usable("all_gather");
    check_tensor(out, "all_gather", "out", false);
    check_tensor(in, "all_gather", "in", false);
    TANDEM_CHECK(out.dtype() == in.dtype(), "group '{}': all_gather dtypes differ: out {} vs in {}",
                 name_, out.describe(), in.describe());
    TANDEM_CHECK(out.numel() == in.numel() * size_,
                 "group '{}': all_gather needs out.numel() == in.numel() * size(): out {} has "
                 "{} elements, in {} has {}, size {} (expected out = {})",
                 name_, out.describe(), out.numel(), in.describe(), in.numel(), size_,
                 in.numel() * size_);
    check_alias(in, out, "all_gather", "in", "out");
    auto p = make_pending("all_gather", in.nbytes());
    p->keep = {out, in};
    TANDEM_NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), in.nbytes(), ncclInt8, comm_, ctx_.stream));
    record(*p);
    count(static_cast<int64_t>(in.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_broadcast(Tensor& t, int root) {
    check_usable("broadcast");
    check_tensor(t, "broadcast", "tensor", false);
    TANDEM_CHECK(root >= 0 && root < size_, "group '{}' (size {}): broadcast root {} out of range",
                 name_, size_, root);
    auto p = make_pending("broadcast", t.nbytes());
    p->peer = root;
    p->keep = {t};
    TANDEM_NCCL_CHECK(ncclBroadcast(t.raw(), t.raw(), t.nbytes(), ncclInt8, root, comm_, ctx_.stream));
    record(*p);
    count(static_cast<int64_t>(t.nbytes()));
    return p;
  }

  std::unique_ptr<Pending> start_p2p(bool is_send, const Tensor& t, int peer, int tag) {
    const char* op = is_send ? "send" : "recv";
    check_usable(op);
    check_tensor(t, op, "tensor", false);
    TANDEM_CHECK(peer >= 0 && peer < size_ && peer != rank_,
                 "group '{}' (rank {} of {}): {} peer {} must be another rank of the group", name_,
                 rank_, size_, op, peer);
    TANDEM_CHECK(tag >= 0, "group '{}': {} tag {} is negative", name_, op, tag);
    auto p = make_pending(op, t.nbytes());
    p->peer = peer;
    p->keep = {t};
    TANDEM_NCCL_CHECK(ncclGroupStart());
    ncclResult_t r = is_send ? ncclSend(t.raw(), t.nbytes(), ncclInt8, peer, comm_, ctx_.stream)
                             : ncclRecv(t.raw(), t.nbytes(), ncclInt8, peer, comm_, ctx_.stream);
    ncclResult_t end = ncclGroupEnd();
    TANDEM_NCCL_CHECK(r);
    TANDEM_NCCL_CHECK(end);
    record(*p);
    count(is_send ? static_cast<int64_t>(t.nbytes()) : 0);
    return p;
  }

  std::unique_ptr<Pending> make_pending(const char* op, size_t bytes) {
    auto p = std::make_unique<Pending>();
    p->op = op;
    p->bytes = static_cast<int64_t>(bytes);
    return p;
  }

  void record(Pending& p) {
    if (free_events_.empty()) {
      cudaEvent_t e = nullptr;
      TANDEM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      free_events_.push_back(e);
    }
    p.event = free_events_.back();
    free_events_.pop_back();
    TANDEM_CUDA_CHECK(cudaEventRecord(p.event, ctx_.stream));
  }

  void release(Pending& p) {
    if (p.event) free_events_.push_back(p.event);
    p.event = nullptr;
    p.keep.clear();
  }

  // ---------------------------------------------------------------- checks and types
  void check_usable(const char* op) const {
    if (!broken_.empty())
      throw Error(fmt::format("group '{}' (rank {} of {}) is unusable for {}: {}", name_, rank_,
                              size_, op, broken_));
  }

  void check_tensor(const Tensor& t, const char* op, const char* what, bool reduce) const {
    TANDEM_CHECK(t.defined(), "group '{}': {} {} is an undefined tensor", name_, op, what);
    TANDEM_CHECK(t.device() == DeviceKind::CUDA,
                 "group '{}' (NCCL) moves device tensors only: {} {} is {}", name_, op, what,
                 t.describe());
    TANDEM_CHECK(!reduce || t.dtype() == DType::F32 || t.dtype() == DType::I32,
                 "group '{}': {} reduces f32 or i32 tensors, {} is {}", name_, op, what,
                 t.describe());
  }

  // `part` may overlap `whole` only as its rank-th slice (NCCL's in-place convention).
  void check_alias(const Tensor& part, const Tensor& whole, const char* op, const char* pn,
                   const char* wn) const {
    if (!tensors_overlap(part, whole)) return;
    const char* base = static_cast<const char*>(whole.raw());
    const size_t want = static_cast<size_t>(rank_) * part.nbytes();
    TANDEM_CHECK(static_cast<const char*>(part.raw()) == base + want,
                 "group '{}': {} in place needs {} to be slice {} of {} (offset {} bytes), but it "
                 "starts {} bytes in",
                 name_, op, pn, rank_, wn, want, static_cast<const char*>(part.raw()) - base);
  }

  static ncclDataType_t nccl_type(DType d) {
    return d == DType::I32 ? ncclInt32 : d == DType::BF16 ? ncclBfloat16 : ncclFloat32;
  }

  // Every rank publishes "host|bus id"; a repeat means two ranks of this group share a GPU.
  void check_distinct_gpus() {
    constexpr int kLen = 128;
    char mine[kLen] = {};
    char host[MPI_MAX_PROCESSOR_NAME] = {};
    int host_len = 0;
    TANDEM_MPI_CHECK(MPI_Get_processor_name(host, &host_len));
    char bus[64] = {};
    TANDEM_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), ctx_.device));
    std::snprintf(mine, kLen, "%.*s|%s", host_len, host, bus);
    std::vector<char> all(static_cast<size_t>(kLen) * size_);
    TANDEM_MPI_CHECK(MPI_Allgather(mine, kLen, MPI_CHAR, all.data(), kLen, MPI_CHAR, mpi_));
    std::map<std::string, int> first;
    for (int r = 0; r < size_; ++r) {
      std::string key(&all[static_cast<size_t>(r) * kLen]);
      auto [it, fresh] = first.emplace(key, r);
      if (!fresh)
        throw ConfigError(fmt::format(
            "group '{}': ranks {} and {} of the group would share one GPU ({}); NCCL needs one "
            "GPU per rank: start at most as many ranks per node as it has GPUs",
            name_, it->second, r, key));
    }
  }

  // ---------------------------------------------------------------- failure paths
  std::string describe(const Pending& p) const {
    std::string s = p.op;
    if (p.reduce) s += fmt::format("({})", p.reduce);
    s += fmt::format(" of {} bytes", p.bytes);
    if (!p.keep.empty()) s += fmt::format(" [{}]", p.keep.back().describe());
    if (std::strcmp(p.op, "send") == 0) s += fmt::format(" to peer {}", p.peer);
    if (std::strcmp(p.op, "recv") == 0) s += fmt::format(" from peer {}", p.peer);
    if (std::strcmp(p.op, "broadcast") == 0) s += fmt::format(" from root {}", p.peer);
    return s;
  }

  void abort_comm(const std::string& why) {
    if (broken_.empty()) broken_ = why;
    if (!aborted_ && comm_) {
      (void)ncclCommAbort(comm_);
      aborted_ = true;
    }
  }

  void check_async_error(const Pending& p) {
    ncclResult_t async = ncclSuccess;
    if (aborted_ || ncclCommGetAsyncError(comm_, &async) != ncclSuccess) return;
    if (async == ncclSuccess || async == ncclInProgress) return;
    const std::string what = describe(p);
    abort_comm(fmt::format("NCCL reported {} during {}", ncclGetErrorString(async), what));
    throw Error(fmt::format("group '{}' (rank {} of {}): NCCL error during {}: {} ({}); the "
                            "communicator was aborted",
                            name_, rank_, size_, what, ncclGetErrorString(async),
                            ncclGetLastError(comm_)));
  }

  [[noreturn]] void on_timeout(Pending& p, double waited) {
    const std::string what = describe(p);
    abort_comm(fmt::format("{} timed out after {:.2f} s", what, waited));
    p.event = nullptr;  // the event may never fire now; drop it rather than reuse it
    throw TimeoutError(fmt::format(
        "group '{}' (rank {} of {}): {} did not complete within {:.2f} s (waited {:.2f} s, "
        "parallel.timeout_s = {}); a rank of the group is missing, stuck, or in a different "
        "operation; the NCCL communicator was aborted (ncclCommAbort) and the group is unusable",
        name_, rank_, size_, what, timeout_s_, waited, timeout_s_));
  }

  MPI_Comm mpi_ = MPI_COMM_NULL;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
  std::string name_;
  double timeout_s_;
  CudaContext& ctx_;
  bool aborted_ = false;
  std::string broken_;
  std::vector<cudaEvent_t> free_events_;
};

NcclRequest::~NcclRequest() {
  if (p_ && p_->event) comm_->abandon(*p_);
}

bool NcclRequest::test() {
  if (!failed_.empty()) throw Error(failed_);
  if (!p_) return true;
  if (!comm_->test_pending(*p_)) return false;
  p_.reset();
  return true;
}

void NcclRequest::wait() {
  if (!failed_.empty()) throw Error(failed_);
  if (!p_) return;
  try {
    comm_->wait_pending(*p_);
  } catch (const Error& e) {
    failed_ = e.what();
    throw;
  }
  p_.reset();
}

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(MPI_Comm comm, std::string name,
                                                     double timeout_s, CudaContext& ctx) {
  return std::make_unique<NcclCommunicator>(comm, std::move(name), timeout_s, ctx);
}

}  // namespace tandem
