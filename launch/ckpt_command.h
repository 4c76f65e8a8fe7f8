// `tandem ckpt ...`: checkpoint tools (one process; MPI initialised by the caller).
//
//   tandem ckpt inspect DIR|FILE        step, versions, config, every tensor (shape, dtype,
//                                       checksum recomputed and compared), size on disk
//   tandem ckpt export-hf DIR|FILE OUT  the weights as a Hugging Face GPT-2 directory
//                                       (OUT/model.safetensors + OUT/config.json)
//   tandem ckpt import-hf IN DIR        a Hugging Face GPT-2 (directory or .safetensors file
//                                       with config.json beside it) -> a weights-only Tandem
//                                       checkpoint at step 0 in DIR, ready for `train --resume`
// Contract: argv[0] is the subcommand. Returns the exit status (0, or 1 when inspect finds a
// checksum that disagrees); errors throw (CheckpointError, ConfigError) naming the file and
// the value, and nothing is written on failure except a temporary that publish never renames.
#pragma once

namespace tandem {

int ckpt_command(int argc, char** argv);

}  // namespace tandem
