// Communicator's default batch_isend_irecv: every receive, then every send, posted with the
// communicator's own irecv/isend, and one Request over all of them. Contract: communicator.h.
#include "parallel/communicator.h"

namespace tandem {

namespace {

// Complete when every part is; wait() waits for each in turn (each with its own watchdog).
// Dropped before completion, the parts are dropped too, each drained as its own kind says.
class BatchRequest final : public Request {
 public:
  explicit BatchRequest(std::vector<std::unique_ptr<Request>> parts) : parts_(std::move(parts)) {}
  bool test() override {
    bool done = true;
    for (auto& p : parts_) done = p->test() && done;  // test every part: each drives progress
    return done;
  }
  void wait() override {
    for (auto& p : parts_) p->wait();
  }

 private:
  std::vector<std::unique_ptr<Request>> parts_;
};

}  // namespace

std::unique_ptr<Request> Communicator::batch_isend_irecv(const std::vector<P2POp>& ops) {
  std::vector<std::unique_ptr<Request>> parts;
  for (const P2POp& op : ops)
    if (op.kind == P2POp::Kind::Recv) {
      Tensor t = op.tensor;
      parts.push_back(irecv(t, op.peer, op.tag));
    }
  for (const P2POp& op : ops)
    if (op.kind == P2POp::Kind::Send) parts.push_back(isend(op.tensor, op.peer, op.tag));
  return std::make_unique<BatchRequest>(std::move(parts));
}

}  // namespace tandem
