// Command-line front door: subcommand dispatch and the single place errors end a run.
#include "launch/cli.h"

#include <spdlog/spdlog.h>

#include <sched.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ckpt/checkpoint_dir.h"
#include "launch/ckpt_command.h"
#include "launch/config.h"
#include "launch/data_command.h"
#include "launch/rank_setup.h"
#include "launch/client_commands.h"
#include "launch/serve_command.h"
#include "parallel/device_binding.h"
#include "parallel/mesh.h"
#include "parallel/mpi_env.h"
#include "runtime/core/backend.h"
#include "runtime/core/logging.h"
#include "runtime/train/trainer.h"

namespace tandem {

namespace {

constexpr const char* kUsage = R"(tandem — train and serve GPT-style models across MPI ranks

usage:
  tandem train CONFIG [--set key.path=value ...] [--metrics-out FILE] [--resume]
      Train as the YAML config says (see docs/config.md). Launch with mpirun/srun for
      several ranks; every rank runs the same command. --resume continues from the
      checkpoint `latest` names in train.checkpoint.dir (any parallel layout).
  tandem ckpt inspect DIR|FILE | export-hf DIR|FILE OUT | import-hf IN DIR
      Checkpoint tools (docs/checkpoints.md): contents and checksums; Hugging Face GPT-2
      safetensors out and in.
  tandem data prepare --tokenizer DIR --input PATH --out DIR [--format brown|text]
                      [--val-fraction F] [--shard-tokens N]
      Tokenize text with the GPT-2 BPE into train/val token shards.
  tandem serve CONFIG --checkpoint DIR|FILE [--set key.path=value ...] [--port-file FILE]
      Serve a checkpoint over Cap'n Proto RPC (serve.listen) under the config's layout, with
      Prometheus metrics on serve.metrics_listen (docs/serving.md). Stops on SIGINT/SIGTERM.
  tandem generate --server HOST:PORT --prompt TEXT [--max-tokens N] [--priority realtime|batch]
                  [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop TEXT ...]
                  [--deadline SECONDS]
      Stream a completion to stdout; an error prints its kind to stderr (non-zero exit).
  tandem bench-serve --server HOST:PORT [--rate R] [--requests N] [--realtime-fraction F]
                     [--prompt-tokens MIN:MAX] [--output-tokens MIN:MAX] [--seed S] [--json FILE]
      Open-loop load generator: Poisson arrivals; TTFT/TPOT percentiles per class.
  tandem --help
)";

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string metrics_out;
  bool resume = false;
};

TrainArgs parse_train_args(int argc, char** argv) {
  TrainArgs a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const char* flag) -> std::string {
      TANDEM_CHECK(i + 1 < argc, "{} needs a value", flag);
      return argv[++i];
    };
    if (s == "--set") a.overrides.push_back(value("--set"));
    else if (s.rfind("--set=", 0) == 0) a.overrides.push_back(s.substr(6));
    else if (s == "--metrics-out") a.metrics_out = value("--metrics-out");
    else if (s.rfind("--metrics-out=", 0) == 0) a.metrics_out = s.substr(14);
    else if (s == "--resume") a.resume = true;
    else if (!s.empty() && s[0] == '-') throw ConfigError(fmt::format("unknown option '{}' for tandem train", s));
    else if (a.config.empty()) a.config = s;
    else throw ConfigError(fmt::format("unexpected argument '{}' (config already given: {})", s, a.config));
  }
  if (a.config.empty()) throw ConfigError("tandem train needs a CONFIG file (e.g. configs/quickstart.yaml)");
  return a;
}

int run_train(MpiEnv& env, int argc, char** argv) {
  RunConfig cfg;
  TrainArgs args;
  auto check = [&] {
    args = parse_train_args(argc, argv);
    cfg = load_config(args.config, args.overrides);
    check_layout(cfg, env.world_size());
    if (args.resume) {
      const std::string& dir = cfg.train.checkpoint.dir;
      if (dir.empty())
        throw ConfigError("--resume needs a checkpoint directory: set train.checkpoint.dir (e.g. --set train.checkpoint.dir=out/ckpt)");
      if (!ckpt::latest_checkpoint(dir))
        throw ConfigError(fmt::format("--resume: no checkpoint to resume from in {} (train.checkpoint.dir): "
                                      "{}/latest does not exist", dir, dir));
    }
  };
  if (!config_ok_everywhere(check, env.rank())) return 2;

  int threads = cfg.train.threads;
  if (threads == 0) threads = default_threads(env.local_size());
  BackendOptions bo;
  bo.device = cfg.train.device;
  bo.threads = threads;
  auto backend = make_backend(bo_for_rank(bo, env));
  spdlog::info("tandem train {} | ranks {} | backend {}", args.config, env.world_size(), backend->name());
  spdlog::info("config:\n{}", describe_config(cfg));

  TrainerOptions to;
  to.model = cfg.model;
  to.train = cfg.train;
  to.data = cfg.data;
  to.parallel = cfg.parallel;
  to.sample = cfg.sample;
  to.metrics_out = args.metrics_out;
  to.config_yaml = config_to_yaml(cfg);
  to.resume = args.resume;
  const ParallelOptions& p = cfg.parallel;
  Mesh mesh(env.world(), p.dp, p.tp, p.pp, p.order, backend->kind(), p.timeout_s, backend->cuda());
  Trainer trainer(*backend, to, mesh);
  trainer.run();
  return 0;
}

}  // namespace

int cli_main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd.empty() || cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, cmd.empty() ? stderr : stdout);
    return cmd.empty() ? 2 : 0;
  }
  if (cmd == "data") {
    try {
      return data_command(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tandem data: error: %s\n", e.what());
      return 2;
    }
  }
  if (cmd == "ckpt") {
    MpiEnv env(&argc, &argv);
    try {
      return ckpt_command(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tandem ckpt: error: %s\n", e.what());
      return 2;
    }
  }
  if (cmd == "generate" || cmd == "bench-serve") {
    try {
      return cmd == "generate" ? generate_command(argc - 2, argv + 2)
                               : bench_serve_command(argc - 2, argv + 2);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "tandem %s: error: %s\n", cmd.c_str(), e.what());
      return 2;
    }
  }
  if (cmd != "train" && cmd != "serve") {
    std::fprintf(stderr, "tandem: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  MpiEnv env(&argc, &argv);
  init_logging(env.rank(), env.world_size());
  try {
    if (cmd == "serve") return serve_command(env, argc - 2, argv + 2);
    return run_train(env, argc - 2, argv + 2);
  } catch (const std::exception& e) {
    // A failure on one rank ends the whole job: nobody is left waiting in a collective.
    // Tandem's own line comes first (tests and users look for it, not for the launcher's
    // wording, which Open MPI may fail to print under load).
    spdlog::critical("rank {}: {}", env.rank(), e.what());
    std::fprintf(stderr, "tandem: rank %d failed: %s; aborting the job (MPI_Abort, exit code %d)\n",
                 env.rank(), e.what(), kAbortExitCode);
    std::fflush(stderr);
    MpiEnv::abort(kAbortExitCode);
  }
}

}  // namespace tandem
