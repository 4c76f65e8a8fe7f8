// StagedCommunicator: backend tensors staged through host memory, moved by an MpiCommunicator.
//
// Contract: see staged_communicator.h. Every operation stages its inputs, starts the MPI
// communicator's non-blocking twin on the host tensors, and wraps the MPI Request in a
// StagedRequest whose completion copies the host result back (blocking calls wait at once).
#include "parallel/staged_communicator.h"

#include <spdlog/spdlog.h>

#include <functional>
#include <utility>

#include "parallel/mpi_communicator.h"

namespace tandem {

namespace {

class StagedRequest final : public Request {
 public:
  // `copy_back` runs once, when the MPI operation has completed (may be empty).
  StagedRequest(std::unique_ptr<Request> mpi, std::function<void()> copy_back, bool is_recv,
                std::string what)
      : mpi_(std::move(mpi)), copy_back_(std::move(copy_back)), is_recv_(is_recv),
        what_(std::move(what)) {}

  ~StagedRequest() override {
    if (done_ || failed_) return;  // a failed request already reported; MPI owns its remains
    try {
      if (is_recv_) {
        if (mpi_->test()) finish();  // arrived after all; otherwise MPI cancels it below
      } else {
        mpi_->wait();
        finish();
      }
    } catch (const std::exception& e) {
      spdlog::error("a dropped staged {} failed: {}", what_, e.what());
    }
  }

  bool test() override {
    if (done_) return true;
    try {
      if (!mpi_->test()) return false;
      finish();
    } catch (...) {
      failed_ = true;
      throw;
    }
    return true;
  }

  void wait() override {
    if (done_) return;
    try {
      mpi_->wait();
      finish();
    } catch (...) {
      failed_ = true;
      throw;
    }
  }

 private:
  void finish() {
    if (copy_back_) copy_back_();
    copy_back_ = nullptr;  // releases the tensors
    done_ = true;
  }

  std::unique_ptr<Request> mpi_;
  std::function<void()> copy_back_;
  bool is_recv_;
  std::string what_;
  bool done_ = false, failed_ = false;
};

class StagedCommunicator final : public Communicator {
 public:
  StagedCommunicator(MPI_Comm comm, std::string name, double timeout_s, Backend& be)
      : mpi_(make_mpi_communicator(comm, name, timeout_s)), be_(be) {}

  int rank() const override { return mpi_->rank(); }
  int size() const override { return mpi_->size(); }
  const std::string& name() const override { return mpi_->name(); }

  void all_reduce(Tensor& t, ReduceOp op) override { iall_reduce(t, op)->wait(); }
  void reduce_scatter(Tensor& out, const Tensor& in) override { ireduce_scatter(out, in)->wait(); }
  void all_gather(Tensor& out, const Tensor& in) override { iall_gather(out, in)->wait(); }
  void send(const Tensor& t, int peer, int tag) override { isend(t, peer, tag)->wait(); }
  void recv(Tensor& t, int peer, int tag) override { irecv(t, peer, tag)->wait(); }

  void broadcast(Tensor& t, int root) override {
    check_tensor(t, "broadcast", "tensor");
    const bool is_root = root == rank();
    Tensor h = is_root ? stage(t) : host_like(t);
    counted([&] { mpi_->broadcast(h, root); });
    if (!is_root) be_.copy(t, h);
  }

  void barrier() override {
    be_.synchronize();
    counted([&] { mpi_->barrier(); });
  }

  std::unique_ptr<Request> iall_reduce(Tensor& t, ReduceOp op) override {
    check_tensor(t, "all_reduce", "tensor");
    Tensor h = stage(t);
    std::unique_ptr<Request> r;
    counted([&] { r = mpi_->iall_reduce(h, op); });
    return wrap(std::move(r), copier(t, h), false, "all_reduce");
  }

  std::unique_ptr<Request> ireduce_scatter(Tensor& out, const Tensor& in) override {
    check_tensor(out, "reduce_scatter", "out");
    check_tensor(in, "reduce_scatter", "in");
    Tensor hin = stage(in);
    Tensor hout = tensors_overlap(out, in) ? host_part(hin, in, out, "reduce_scatter", "out", "in")
                                           : host_like(out);
    std::unique_ptr<Request> r;
    counted([&] { r = mpi_->ireduce_scatter(hout, hin); });
    return wrap(std::move(r), copier(out, hout), false, "reduce_scatter");
  }

  std::unique_ptr<Request> iall_gather(Tensor& out, const Tensor& in) override {
    check_tensor(out, "all_gather", "out");
    check_tensor(in, "all_gather", "in");
    Tensor hout = host_like(out);
    Tensor hin;
    if (tensors_overlap(out, in)) {
      hin = host_part(hout, out, in, "all_gather", "in", "out");
      be_.copy(hin, in);
    } else {
      hin = stage(in);
    }
    std::unique_ptr<Request> r;
    counted([&] { r = mpi_->iall_gather(hout, hin); });
    return wrap(std::move(r), copier(out, hout), false, "all_gather");
  }

  std::unique_ptr<Request> isend(const Tensor& t, int peer, int tag) override {
    check_tensor(t, "send", "tensor");
    Tensor h = stage(t);
    std::unique_ptr<Request> r;
    counted([&] { r = mpi_->isend(h, peer, tag); });
    return wrap(std::move(r), nullptr, false, "send");
  }

  std::unique_ptr<Request> irecv(Tensor& t, int peer, int tag) override {
    check_tensor(t, "recv", "tensor");
    Tensor h = host_like(t);
    std::unique_ptr<Request> r;
    counted([&] { r = mpi_->irecv(h, peer, tag); });
    return wrap(std::move(r), copier(t, h), true, "recv");
  }

 private:
  // Runs one MPI call and counts it as one call of the bytes the MPI communicator counted.
  template <class F>
  void counted(F&& call) {
    const int64_t before = mpi_->stats().bytes;
    call();
    count(mpi_->stats().bytes - before);
  }

  std::unique_ptr<Request> wrap(std::unique_ptr<Request> r, std::function<void()> copy_back,
                                bool is_recv, const char* op) {
    return std::make_unique<StagedRequest>(std::move(r), std::move(copy_back), is_recv,
                                           fmt::format("{} on group '{}'", op, name()));
  }

  std::function<void()> copier(Tensor dev, Tensor host) {
    return [this, dev, host]() mutable { be_.copy(dev, host); };
  }

  Tensor host_like(const Tensor& t) { return be_.host_empty(t.shape(), t.dtype()); }

  // A host copy of `t`, made after everything queued before it on the backend's stream.
  Tensor stage(const Tensor& t) {
    Tensor h = host_like(t);
    be_.copy(h, t);
    return h;
  }

  // The part of host tensor `host_whole` (staging `whole`) at the place `part` has in `whole`.
  Tensor host_part(const Tensor& host_whole, const Tensor& whole, const Tensor& part,
                   const char* op, const char* pn, const char* wn) const {
    const char* base = static_cast<const char*>(whole.raw());
    const ptrdiff_t off = static_cast<const char*>(part.raw()) - base;
    const size_t esize = dtype_size(whole.dtype());
    TANDEM_CHECK(part.dtype() == whole.dtype() && off >= 0 &&
                     static_cast<size_t>(off) + part.nbytes() <= whole.nbytes() &&
                     static_cast<size_t>(off) % esize == 0,
                 "group '{}' (staged): {} {} {} overlaps {} {} without lying inside it ({} bytes "
                 "in); only an in-place slice of the same dtype is allowed",
                 name(), op, pn, part.describe(), wn, whole.describe(), off);
    return host_whole.flat_range(off / static_cast<ptrdiff_t>(esize), part.shape());
  }

  void check_tensor(const Tensor& t, const char* op, const char* what) const {
    TANDEM_CHECK(t.defined(), "group '{}': {} {} is an undefined tensor", name(), op, what);
    TANDEM_CHECK(t.device() == be_.kind(),
                 "group '{}' (staged through host memory for backend {}) moves {} tensors: {} {} "
                 "is {}",
                 name(), be_.name(), device_name(be_.kind()), op, what, t.describe());
  }

  std::unique_ptr<Communicator> mpi_;
  Backend& be_;
};

}  // namespace

std::unique_ptr<Communicator> make_staged_communicator(MPI_Comm comm, std::string name,
                                                       double timeout_s, Backend& backend) {
  return std::make_unique<StagedCommunicator>(comm, std::move(name), timeout_s, backend);
}

}  // namespace tandem
