// The size-1 communicator: collectives are identities, point-to-point is an error (a batch
// of no transfers, Communicator's default, is complete at once).
#include <cstring>

#include "parallel/communicator.h"

namespace tandem {

namespace {

class DoneRequest final : public Request {
 public:
  bool test() override { return true; }
  void wait() override {}
};

void local_copy(Tensor& out, const Tensor& in, const char* op) {
  TANDEM_CHECK(out.nbytes() == in.nbytes(), "{} on a group of one: out {} vs in {}", op,
               out.describe(), in.describe());
  TANDEM_CHECK((out.device() == DeviceKind::CPU && in.device() == DeviceKind::CPU) || out.raw() == in.raw(),
               "self communicator copies host tensors only: {} <- {}", out.describe(), in.describe());
  if (out.raw() != in.raw()) std::memcpy(out.raw(), in.raw(), in.nbytes());
}

class SelfCommunicator final : public Communicator {
 public:
  explicit SelfCommunicator(std::string name) : name_(std::move(name)) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  void all_reduce(Tensor&, ReduceOp) override {}
  void reduce_scatter(Tensor& out, const Tensor& in) override { local_copy(out, in, "reduce_scatter"); }
  void all_gather(Tensor& out, const Tensor& in) override { local_copy(out, in, "all_gather"); }
  void broadcast(Tensor&, int root) override {
    TANDEM_CHECK(root == 0, "broadcast root {} in a group of one", root);
  }
  void send(const Tensor&, int peer, int) override { no_peer(peer); }
  void recv(Tensor&, int peer, int) override { no_peer(peer); }
  std::unique_ptr<Request> iall_reduce(Tensor&, ReduceOp) override {
    return std::make_unique<DoneRequest>();
  }
  std::unique_ptr<Request> ireduce_scatter(Tensor& out, const Tensor& in) override {
    reduce_scatter(out, in);
    return std::make_unique<DoneRequest>();
  }
  std::unique_ptr<Request> iall_gather(Tensor& out, const Tensor& in) override {
    all_gather(out, in);
    return std::make_unique<DoneRequest>();
  }
  std::unique_ptr<Request> isend(const Tensor&, int peer, int) override { no_peer(peer); }
  std::unique_ptr<Request> irecv(Tensor&, int peer, int) override { no_peer(peer); }
  void barrier() override {}

 private:
  [[noreturn]] void no_peer(int peer) {
    throw Error(fmt::format("group '{}' has one rank; no peer {} to talk to", name_, peer));
  }
  std::string name_;
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator(const std::string& name) {
  return std::make_unique<SelfCommunicator>(name);
}

}  // namespace tandem
