// The train command (contract in train_command.h).
#include "launch/train_command.h"

#include <spdlog/spdlog.h>

#include "ckpt/checkpoint_dir.h"
#include "ckpt/tensor_file.h"
#include "launch/rank_setup.h"
#include "parallel/mesh.h"
#include "runtime/core/backend.h"
#include "runtime/core/error.h"

namespace tandem {

CommandArgs parse_command_args(int argc, char** argv, const char* command, AcceptedFlags accept) {
  CommandArgs a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) throw ConfigError(fmt::format("{} needs a value", flag));
      return argv[++i];
    };
    if (s == "--set") a.overrides.push_back(value("--set"));
    else if (s.rfind("--set=", 0) == 0) a.overrides.push_back(s.substr(6));
    else if (accept.train && s == "--metrics-out") a.metrics_out = value("--metrics-out");
    else if (accept.train && s.rfind("--metrics-out=", 0) == 0) a.metrics_out = s.substr(14);
    else if (accept.train && s == "--resume") a.resume = true;
    else if (accept.port_file && s == "--port-file") a.port_file = value("--port-file");
    else if (accept.checkpoint && s == "--checkpoint") a.checkpoint = value("--checkpoint");
    else if (!s.empty() && s[0] == '-') throw ConfigError(fmt::format("unknown option '{}' for tandem {}", s, command));
    else if (a.config.empty()) a.config = s;
    else throw ConfigError(fmt::format("unexpected argument '{}' (config already given: {})", s, a.config));
  }
  if (a.config.empty())
    throw ConfigError(fmt::format("tandem {} needs a CONFIG file (e.g. configs/quickstart.yaml)", command));
  return a;
}

RunConfig check_train_config(const CommandArgs& args, int world_size, bool run) {
  RunConfig cfg = load_config(args.config, args.overrides);
  if (run && cfg.serve.mode == "dedicated") {
    if (cfg.serve.ranks >= world_size)
      throw ConfigError(fmt::format("serve.ranks={} sets apart every one of the job's {} ranks; the "
                                    "trainers need at least one", cfg.serve.ranks, world_size));
    try {
      check_layout(cfg, world_size - cfg.serve.ranks);
    } catch (const ConfigError& e) {
      throw ConfigError(fmt::format("{} (the training ranks: the job's {} less serve.ranks={})", e.what(),
                                    world_size, cfg.serve.ranks));
    }
  } else {
    check_layout(cfg, world_size);
  }
  if (!cfg.train.checkpoint.dir.empty()) {  // a directory we cannot write fails now, not at the first save
    try {
      ckpt::check_writable_dir(cfg.train.checkpoint.dir);
    } catch (const ckpt::CheckpointError& e) {
      throw ConfigError(fmt::format("train.checkpoint.dir: {}", e.what()));
    }
  }
  if (args.resume) {
    const std::string& dir = cfg.train.checkpoint.dir;
    if (dir.empty())
      throw ConfigError("--resume needs a checkpoint directory: set train.checkpoint.dir (e.g. --set train.checkpoint.dir=out/ckpt)");
    if (!ckpt::latest_checkpoint(dir))
      throw ConfigError(fmt::format("--resume: no checkpoint to resume from in {} (train.checkpoint.dir): "
                                    "{}/latest does not exist", dir, dir));
  }
  return cfg;
}

TrainerOptions trainer_options(const RunConfig& cfg, const CommandArgs& args) {
  TrainerOptions to;
  to.model = cfg.model;
  to.train = cfg.train;
  to.data = cfg.data;
  to.parallel = cfg.parallel;
  to.sample = cfg.sample;
  to.metrics_out = args.metrics_out;
  to.config_yaml = config_to_yaml(cfg);
  to.resume = args.resume;
  return to;
}

int run_train(MpiEnv& env, int argc, char** argv) {
  RunConfig cfg;
  CommandArgs args;
  auto check = [&] {
    args = parse_command_args(argc, argv, "train", {.train = true});
    cfg = check_train_config(args, env.world_size());
  };
  if (!config_ok_everywhere(check, env.rank())) return 2;

  auto backend = make_rank_backend(cfg.train.device, cfg.train.threads, env, cfg.parallel.device_comm);
  spdlog::info("tandem train {} | ranks {} | backend {}", args.config, env.world_size(), backend->name());
  spdlog::info("config:\n{}", describe_config(cfg));
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(env.world(), p, *backend);
  Trainer trainer(*backend, trainer_options(cfg, args), mesh);
  trainer.run();
  return 0;
}

}  // namespace tandem
