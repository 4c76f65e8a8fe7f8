// serve.mode dedicated (contract in run_dedicated.h).
#include "launch/run_dedicated.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "launch/rank_setup.h"
#include "launch/serve_front.h"
#include "parallel/mesh.h"
#include "parallel/mpi_communicator.h"
#include "runtime/core/backend.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/model/model_replica.h"
#include "runtime/train/trainer.h"
#include "serve/dedicated_serving.h"
#include "serve/replica_executor.h"
#include "serve/weight_sync.h"

namespace tandem {

namespace {

// The serving group's config: the same model and serve.*, parallel.* = the serving layout.
RunConfig serving_config(const RunConfig& cfg) {
  RunConfig s = cfg;
  s.parallel.tp = cfg.serve.tp;
  s.parallel.pp = cfg.serve.pp;
  s.parallel.dp = cfg.serve.ranks / (cfg.serve.tp * cfg.serve.pp);
  s.parallel.chunks = 1;
  return s;
}

struct CommGuard {
  MPI_Comm c = MPI_COMM_NULL;
  ~CommGuard() {
    if (c != MPI_COMM_NULL) MPI_Comm_free(&c);
  }
};

int train_side(MpiEnv& env, const RunConfig& cfg, const CommandArgs& args, Backend& backend, MPI_Comm part) {
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(part, p, backend);
  Trainer trainer(backend, trainer_options(cfg, args), mesh);
  const bool sender = mesh.dp_rank() == 0;
  serve::WeightSync sync(env.world(), sender ? serve::SyncRole::Sender : serve::SyncRole::Idle,
                         sender ? &trainer.replica() : nullptr, false, p.timeout_s);
  serve::WeightPublisher pub(sync, cfg.serve.sync_every);
  trainer.begin();
  pub.begin(trainer.replica().weights_version());
  trainer.set_safe_point_handler(&pub);
  double train_s = 0.0;
  int steps = 0;
  for (int s = trainer.first_step(); s <= trainer.last_step(); ++s, ++steps) train_s += trainer.step(s).seconds;
  trainer.set_safe_point_handler(nullptr);
  pub.finish(trainer.replica().weights_version());
  if (mesh.world_rank() == 0) {
    const serve::WeightSyncStats& w = sync.stats();
    const serve::PublisherStats& ps = pub.stats();
    const double wire_ms = w.probe_gbs > 0 ? static_cast<double>(w.bytes_per_sync) / (w.probe_gbs * 1e9) * 1e3 : 0.0;
    std::printf("dedicated serving (trainers): %lld weight syncs posted (every %d steps; %lld skipped: the "
                "servers had not taken the last), %.2f MB per sync from this rank in %lld messages; "
                "pack + post %.2f ms per sync, sync cost per step %.2f ms = %.3f%% of training time "
                "(MPI progress at other safe points %.1f ms in all); wire time of this rank's bytes at "
                "the probed %.2f GB/s: %.2f ms\n",
                static_cast<long long>(w.syncs), cfg.serve.sync_every, static_cast<long long>(ps.skipped),
                static_cast<double>(w.bytes_per_sync) / 1e6, static_cast<long long>(w.messages),
                w.syncs > 0 ? w.pack_s / static_cast<double>(w.syncs) * 1e3 : 0.0,
                steps > 0 ? ps.sync_s / steps * 1e3 : 0.0, train_s > 0 ? 100.0 * ps.sync_s / train_s : 0.0,
                ps.progress_s * 1e3, w.probe_gbs, wire_ms);
    std::fflush(stdout);
  }
  trainer.finish();
  return 0;
}

int serve_side(MpiEnv& env, const RunConfig& full, const CommandArgs& args, Backend& backend, MPI_Comm part) {
  const RunConfig cfg = serving_config(full);
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(part, p, backend);
  ModelReplica serving(backend, mesh, cfg.model, p, 1, /*inference_only=*/true);
  const ServeOptions& so = cfg.serve;
  serve::ReplicaExecutor exec(serving, so.kv_blocks, so.kv_block_tokens, p.timeout_s);
  std::unique_ptr<BpeTokenizer> tok;
  if (exec.is_leader()) tok = std::make_unique<BpeTokenizer>(BpeTokenizer::load(cfg.data.tokenizer));
  int part_rank = 0;
  MPI_Comm_rank(part, &part_rank);
  ServeFrontEnds front(part, part_rank, cfg, mesh, exec, tok.get(), args.config, {});
  serve::WeightSync sync(env.world(), serve::SyncRole::Receiver, &serving, exec.is_leader(), p.timeout_s);
  CommGuard replica_comm;
  TANDEM_MPI_CHECK(MPI_Comm_split(part, mesh.dp_rank(), part_rank, &replica_comm.c));
  serve::DedicatedServer server(front.engine(), exec, serving, sync, replica_comm.c);
  server.begin();
  spdlog::info("serving rank {}: {} | weights of step {} received ({:.1f} MB on this rank, {} messages)",
               part_rank, mesh.describe(), serving.weights_version(),
               static_cast<double>(sync.stats().bytes_per_sync) / 1e6, sync.stats().messages);
  front.start(args.port_file);
  server.loop();
  if (exec.is_leader()) {
    const serve::ServerStats& s = server.stats();
    const serve::WeightSyncStats& w = sync.stats();
    std::printf("dedicated serving (server replica %d): %lld weight versions received, flip %.2f ms each "
                "(wait + unpack of %.2f MB), weights version %lld at the end; staleness max %lld, mean "
                "%.2f versions behind the trainers; %lld windows, %lld engine steps\n",
                mesh.dp_rank(), static_cast<long long>(w.syncs),
                w.syncs > 0 ? w.flip_s / static_cast<double>(w.syncs) * 1e3 : 0.0,
                static_cast<double>(w.bytes_per_sync) / 1e6, static_cast<long long>(serving.weights_version()),
                static_cast<long long>(s.max_staleness), s.loops > 0 ? s.staleness_sum / static_cast<double>(s.loops) : 0.0,
                static_cast<long long>(s.windows), static_cast<long long>(s.steps));
    std::fflush(stdout);
  }
  front.stop();
  return 0;
}

}  // namespace

int run_dedicated(MpiEnv& env, const RunConfig& cfg, const CommandArgs& args) {
  const int trainers = env.world_size() - cfg.serve.ranks;
  const bool trains = env.rank() < trainers;
  auto backend = make_rank_backend(cfg.train.device, cfg.train.threads, env, cfg.parallel.device_comm);
  if (env.rank() == 0)
    spdlog::info("tandem run {} | ranks {} | backend {} | serve.mode dedicated: ranks 0-{} train, {}-{} serve "
                 "(tp {} x pp {} per replica), weights every {} steps",
                 args.config, env.world_size(), backend->name(), trainers - 1, trainers, env.world_size() - 1,
                 cfg.serve.tp, cfg.serve.pp, cfg.serve.sync_every);
  if (env.rank() == 0) spdlog::info("config:\n{}", describe_config(cfg));
  CommGuard part;
  TANDEM_MPI_CHECK(MPI_Comm_split(env.world(), trains ? 0 : 1, env.rank(), &part.c));
  return trains ? train_side(env, cfg, args, *backend, part.c) : serve_side(env, cfg, args, *backend, part.c);
}

}  // namespace tandem
