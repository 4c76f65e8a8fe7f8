// The run command: trainer + serving copy of its weights + engine + RPC front ends, with the
// engine called at the trainer's safe points (serve.mode windows).
#include "launch/run_command.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

#include "launch/rank_setup.h"
#include "launch/run_dedicated.h"
#include "launch/serve_front.h"
#include "launch/train_command.h"
#include "parallel/mesh.h"
#include "runtime/core/backend.h"
#include "runtime/core/error.h"
#include "runtime/data/bpe_tokenizer.h"
#include "serve/replica_executor.h"
#include "serve/serving_windows.h"

namespace tandem {

namespace {

void check_run_mode(const RunConfig& cfg) {
  if (cfg.serve.mode == "off")
    throw ConfigError("tandem run serves while it trains: set serve.mode: windows or dedicated (e.g. "
                      "--set serve.mode=windows), or use tandem train; serve.mode is 'off'");
}

}  // namespace

int run_command(MpiEnv& env, int argc, char** argv) {
  RunConfig cfg;
  CommandArgs args;
  auto check = [&] {
    args = parse_command_args(argc, argv, "run", {.train = true, .port_file = true});
    cfg = check_train_config(args, env.world_size(), true);
    check_run_mode(cfg);
  };
  if (!config_ok_everywhere(check, env.rank())) return 2;
  if (cfg.serve.mode == "dedicated") return run_dedicated(env, cfg, args);

  auto backend = make_rank_backend(cfg.train.device, cfg.train.threads, env, cfg.parallel.device_comm);
  spdlog::info("tandem run {} | ranks {} | backend {} | serve.mode {}", args.config, env.world_size(),
               backend->name(), cfg.serve.mode);
  spdlog::info("config:\n{}", describe_config(cfg));
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(env.world(), p, *backend);
  Trainer trainer(*backend, trainer_options(cfg, args), mesh);

  // The serving copy: the same layout as the trainer's replica, refreshed at safe points.
  ModelReplica serving(*backend, mesh, cfg.model, p, trainer.replica().num_chunks(), /*inference_only=*/true);
  const ServeOptions& so = cfg.serve;
  serve::ReplicaExecutor exec(serving, so.kv_blocks, so.kv_block_tokens, p.timeout_s);
  std::unique_ptr<BpeTokenizer> tok;
  if (exec.is_leader()) tok = std::make_unique<BpeTokenizer>(BpeTokenizer::load(cfg.data.tokenizer));
  ServeFrontEnds front(env.world(), env.rank(), cfg, mesh, exec, tok.get(), args.config, {});
  serve::WindowsOptions wo;
  wo.batch_budget = so.batch_budget;
  wo.between_steps_only = so.window_points == "steps";
  wo.max_window_s = so.max_window_ms / 1e3;
  serve::ServingWindows windows(front.engine(), exec, trainer.replica(), serving, wo);

  trainer.begin();
  serve::ServingWindows::copy_weights(trainer.replica(), serving);  // initial or resumed weights
  spdlog::info("serving copy: {:.1f} MB of weights, KV cache {} blocks x {} tokens ({:.1f} MB) on this rank",
               static_cast<double>(serving.parameters()) * 4 / 1e6, so.kv_blocks, so.kv_block_tokens,
               static_cast<double>(exec.kv_bytes()) / 1e6);
  front.engine().with_core([&](serve::EngineCore& c) { c.refreshed(serving.weights_version()); });
  front.engine().set_ready(true);
  front.start(args.port_file);
  trainer.set_safe_point_handler(&windows);
  double train_s = 0.0;
  for (int s = trainer.first_step(); s <= trainer.last_step(); ++s) train_s += trainer.step(s).seconds;
  trainer.set_safe_point_handler(nullptr);
  windows.finish();  // answers what is admitted or queued, then stops the engine on every rank

  if (exec.is_leader()) {
    const serve::WindowsStats& w = windows.stats();
    int64_t points = 0;
    for (int64_t n : w.safe_points) points += n;
    std::printf("serving windows (replica %d): %lld safe points (%lld between steps, %lld between "
                "actions, %lld in forward, %lld in backward, %lld in the head), %lld windows, %lld "
                "engine steps, %lld weight refreshes, %.2f s in windows; idle checks %.1f ms = "
                "%.3f%% of training time; longest gap between safe points %.1f ms (%s -> %s), "
                "%.1f ms after the first step (serve.max_wait_ms %.0f)\n",
                mesh.dp_rank(), static_cast<long long>(points),
                static_cast<long long>(w.safe_points[0]), static_cast<long long>(w.safe_points[1]),
                static_cast<long long>(w.safe_points[2]), static_cast<long long>(w.safe_points[3]),
                static_cast<long long>(w.safe_points[4]), static_cast<long long>(w.windows),
                static_cast<long long>(w.steps), static_cast<long long>(w.refreshes), w.window_s,
                w.idle_check_s * 1e3, train_s > 0 ? 100.0 * w.idle_check_s / train_s : 0.0,
                w.max_gap_s * 1e3, safe_point_name(w.max_gap_from), safe_point_name(w.max_gap_to),
                w.max_gap_after_first_s * 1e3, so.max_wait_ms);
    std::fflush(stdout);
  }
  trainer.finish();
  front.stop();
  return 0;
}

}  // namespace tandem
