// `tandem train CONFIG [--set key.path=value ...] [--metrics-out FILE] [--resume]`, and the
// argument and option plumbing `tandem run` and `tandem serve` share with it.
#pragma once

#include <string>
#include <vector>

#include "launch/config.h"
#include "parallel/mpi_env.h"
#include "runtime/train/trainer.h"

namespace tandem {

// The arguments of the commands that run on every rank: CONFIG, --set key=value (repeated),
// and the flags a command accepts.
struct CommandArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string metrics_out;  // --metrics-out (train, run)
  bool resume = false;      // --resume (train, run)
  std::string port_file;    // --port-file (run, serve)
  std::string checkpoint;   // --checkpoint (serve)
};
struct AcceptedFlags {
  bool train = false;       // --metrics-out, --resume
  bool port_file = false;
  bool checkpoint = false;
};

// Parses the arguments after the command word; `command` names it in errors.
CommandArgs parse_command_args(int argc, char** argv, const char* command, AcceptedFlags accept);
// load_config + check_layout + the --resume checks (for config_ok_everywhere). run: the
// config is for `tandem run`, whose serve.mode dedicated sets the last serve.ranks ranks
// apart, so the training layout must fill the others.
RunConfig check_train_config(const CommandArgs& args, int world_size, bool run = false);
TrainerOptions trainer_options(const RunConfig& cfg, const CommandArgs& args);

int run_train(MpiEnv& env, int argc, char** argv);

}  // namespace tandem
