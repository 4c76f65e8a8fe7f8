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
#include "launch/run_command.h"
#include "launch/serve_command.h"
#include "launch/train_command.h"
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
  tandem run CONFIG [--set key.path=value ...] [--metrics-out FILE] [--resume] [--port-file FILE]
      Train as `tandem train` does and serve the weights being trained over RPC, as
      serve.mode says (windows: the training ranks answer at safe points; dedicated: the
      last serve.ranks ranks serve, fed the trainers' weights; docs/serving.md).
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
  if (cmd != "train" && cmd != "serve" && cmd != "run") {
    std::fprintf(stderr, "tandem: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  MpiEnv env(&argc, &argv);
  init_logging(env.rank(), env.world_size());
  try {
    if (cmd == "serve") return serve_command(env, argc - 2, argv + 2);
    if (cmd == "run") return run_command(env, argc - 2, argv + 2);
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
