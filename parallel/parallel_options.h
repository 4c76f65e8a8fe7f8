// ParallelOptions (YAML section `parallel`): the layout and memory strategy of a run.
//
// Contract: plain data, validated by launch/config (and against the world size by the Mesh).
// dp * tp * pp must equal the world size; `microbatches` divides the per-dp-rank batch.
#pragma once

#include <string>

namespace tandem {

enum class Recompute { None, Selective, Full };

struct ParallelOptions {
  int dp = 1;
  int tp = 1;
  int pp = 1;
  int microbatches = 1;            // per optimizer step, per data-parallel rank
  Recompute recompute = Recompute::None;
  int zero = 0;                    // 0: replicated optimizer state; 1: sharded over dp
  bool offload = false;            // optimizer state + step on the host
  std::string order = "tp-dp-pp";  // mesh dimension order, fastest-varying first
  std::string schedule = "1f1b";   // gpipe | 1f1b | interleaved
  int chunks = 1;                  // model chunks (virtual stages) per pipeline rank; > 1 needs interleaved
  int bucket_mb = 16;              // data-parallel gradient bucket size in MiB
  double timeout_s = 300.0;        // watchdog for blocking collectives
  std::string device_comm = "auto";  // auto | nccl | staged: how groups move device tensors
                                     // (parallel/device_comm.h)
};

inline const char* recompute_name(Recompute r) {
  switch (r) {
    case Recompute::None: return "none";
    case Recompute::Selective: return "selective";
    case Recompute::Full: return "full";
  }
  return "?";
}

}  // namespace tandem
