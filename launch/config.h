// RunConfig: the YAML config file (plus `--set key.path=value` overrides) -> per-module options.
//
// Contract: only launch/ knows YAML. load_config reads one YAML document whose top level maps
// the sections model / train / data / parallel / sample / serve to their keys (docs/config.md lists
// every key, type, default and range). A schema table drives parsing: each key has a type, a
// range or set of choices, and a setter into the options struct; missing keys keep the struct
// defaults. Overrides are applied after the file and pass exactly the same checks.
// Every mistake throws tandem::ConfigError naming where it was made ("file:LINE" with a 1-based
// line, or "--set key=value"), the full key path, the offending value and what was expected.
// The result is a pure function of the file text and overrides, so every rank that loads the
// same config validates it identically before any collective or allocation.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "parallel/parallel_options.h"
#include "runtime/data/data_options.h"
#include "runtime/model/model_options.h"
#include "runtime/train/train_options.h"
#include "serve/serve_options.h"

namespace tandem {

struct RunConfig {
  ModelOptions model;
  TrainOptions train;
  DataOptions data;
  ParallelOptions parallel;
  SampleOptions sample;
  ServeOptions serve;
  std::string source;  // the config file's path ("<string>" for config_from_yaml_string)
  // Where each explicitly set key came from: key path -> "file:LINE" or "--set key=value".
  // Keys absent here kept their defaults. Used to point later checks at the right line.
  std::map<std::string, std::string> origins;
};

// Reads and validates `path`, then applies `overrides` ("key.path=value", value parsed as a
// YAML scalar or flow value; for string keys an unquoted value is taken verbatim).
// Throws ConfigError on a missing file, malformed YAML, unknown or duplicate keys, wrong types,
// out-of-range values and inconsistent values (model.dim % model.heads != 0).
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides);

// The same as load_config on in-memory text; `source` names it in error messages.
RunConfig config_from_yaml_string(const std::string& text,
                                  const std::vector<std::string>& overrides,
                                  const std::string& source = "<string>");

// Checks the parallel layout against the job, identically on every rank before any
// collective; throws ConfigError naming the keys and the rule broken: dp*tp*pp != world_size,
// heads or padded vocabulary not divisible by tp, fewer layers than pipeline stages,
// micro-batches that do not divide the batch, and schedule rules (1F1B needs
// microbatches >= pp; interleaved needs microbatches % pp == 0 and chunks >= 2).
void check_layout(const RunConfig& cfg, int world_size);

// Throws ConfigError unless train.batch % (parallel.dp * parallel.microbatches) == 0.
void check_batch_layout(const RunConfig& cfg);

// A compact multi-line dump for logs: one line per section, `key=value` pairs.
std::string describe_config(const RunConfig& cfg);

// The full config as YAML (every key, in schema order); loads back to an identical config.
std::string config_to_yaml(const RunConfig& cfg);

// Every key path the schema knows ("model.layers", ...), in schema order.
std::vector<std::string> config_keys();

}  // namespace tandem
