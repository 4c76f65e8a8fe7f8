// ReplicaExecutor: runs one engine step on every rank of a serving replica (one tp x pp group).
//
// The leader (tp 0 of pp stage 0) broadcasts each step's StepMessage over the replica's host
// control communicator; every rank then runs the same forward: virtual stage v lives on pp
// rank v % pp as chunk v / pp, activations pass stage to stage as in training but over the
// engine's own duplicate of the pp group (Mesh::duplicate: serving windows open while
// training sends are in flight), tensor-parallel reductions run inside the blocks, the head
// stage samples with the vocabulary-sharded TokenSampler, and the sampled ids are broadcast from the head stage's
// tp 0 over the control communicator, so every rank returns the same tokens.
// Collective order per step (identical on every rank): control broadcasts (length, message);
// per stage the tp all-reduces of the blocks and one pp send/recv; the sampler's tp
// all-reduces; the token broadcast. All MPI calls happen on the calling (main) thread.
//
// Contract: every rank of the replica constructs it (collective: splits the world
// communicator by dp) with identical arguments and then calls exchange()+run() in lockstep.
#pragma once

#include <memory>
#include <vector>

#include "parallel/communicator.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_replica.h"
#include "runtime/model/token_sampler.h"
#include "serve/step_executor.h"
#include "serve/step_wire.h"

namespace tandem::serve {

class ReplicaExecutor : public StepExecutor {
 public:
  ReplicaExecutor(ModelReplica& replica, int64_t kv_blocks, int64_t block_tokens,
                  double timeout_s);
  ~ReplicaExecutor() override;

  bool is_leader() const override { return control_->rank() == 0; }
  // Leader passes the message and gets it back; followers pass nullptr and receive it.
  StepMessage exchange(const StepMessage* leader_message) override;
  // Runs a Forward or Recompute step; returns the sampled token of every logit row.
  std::vector<int32_t> run(const StepMessage& m) override;
  int64_t weights_version() const override { return replica_.weights_version(); }

  size_t kv_bytes() const;
  int64_t kv_blocks() const { return kv_blocks_; }
  int64_t block_tokens() const { return block_tokens_; }
  ModelReplica& replica() { return replica_; }

 private:
  Tensor forward_stage(int chunk, const StepMessage& m, const Tensor* input);
  Tensor recompute_stage(int chunk, const StepMessage& m, const Tensor* input);
  std::vector<int32_t> broadcast_tokens(std::vector<int32_t> tokens, int64_t rows);

  ModelReplica& replica_;
  int64_t kv_blocks_, block_tokens_;
  std::unique_ptr<Communicator> control_;
  std::unique_ptr<Communicator> pp_;  // the engine's own pp group (Mesh::duplicate)
  std::vector<std::unique_ptr<KvCache>> caches_;  // one per chunk
  std::unique_ptr<TokenSampler> sampler_;         // head stage only
  int head_chunk_ = -1;
};

}  // namespace tandem::serve
