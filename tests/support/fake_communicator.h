// Test support: a Communicator that claims a rank/size but moves no data (collectives are
// identities). Lets single-process tests build the tensor-parallel shard layout of rank r.
#pragma once

#include <string>

#include "parallel/communicator.h"

namespace tandem::testing {

class LayoutOnlyCommunicator final : public Communicator {
 public:
  LayoutOnlyCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  void all_reduce(Tensor&, ReduceOp) override {}
  void reduce_scatter(Tensor&, const Tensor&) override { unsupported(); }
  void all_gather(Tensor&, const Tensor&) override { unsupported(); }
  void broadcast(Tensor&, int) override {}
  void send(const Tensor&, int, int) override { unsupported(); }
  void recv(Tensor&, int, int) override { unsupported(); }
  std::unique_ptr<Request> iall_reduce(Tensor&, ReduceOp) override { unsupported(); }
  std::unique_ptr<Request> ireduce_scatter(Tensor&, const Tensor&) override { unsupported(); }
  std::unique_ptr<Request> iall_gather(Tensor&, const Tensor&) override { unsupported(); }
  std::unique_ptr<Request> isend(const Tensor&, int, int) override { unsupported(); }
  std::unique_ptr<Request> irecv(Tensor&, int, int) override { unsupported(); }
  void barrier() override {}

 private:
  [[noreturn]] static void unsupported() { throw Error("LayoutOnlyCommunicator moves no data"); }
  int rank_, size_;
  std::string name_ = "layout-only";
};

}  // namespace tandem::testing
