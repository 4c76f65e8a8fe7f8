// One serving step across a replica's ranks (contract in replica_executor.h).
#include "serve/replica_executor.h"

#include <mpi.h>

#include "parallel/mpi_communicator.h"
#include "parallel/pipeline_schedule.h"
#include "runtime/core/error.h"

namespace tandem::serve {

namespace {
constexpr int kActivationTag = 7100;
}

ReplicaExecutor::ReplicaExecutor(ModelReplica& replica, int64_t kv_blocks, int64_t block_tokens,
                                 double timeout_s)
    : replica_(replica), kv_blocks_(kv_blocks), block_tokens_(block_tokens) {
  Mesh& mesh = replica.mesh();
  MPI_Comm split = MPI_COMM_NULL;
  const int key = mesh.pp_rank() * mesh.tp_size() + mesh.tp_rank();
  TANDEM_MPI_CHECK(MPI_Comm_split(mesh.world_comm(), mesh.dp_rank(), key, &split));
  control_ = make_mpi_communicator(split, fmt::format("serve-replica[dp{}]", mesh.dp_rank()),
                                   timeout_s);
  MPI_Comm_free(&split);
  // Activations between stages go over a pp group of the engine's own, so that a window
  // opened at a training safe point (training sends still in flight on mesh.pp()) can never
  // match a training message.
  pp_ = mesh.duplicate(Axis::PP, fmt::format("serve-pp[dp{}]", mesh.dp_rank()));
  for (int c = 0; c < replica.num_chunks(); ++c) {
    Gpt& g = replica.chunk(c);
    caches_.push_back(g.make_kv_cache(kv_blocks, block_tokens));
    if (g.stage().has_head) {
      head_chunk_ = c;
      sampler_ = std::make_unique<TokenSampler>(replica.backend(), mesh.tp(), g.vocab_begin(),
                                                g.local_vocab(), replica.options().vocab);
    }
  }
}

ReplicaExecutor::~ReplicaExecutor() = default;

size_t ReplicaExecutor::kv_bytes() const {
  size_t b = 0;
  for (const auto& c : caches_) b += c->bytes();
  return b;
}

StepMessage ReplicaExecutor::exchange(const StepMessage* leader_message) {
  TANDEM_CHECK((leader_message != nullptr) == is_leader(),
               "exchange: the leader passes the message, followers nullptr (rank {})",
               control_->rank());
  std::vector<int32_t> wire;
  if (leader_message) wire = encode_step(*leader_message);
  int32_t len = static_cast<int32_t>(wire.size());
  Tensor lt = Tensor::wrap(&len, DeviceKind::CPU, {1}, DType::I32);
  control_->broadcast(lt, 0);
  wire.resize(static_cast<size_t>(len));
  Tensor wt = Tensor::wrap(wire.data(), DeviceKind::CPU, {len}, DType::I32);
  control_->broadcast(wt, 0);
  if (leader_message) return *leader_message;
  return decode_step(wire);
}

Tensor ReplicaExecutor::forward_stage(int chunk, const StepMessage& m, const Tensor* input) {
  return replica_.chunk(chunk).forward_cached(m.batch, input, *caches_[static_cast<size_t>(chunk)]);
}

Tensor ReplicaExecutor::recompute_stage(int chunk, const StepMessage& m, const Tensor* input) {
  // Every sequence's whole context through the dense training path, one sequence at a time;
  // the head stage returns the final LayerNorm of each sequence's last row.
  Gpt& g = replica_.chunk(chunk);
  Backend& be = replica_.backend();
  const InferBatch& b = m.batch;
  const int64_t C = replica_.options().dim, N = b.num_tokens(), S = b.num_seqs();
  Tensor out = step_rows(be, g.stage().has_head ? S : N, C);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t r0 = b.q_start[s], T = b.q_start[s + 1] - r0;
    TANDEM_CHECK(b.positions[r0] == 0, "recompute step: sequence {} starts at position {}", s,
                 b.positions[r0]);
    Tensor in;
    if (input) in = input->rows(r0, r0 + T);
    auto st = g.forward(1, T, b.tokens.data() + r0, input ? &in : nullptr, nullptr, false, 1.0f);
    if (g.stage().has_head) {
      Tensor dst = out.rows(s, s + 1);
      be.copy(dst, st->output.rows(T - 1, T));
    } else {
      Tensor dst = out.rows(r0, r0 + T);
      be.copy(dst, st->output);
    }
  }
  return out;
}

std::vector<int32_t> ReplicaExecutor::run(const StepMessage& m) {
  TANDEM_CHECK(m.command == StepCommand::Forward || m.command == StepCommand::Recompute,
               "run: step command {} is not a forward", static_cast<int>(m.command));
  Mesh& mesh = replica_.mesh();
  Backend& be = replica_.backend();
  const int pp = mesh.pp_size(), V = replica_.virtual_stages();
  const int64_t N = m.batch.num_tokens(), C = replica_.options().dim;
  const bool recompute = m.command == StepCommand::Recompute;
  const int64_t R = recompute ? m.batch.num_seqs() : static_cast<int64_t>(m.batch.logit_rows.size());
  TANDEM_CHECK(static_cast<int64_t>(m.sampling.size()) == R,
               "step: {} sampling entries for {} rows to sample", m.sampling.size(), R);
  Tensor x;
  std::vector<int32_t> tokens;
  for (int v = 0; v < V; ++v) {
    const StageChunk sc = stage_chunk_of(pp, v);
    if (sc.stage != mesh.pp_rank()) continue;
    Tensor input;
    if (v > 0) {
      const int prev = stage_chunk_of(pp, v - 1).stage;
      if (prev == mesh.pp_rank()) {
        input = x;
      } else {
        input = step_rows(be, N, C);
        pp_->recv(input, prev, kActivationTag + v);
      }
    }
    x = recompute ? recompute_stage(sc.chunk, m, v > 0 ? &input : nullptr)
                  : forward_stage(sc.chunk, m, v > 0 ? &input : nullptr);
    if (v + 1 < V) {
      const int next = stage_chunk_of(pp, v + 1).stage;
      if (next != mesh.pp_rank()) pp_->send(x, next, kActivationTag + v + 1);
    } else {
      Gpt& head = replica_.chunk(sc.chunk);
      Tensor logits = head.head_logits(x);
      tokens = sampler_->sample(logits, m.sampling);
    }
  }
  return broadcast_tokens(std::move(tokens), R);
}

std::vector<int32_t> ReplicaExecutor::broadcast_tokens(std::vector<int32_t> tokens, int64_t rows) {
  Mesh& mesh = replica_.mesh();
  tokens.resize(static_cast<size_t>(rows), 0);
  if (rows == 0) return tokens;
  const int root = (mesh.pp_size() - 1) * mesh.tp_size();  // tp 0 of the last stage
  Tensor t = Tensor::wrap(tokens.data(), DeviceKind::CPU, {rows}, DType::I32);
  control_->broadcast(t, root);
  return tokens;
}

}  // namespace tandem::serve
