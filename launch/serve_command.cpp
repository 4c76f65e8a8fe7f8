// The serve command: config -> mesh -> model replica <- checkpoint -> engine + RPC front ends
// (launch/serve_front.h: with parallel.dp > 1 every replica's leader serves its own replica
// on serve.replica_listen and world rank 0 also runs the router on serve.listen).
#include "launch/serve_command.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ckpt/checkpoint_dir.h"
#include "launch/config.h"
#include "launch/rank_setup.h"
#include "launch/serve_front.h"
#include "launch/train_command.h"
#include "parallel/mesh.h"
#include "runtime/core/error.h"
#include "runtime/data/bpe_tokenizer.h"
#include "runtime/model/model_replica.h"
#include "runtime/train/checkpointer.h"
#include "serve/replica_executor.h"
#include "serve/serve_loop.h"

namespace tandem {

namespace {

// The one process-wide flag a signal handler may touch (lock-free atomic).
std::atomic<bool> g_stop_signal{false};
extern "C" void on_stop_signal(int) { g_stop_signal = true; }

CommandArgs parse_serve_args(int argc, char** argv) {
  CommandArgs a = parse_command_args(argc, argv, "serve", {.port_file = true, .checkpoint = true});
  if (a.checkpoint.empty())
    throw ConfigError("tandem serve needs --checkpoint DIR (a checkpoint directory or file)");
  return a;
}

}  // namespace

int serve_command(MpiEnv& env, int argc, char** argv) {
  RunConfig cfg;
  CommandArgs args;
  std::string file;
  auto check = [&] {
    args = parse_serve_args(argc, argv);
    cfg = load_config(args.config, args.overrides);
    check_layout(cfg, env.world_size());
    file = ckpt::resolve_checkpoint(args.checkpoint);
  };
  if (!config_ok_everywhere(check, env.rank())) return 2;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);

  auto backend = make_rank_backend(cfg.train.device, cfg.train.threads, env, cfg.parallel.device_comm);
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(env.world(), p, *backend);
  ModelReplica replica(*backend, mesh, cfg.model, p, 1, /*inference_only=*/true);
  std::vector<CheckpointChunk> chunks;
  for (int c = 0; c < replica.num_chunks(); ++c) chunks.push_back({&replica.chunk(c), nullptr});
  Checkpointer ck(*backend, mesh, cfg.model, 0, chunks);
  const CheckpointIoStats ls = ck.load(file);
  replica.set_weights_version(ls.step);
  spdlog::info("tandem serve {} | {} | weights of step {} from {} ({:.1f} MB in {:.2f} s)", args.config,
               mesh.describe(), ls.step, file, ls.bytes / 1e6, ls.seconds);

  const ServeOptions& so = cfg.serve;
  serve::ReplicaExecutor exec(replica, so.kv_blocks, so.kv_block_tokens, p.timeout_s);
  spdlog::info("KV cache: {} blocks x {} tokens, {:.1f} MB on this rank", so.kv_blocks, so.kv_block_tokens,
               static_cast<double>(exec.kv_bytes()) / 1e6);
  std::unique_ptr<BpeTokenizer> tok;
  if (exec.is_leader()) tok = std::make_unique<BpeTokenizer>(BpeTokenizer::load(cfg.data.tokenizer));
  ServeFrontEnds front(env.world(), env.rank(), cfg, mesh, exec, tok.get(), args.config,
                       [] { return g_stop_signal.load(); });
  front.start(args.port_file);
  serve::serve_loop(front.engine(), exec);
  front.stop();
  spdlog::info("serve: stopped");
  return 0;
}

}  // namespace tandem
