// Tests for launch/config: every error path names the key and where it was set (file:LINE or
// --set), a file setting every key round-trips, overrides apply and are validated, and the
// shipped configs load.
#include "launch/config.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "launch/train_command.h"
#include "runtime/core/error.h"

namespace tandem {
namespace {

// Loads `text` (source name "t.yaml") expecting a ConfigError; returns its message.
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    config_from_yaml_string(text, overrides, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << text;
  return "";
}

#define EXPECT_HAS(msg, part) EXPECT_NE((msg).find(part), std::string::npos) << (msg)

// ------------------------------------------------------------------ structure errors

TEST(Config, UnknownSectionSuggests) {
  std::string m = error_of("# comment\nmodle:\n  layers: 4\n");
  EXPECT_EQ(m, "t.yaml:2: unknown section 'modle' (did you mean 'model'?)");
}

TEST(Config, UnknownKeySuggests) {
  std::string m = error_of("model:\n  dim: 64\n  layer: 2\n");
  EXPECT_EQ(m, "t.yaml:3: unknown key 'model.layer' (did you mean 'model.layers'?)");
}

TEST(Config, UnknownKeyInWrongSectionPointsToItsSection) {
  std::string m = error_of("train:\n  tp: 2\n");
  EXPECT_EQ(m, "t.yaml:2: unknown key 'train.tp' (did you mean 'parallel.tp'?)");
}

TEST(Config, UnknownKeyWithoutSuggestionListsKeys) {
  std::string m = error_of("data:\n  zzzzzzzz: x\n");
  EXPECT_HAS(m, "t.yaml:2: unknown key 'data.zzzzzzzz'");
  EXPECT_HAS(m, "data keys are train, val, tokenizer");
}

TEST(Config, TopLevelKeyWithoutSection) {
  std::string m = error_of("lr: 0.1\n");
  EXPECT_HAS(m, "t.yaml:1: unknown section 'lr'");
  EXPECT_HAS(m, "train.lr");
}

TEST(Config, DuplicateKey) {
  std::string m = error_of("train:\n  lr: 0.1\n  steps: 3\n  lr: 0.2\n");
  EXPECT_EQ(m, "t.yaml:4: duplicate key 'train.lr' (first set at line 2)");
}

TEST(Config, DuplicateSection) {
  std::string m = error_of("train:\n  lr: 0.1\nmodel:\n  dim: 64\ntrain:\n  steps: 2\n");
  EXPECT_EQ(m, "t.yaml:5: duplicate section 'train' (first at line 1)");
}

TEST(Config, MalformedYamlReportsLine) {
  std::string m = error_of("model:\n  layers: 4\n  dim: [64, 128\ntrain:\n  lr: 1\n");
  EXPECT_HAS(m, "t.yaml:");
  EXPECT_HAS(m, "invalid YAML");
  m = error_of("model:\n  layers: 4\n dim: 3\n");
  EXPECT_HAS(m, "t.yaml:3: invalid YAML");
}

TEST(Config, SectionMustBeMapping) {
  EXPECT_EQ(error_of("\nmodel: 4\n"), "t.yaml:2: model: expected a mapping of model.* keys, got 4");
  EXPECT_HAS(error_of("- model\n"), "t.yaml:1: expected a mapping of sections");
}

TEST(Config, OneDocumentOnly) {
  EXPECT_HAS(error_of("model:\n  dim: 64\n---\ntrain:\n  lr: 1\n"), "expected one YAML document");
}

TEST(Config, MissingFile) {
  try {
    load_config("/nonexistent/dir/x.yaml", {});
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/dir/x.yaml: config file not found");
  }
}

TEST(Config, FileErrorsNameThePathAndLine) {
  std::string path = testing::TempDir() + "/tandem_config_test.yaml";
  {
    std::ofstream out(path);
    out << "# x\n\ntrain:\n  steps: 5\n  lr: fast\n";
  }
  try {
    load_config(path, {});
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ":5: train.lr: expected a number > 0, got \"fast\"");
  }
  std::remove(path.c_str());
}

// ------------------------------------------------------------------ type errors

TEST(Config, WrongTypes) {
  EXPECT_EQ(error_of("model:\n  layers: four\n"),
            "t.yaml:2: model.layers: expected an integer >= 1, got \"four\"");
  EXPECT_EQ(error_of("model:\n  layers: 2.5\n"),
            "t.yaml:2: model.layers: expected an integer >= 1, got 2.5");
  EXPECT_EQ(error_of("train:\n  lr: [1, 2]\n"),
            "t.yaml:2: train.lr: expected a number > 0, got a list [1, 2]");
  EXPECT_EQ(error_of("train:\n  lr:\n    a: 1\n"),
            "t.yaml:2: train.lr: expected a number > 0, got a mapping {a: 1}");
  EXPECT_EQ(error_of("parallel:\n  offload: 1\n"),
            "t.yaml:2: parallel.offload: expected true or false, got 1");
  EXPECT_EQ(error_of("parallel:\n  offload: maybe\n"),
            "t.yaml:2: parallel.offload: expected true or false, got \"maybe\"");
  EXPECT_EQ(error_of("train:\n  batch: \"8\"\n"),
            "t.yaml:2: train.batch: expected an integer >= 1, got \"8\"");
  EXPECT_EQ(error_of("train:\n  lr:\n"), "t.yaml:2: train.lr: expected a number > 0, got nothing (null)");
  EXPECT_EQ(error_of("sample:\n  prompt: [a]\n"),
            "t.yaml:2: sample.prompt: expected a non-empty string, got a list [a]");
  EXPECT_HAS(error_of("train:\n  seed: -1\n"), "t.yaml:2: train.seed: expected an integer >= 0, got -1");
  EXPECT_HAS(error_of("train:\n  steps: 99999999999\n"), "outside the 32-bit integer range");
  EXPECT_HAS(error_of("train:\n  lr: 1e50\n"), "outside the 32-bit float range");
  EXPECT_HAS(error_of("train:\n  lr: .inf\n"), "train.lr: expected a number > 0");
  EXPECT_HAS(error_of("train:\n  lr: nan\n"), "train.lr: expected a number > 0");
}

// ------------------------------------------------------------------ range errors

struct BadValue {
  const char* key;       // "section.key"
  const char* value;     // YAML text
  const char* expected;  // the "expected ..." part of the message
};

TEST(Config, OutOfRangeValuesNameKeyLineValueAndRange) {
  const BadValue cases[] = {
      {"model.layers", "0", "an integer >= 1"},
      {"model.dim", "0", "an integer >= 1"},
      {"model.heads", "-2", "an integer >= 1"},
      {"model.vocab", "1", "an integer in [2, 65535]"},
      {"model.vocab", "65536", "an integer in [2, 65535]"},
      {"model.seq_len", "0", "an integer >= 1"},
      {"train.steps", "0", "an integer >= 1"},
      {"train.batch", "0", "an integer >= 1"},
      {"train.lr", "0", "a number > 0"},
      {"train.lr", "-1e-3", "a number > 0"},
      {"train.warmup", "-1", "an integer >= 0"},
      {"train.min_lr_ratio", "1.5", "a number in [0, 1]"},
      {"train.min_lr_ratio", "-0.1", "a number in [0, 1]"},
      {"train.weight_decay", "-0.1", "a number >= 0"},
      {"train.grad_clip", "-1", "a number >= 0"},
      {"train.beta1", "1", "a number in [0, 1)"},
      {"train.beta1", "-0.5", "a number in [0, 1)"},
      {"train.beta2", "1.0", "a number in [0, 1)"},
      {"train.eps", "0", "a number > 0"},
      {"train.eval_every", "-1", "an integer >= 0"},
      {"train.eval_batches", "0", "an integer >= 1"},
      {"train.device", "tpu", "one of cpu|cuda|auto"},
      {"train.precision", "fp16", "one of fp32|bf16"},
      {"train.precision", "BF16", "one of fp32|bf16"},
      {"train.threads", "-1", "an integer >= 0"},
      {"train.stop_after", "-1", "an integer >= 0"},
      {"train.checkpoint.every", "-1", "an integer >= 0"},
      {"train.checkpoint.every", "x", "an integer >= 0"},
      {"train.checkpoint.keep_last", "-1", "an integer >= 0"},
      {"train.checkpoint.keep_last", "x", "an integer >= 0"},
      {"data.train", "\"\"", "a non-empty string"},
      {"data.tokenizer", "\"\"", "a non-empty string"},
      {"parallel.dp", "0", "an integer >= 1"},
      {"parallel.tp", "0", "an integer >= 1"},
      {"parallel.pp", "0", "an integer >= 1"},
      {"parallel.microbatches", "0", "an integer >= 1"},
      {"parallel.recompute", "some", "one of none|selective|full"},
      {"parallel.zero", "2", "an integer in [0, 1]"},
      {"parallel.order", "tp-dp", "a permutation of tp, dp, pp joined by '-' (e.g. \"tp-dp-pp\")"},
      {"parallel.order", "tp-tp-pp", "a permutation of tp, dp, pp joined by '-' (e.g. \"tp-dp-pp\")"},
      {"parallel.order", "tp,dp,pp", "a permutation of tp, dp, pp joined by '-' (e.g. \"tp-dp-pp\")"},
      {"parallel.schedule", "zigzag", "one of gpipe|1f1b|interleaved"},
      {"parallel.chunks", "0", "an integer >= 1"},
      {"parallel.bucket_mb", "0", "an integer >= 1"},
      {"parallel.timeout_s", "0", "a number > 0"},
      {"parallel.device_comm", "gloo", "one of auto|nccl|staged"},
      {"sample.prompt", "\"\"", "a non-empty string"},
      {"sample.count", "-1", "an integer >= 0"},
      {"sample.tokens", "0", "an integer >= 1"},
      {"sample.temperature", "-0.5", "a number >= 0"},
      {"sample.top_k", "-1", "an integer >= 0"},
  };
  for (const BadValue& c : cases) {
    std::string key = c.key;
    std::vector<std::string> parts;
    std::stringstream ss(key);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    // The bad key sits after a comment, a blank line, the section line and any group lines,
    // written nested: line 4 for section.key, line 5 for section.group.key.
    std::string text = "# header\n\n" + parts[0] + ":\n";
    for (size_t i = 1; i < parts.size(); ++i)
      text += std::string(2 * i, ' ') + parts[i] + ":" +
              (i + 1 == parts.size() ? std::string(" ") + c.value : "") + "\n";
    std::string line = std::to_string(2 + parts.size());
    std::string m = error_of(text);
    EXPECT_HAS(m, "t.yaml:" + line + ": " + key + ": expected " + c.expected + ", got ");
    // The same value given as an override fails the same check, naming --set.
    std::string ov = key + "=" + c.value;
    std::string mo = error_of("", {ov});
    EXPECT_HAS(mo, "--set " + ov + ": " + key + ": expected " + c.expected + ", got ");
  }
}

TEST(Config, DimMustBeMultipleOfHeadsNamingBothKeys) {
  std::string m = error_of("model:\n  dim: 250\n  heads: 4\n");
  EXPECT_EQ(m,
            "t.yaml:2: model.dim=250 must be a multiple of model.heads=4 "
            "(model.dim: t.yaml:2; model.heads: t.yaml:3)");
  m = error_of("model:\n  heads: 5\n");  // dim keeps its default 256
  EXPECT_HAS(m, "t.yaml:2: model.dim=256 must be a multiple of model.heads=5");
  EXPECT_HAS(m, "model.dim: default");
  m = error_of("model:\n  dim: 256\n", {"model.heads=3"});
  EXPECT_HAS(m, "model.heads: --set model.heads=3");
}

// ------------------------------------------------------------------ valid files

// Every key set to a non-default value.
const char* kEveryKey = R"(# every key
model:
  layers: 6
  dim: 384
  heads: 6
  vocab: 1000
  seq_len: 64
train:
  steps: 77
  batch: 12
  lr: 3.0e-4
  warmup: 7
  min_lr_ratio: 0.05
  weight_decay: 0.01
  grad_clip: 0
  beta1: 0.8
  beta2: 0.99
  eps: 1e-6
  seed: 18446744073709551615
  eval_every: 11
  eval_batches: 2
  device: auto
  precision: bf16
  threads: 3
  stop_after: 50
  checkpoint:
    dir: "out/ckpt run"
    every: 25
    keep_last: 0
data:
  train: "shards/a_*.bin"
  val: shards/b_*.bin
  tokenizer: tok
parallel:
  dp: 2
  tp: 4
  pp: 3
  microbatches: 6
  recompute: selective
  zero: 1
  offload: true
  order: pp-tp-dp
  schedule: gpipe
  chunks: 1
  bucket_mb: 32
  timeout_s: 12.5
  device_comm: staged
sample:
  prompt: "Hello: \"world\""
  count: 0
  tokens: 5
  temperature: 0
  top_k: 0
serve:
  mode: dedicated
  ranks: 4
  tp: 2
  pp: 2
  sync_every: 3
  window_points: steps
  max_wait_ms: 20
  max_window_ms: 120
  batch_budget: 0.5
  listen: "0.0.0.0:9000"
  metrics_listen: "127.0.0.1:9001"
  replica_listen: "10.1.2.3"
  name: every
  kv_blocks: 33
  kv_block_tokens: 8
  max_seqs: 5
  max_batch_tokens: 40
  prefill_chunk: 24
  queue_realtime: 3
  queue_batch: 4
  recompute: true
  idle_heartbeat_s: 0.05
  stream_interval_ms: 15
  max_message_bytes: 65536
  max_connections: 9
  idle_timeout_s: 7.5
  sink_timeout_s: 2.5
)";

void expect_every_key(const RunConfig& c) {
  EXPECT_EQ(c.model.layers, 6);
  EXPECT_EQ(c.model.dim, 384);
  EXPECT_EQ(c.model.heads, 6);
  EXPECT_EQ(c.model.vocab, 1000);
  EXPECT_EQ(c.model.seq_len, 64);
  EXPECT_EQ(c.train.steps, 77);
  EXPECT_EQ(c.train.batch, 12);
  EXPECT_FLOAT_EQ(c.train.lr, 3.0e-4f);
  EXPECT_EQ(c.train.warmup, 7);
  EXPECT_FLOAT_EQ(c.train.min_lr_ratio, 0.05f);
  EXPECT_FLOAT_EQ(c.train.weight_decay, 0.01f);
  EXPECT_EQ(c.train.grad_clip, 0.0f);
  EXPECT_FLOAT_EQ(c.train.beta1, 0.8f);
  EXPECT_FLOAT_EQ(c.train.beta2, 0.99f);
  EXPECT_FLOAT_EQ(c.train.eps, 1e-6f);
  EXPECT_EQ(c.train.seed, 18446744073709551615ull);
  EXPECT_EQ(c.train.eval_every, 11);
  EXPECT_EQ(c.train.eval_batches, 2);
  EXPECT_EQ(c.train.device, "auto");
  EXPECT_EQ(c.train.precision, "bf16");
  EXPECT_EQ(c.train.threads, 3);
  EXPECT_EQ(c.train.stop_after, 50);
  EXPECT_EQ(c.train.checkpoint.dir, "out/ckpt run");
  EXPECT_EQ(c.train.checkpoint.every, 25);
  EXPECT_EQ(c.train.checkpoint.keep_last, 0);
  EXPECT_EQ(c.data.train, "shards/a_*.bin");
  EXPECT_EQ(c.data.val, "shards/b_*.bin");
  EXPECT_EQ(c.data.tokenizer, "tok");
  EXPECT_EQ(c.parallel.dp, 2);
  EXPECT_EQ(c.parallel.tp, 4);
  EXPECT_EQ(c.parallel.pp, 3);
  EXPECT_EQ(c.parallel.microbatches, 6);
  EXPECT_EQ(c.parallel.recompute, Recompute::Selective);
  EXPECT_EQ(c.parallel.zero, 1);
  EXPECT_TRUE(c.parallel.offload);
  EXPECT_EQ(c.parallel.order, "pp-tp-dp");
  EXPECT_EQ(c.parallel.schedule, "gpipe");
  EXPECT_EQ(c.parallel.chunks, 1);
  EXPECT_EQ(c.parallel.bucket_mb, 32);
  EXPECT_DOUBLE_EQ(c.parallel.timeout_s, 12.5);
  EXPECT_EQ(c.parallel.device_comm, "staged");
  EXPECT_EQ(c.sample.prompt, "Hello: \"world\"");
  EXPECT_EQ(c.sample.count, 0);
  EXPECT_EQ(c.sample.tokens, 5);
  EXPECT_EQ(c.sample.temperature, 0.0f);
  EXPECT_EQ(c.sample.top_k, 0);
  EXPECT_EQ(c.serve.mode, "dedicated");
  EXPECT_EQ(c.serve.ranks, 4);
  EXPECT_EQ(c.serve.tp, 2);
  EXPECT_EQ(c.serve.pp, 2);
  EXPECT_EQ(c.serve.sync_every, 3);
  EXPECT_EQ(c.serve.window_points, "steps");
  EXPECT_DOUBLE_EQ(c.serve.max_wait_ms, 20.0);
  EXPECT_DOUBLE_EQ(c.serve.max_window_ms, 120.0);
  EXPECT_DOUBLE_EQ(c.serve.batch_budget, 0.5);
  EXPECT_EQ(c.serve.listen, "0.0.0.0:9000");
  EXPECT_EQ(c.serve.metrics_listen, "127.0.0.1:9001");
  EXPECT_EQ(c.serve.name, "every");
  EXPECT_EQ(c.serve.kv_blocks, 33);
  EXPECT_EQ(c.serve.kv_block_tokens, 8);
  EXPECT_EQ(c.serve.max_seqs, 5);
  EXPECT_EQ(c.serve.max_batch_tokens, 40);
  EXPECT_EQ(c.serve.replica_listen, "10.1.2.3");
  EXPECT_EQ(c.serve.prefill_chunk, 24);
  EXPECT_EQ(c.serve.queue_realtime, 3);
  EXPECT_EQ(c.serve.queue_batch, 4);
  EXPECT_TRUE(c.serve.recompute);
  EXPECT_DOUBLE_EQ(c.serve.idle_heartbeat_s, 0.05);
  EXPECT_DOUBLE_EQ(c.serve.stream_interval_ms, 15.0);
  EXPECT_EQ(c.serve.max_message_bytes, 65536);
  EXPECT_EQ(c.serve.max_connections, 9);
  EXPECT_DOUBLE_EQ(c.serve.idle_timeout_s, 7.5);
  EXPECT_DOUBLE_EQ(c.serve.sink_timeout_s, 2.5);
}

TEST(Config, EveryKeyRoundTrips) {
  RunConfig c = config_from_yaml_string(kEveryKey, {}, "every.yaml");
  expect_every_key(c);
  EXPECT_EQ(c.source, "every.yaml");
  EXPECT_EQ(c.origins.at("train.lr"), "every.yaml:11");
  EXPECT_EQ(c.origins.at("train.checkpoint.every"), "every.yaml:28");
  // The test file really sets every key the schema knows, and each is recorded.
  for (const std::string& key : config_keys()) EXPECT_EQ(c.origins.count(key), 1u) << key;
  EXPECT_EQ(c.origins.size(), config_keys().size());
  // config_to_yaml writes text that loads back to the same values.
  RunConfig again = config_from_yaml_string(config_to_yaml(c), {});
  expect_every_key(again);
  EXPECT_EQ(config_to_yaml(again), config_to_yaml(c));
  // Nested keys are written as one nested mapping under their section.
  std::string y = config_to_yaml(c);
  EXPECT_HAS(y, "  threads: 3\n  stop_after: 50\n  checkpoint:\n    dir: \"out/ckpt run\"\n"
                "    every: 25\n    keep_last: 0\ndata:\n");
}

TEST(Config, ServeBatchTokensMustCoverRunningSequences) {
  try {
    config_from_yaml_string("serve:\n  max_seqs: 32\n  max_batch_tokens: 16\n", {}, "s.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "serve.max_batch_tokens=16 must be >= serve.max_seqs=32");
  }
}

TEST(Config, ReplicaListenIsAHostWithoutAPort) {
  EXPECT_EQ(config_from_yaml_string("serve:\n  replica_listen: \"*\"\n", {}, "s.yaml").serve.replica_listen, "*");
  try {
    config_from_yaml_string("serve:\n  replica_listen: 10.0.0.5:7000\n", {}, "s.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "serve.replica_listen='10.0.0.5:7000' must be a host without a port");
  }
}

TEST(Config, MissingKeysKeepDefaults) {
  RunConfig c = config_from_yaml_string("model:\n  layers: 2\nsample:\n", {});
  RunConfig d;
  EXPECT_EQ(c.model.layers, 2);
  EXPECT_EQ(c.model.dim, d.model.dim);
  EXPECT_EQ(c.train.lr, d.train.lr);
  EXPECT_EQ(c.data.train, d.data.train);
  EXPECT_EQ(c.parallel.order, d.parallel.order);
  EXPECT_EQ(c.sample.prompt, d.sample.prompt);
  RunConfig empty = config_from_yaml_string("# nothing but a comment\n", {});
  EXPECT_EQ(config_to_yaml(empty), config_to_yaml(d));
}

TEST(Config, AcceptedSpellings) {
  RunConfig c = config_from_yaml_string(
      "parallel:\n  offload: yes\n  order: dp-pp-tp\n  recompute: full\n"
      "train:\n  lr: 1e-3\n  seed: 0\n  grad_clip: 2\nsample:\n  prompt: 42\n",
      {});
  EXPECT_TRUE(c.parallel.offload);
  EXPECT_EQ(c.parallel.recompute, Recompute::Full);
  EXPECT_FLOAT_EQ(c.train.lr, 1e-3f);
  EXPECT_EQ(c.train.seed, 0u);
  EXPECT_EQ(c.train.grad_clip, 2.0f);
  EXPECT_EQ(c.sample.prompt, "42");  // a string key takes the text of any scalar
}

TEST(Config, PrecisionIsFp32UnlessBf16IsAsked) {
  RunConfig d = config_from_yaml_string("train:\n  steps: 3\n", {});
  EXPECT_EQ(d.train.precision, "fp32");
  RunConfig c = config_from_yaml_string("train:\n  precision: fp32\n", {"train.precision=bf16"});
  EXPECT_EQ(c.train.precision, "bf16");  // the override wins, on any backend (CPU: reference path)
  EXPECT_EQ(c.origins.at("train.precision"), "--set train.precision=bf16");
  // A wrong value names the key, its line and the choices.
  EXPECT_EQ(error_of("train:\n  steps: 3\n  precision: half\n"),
            "t.yaml:3: train.precision: expected one of fp32|bf16, got \"half\"");
}

// ------------------------------------------------------------------ nested keys (train.checkpoint.*)

TEST(Config, NestedKeysFromFile) {
  RunConfig c = config_from_yaml_string(
      "train:\n  steps: 400\n  stop_after: 150\n  checkpoint:\n    dir: out/ckpt\n"
      "    every: 100\n    keep_last: 3\n",
      {}, "n.yaml");
  EXPECT_EQ(c.train.steps, 400);
  EXPECT_EQ(c.train.stop_after, 150);
  EXPECT_EQ(c.train.checkpoint.dir, "out/ckpt");
  EXPECT_EQ(c.train.checkpoint.every, 100);
  EXPECT_EQ(c.train.checkpoint.keep_last, 3);
  EXPECT_EQ(c.origins.at("train.checkpoint.dir"), "n.yaml:5");
  EXPECT_EQ(c.origins.at("train.checkpoint.keep_last"), "n.yaml:7");
  EXPECT_EQ(c.origins.count("train.checkpoint"), 0u);  // a group is not a key
  // A group may be partly given, or given with nothing under it.
  c = config_from_yaml_string("train:\n  checkpoint:\n    every: 5\n", {});
  EXPECT_EQ(c.train.checkpoint.every, 5);
  EXPECT_EQ(c.train.checkpoint.dir, "");
  EXPECT_EQ(c.train.checkpoint.keep_last, 2);
  c = config_from_yaml_string("train:\n  checkpoint:\n  steps: 3\n", {});
  EXPECT_EQ(c.train.steps, 3);
  EXPECT_EQ(c.train.checkpoint.keep_last, 2);
  // Flow style is a mapping too.
  c = config_from_yaml_string("train:\n  checkpoint: {dir: a, every: 2}\n", {});
  EXPECT_EQ(c.train.checkpoint.dir, "a");
  EXPECT_EQ(c.train.checkpoint.every, 2);
}

TEST(Config, NestedKeysFromOverrides) {
  RunConfig c = config_from_yaml_string(
      "train:\n  checkpoint:\n    dir: a\n    every: 10\n",
      {"train.checkpoint.dir=out/ckpt", "train.checkpoint.every=100",
       "train.checkpoint.keep_last=0", "train.stop_after=20"});
  EXPECT_EQ(c.train.checkpoint.dir, "out/ckpt");
  EXPECT_EQ(c.train.checkpoint.every, 100);
  EXPECT_EQ(c.train.checkpoint.keep_last, 0);
  EXPECT_EQ(c.train.stop_after, 20);
  EXPECT_EQ(c.origins.at("train.checkpoint.dir"), "--set train.checkpoint.dir=out/ckpt");
  EXPECT_EQ(error_of("", {"train.checkpoint.every=-1"}),
            "--set train.checkpoint.every=-1: train.checkpoint.every: expected an integer >= 0, "
            "got -1");
  EXPECT_EQ(error_of("", {"train.checkpoint.keep_last=x"}),
            "--set train.checkpoint.keep_last=x: train.checkpoint.keep_last: expected an integer "
            ">= 0, got \"x\"");
  EXPECT_EQ(error_of("", {"train.checkpoint.dri=x"}),
            "--set train.checkpoint.dri=x: unknown key 'train.checkpoint.dri' (did you mean "
            "'train.checkpoint.dir'?)");
  EXPECT_EQ(error_of("", {"train.checkpoint=out"}),
            "--set train.checkpoint=out: 'train.checkpoint' is a group of keys; name one of its "
            "keys (dir, every, keep_last)");
  EXPECT_EQ(error_of("", {"train.chekpoint.dir=x"}),
            "--set train.chekpoint.dir=x: unknown key 'train.chekpoint.dir' (did you mean "
            "'train.checkpoint.dir'?)");
}

TEST(Config, NestedKeyDefaults) {
  RunConfig c = config_from_yaml_string("", {});
  EXPECT_EQ(c.train.checkpoint.dir, "");
  EXPECT_EQ(c.train.checkpoint.every, 0);
  EXPECT_EQ(c.train.checkpoint.keep_last, 2);
  EXPECT_EQ(c.train.stop_after, 0);
  std::vector<std::string> keys = config_keys();
  for (const char* k : {"train.stop_after", "train.checkpoint.dir", "train.checkpoint.every",
                        "train.checkpoint.keep_last"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  EXPECT_EQ(std::find(keys.begin(), keys.end(), "train.checkpoint"), keys.end());
  std::string d = describe_config(c);
  EXPECT_HAS(d, " stop_after=0 checkpoint.dir=\"\" checkpoint.every=0 checkpoint.keep_last=2");
}

TEST(Config, DeviceCommDefaultsToAutoAndTakesAnOverride) {
  RunConfig c = config_from_yaml_string("", {});
  EXPECT_EQ(c.parallel.device_comm, "auto");
  c = config_from_yaml_string("parallel:\n  device_comm: nccl\n", {"parallel.device_comm=staged"});
  EXPECT_EQ(c.parallel.device_comm, "staged");
  EXPECT_EQ(c.origins.at("parallel.device_comm"), "--set parallel.device_comm=staged");
  try {
    config_from_yaml_string("parallel:\n  tp: 1\n  device_comm: shared\n", {}, "x.yaml");
    FAIL() << "device_comm 'shared' was accepted";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "x.yaml:3: parallel.device_comm");
    EXPECT_HAS(std::string(e.what()), "auto|nccl|staged");
  }
}

TEST(Config, CheckpointDirMayBeEmpty) {
  RunConfig c = config_from_yaml_string("train:\n  checkpoint:\n    dir: \"\"\n", {});
  EXPECT_EQ(c.train.checkpoint.dir, "");
  EXPECT_EQ(c.origins.count("train.checkpoint.dir"), 1u);
  c = config_from_yaml_string("train:\n  checkpoint:\n    dir: ''\n", {});
  EXPECT_EQ(c.train.checkpoint.dir, "");
  // An empty override clears a directory set in the file, quoted or not.
  c = config_from_yaml_string("train:\n  checkpoint:\n    dir: a\n", {"train.checkpoint.dir="});
  EXPECT_EQ(c.train.checkpoint.dir, "");
  c = config_from_yaml_string("train:\n  checkpoint:\n    dir: a\n",
                              {"train.checkpoint.dir=\"\""});
  EXPECT_EQ(c.train.checkpoint.dir, "");
  // Only this key: other string keys still refuse "".
  EXPECT_HAS(error_of("", {"data.train="}), "data.train: expected a non-empty string");
  // Null is not a string; the message says how to write "none".
  EXPECT_EQ(error_of("train:\n  checkpoint:\n    dir:\n"),
            "t.yaml:3: train.checkpoint.dir: expected a string (\"\" for none), got nothing (null)");
}

TEST(Config, NestedKeyErrors) {
  EXPECT_EQ(error_of("train:\n  checkpoint:\n    every: -1\n"),
            "t.yaml:3: train.checkpoint.every: expected an integer >= 0, got -1");
  EXPECT_EQ(error_of("train:\n  checkpoint:\n    keep_last: x\n"),
            "t.yaml:3: train.checkpoint.keep_last: expected an integer >= 0, got \"x\"");
  EXPECT_EQ(error_of("train:\n  steps: 4\n  checkpoint:\n    dir: a\n    dri: b\n"),
            "t.yaml:5: unknown key 'train.checkpoint.dri' (did you mean 'train.checkpoint.dir'?)");
  EXPECT_EQ(error_of("train:\n  chekpoint:\n    dir: a\n"),
            "t.yaml:2: unknown key 'train.chekpoint' (did you mean 'train.checkpoint'?)");
  // A key of the group written at the section level points into the group.
  EXPECT_EQ(error_of("train:\n  keep_last: 3\n"),
            "t.yaml:2: unknown key 'train.keep_last' (did you mean 'train.checkpoint.keep_last'?)");
  EXPECT_HAS(error_of("train:\n  checkpoint:\n    zzzzzzzz: 1\n"),
             "t.yaml:3: unknown key 'train.checkpoint.zzzzzzzz' (train.checkpoint keys are dir, "
             "every, keep_last)");
  EXPECT_EQ(error_of("train:\n  checkpoint:\n    dir: [a]\n"),
            "t.yaml:3: train.checkpoint.dir: expected a string (\"\" for none), got a list [a]");
  // The group given as a scalar or a list.
  EXPECT_EQ(error_of("train:\n  steps: 4\n  checkpoint: out/ckpt\n"),
            "t.yaml:3: train.checkpoint: expected a mapping of train.checkpoint.* keys (dir, "
            "every, keep_last), got \"out/ckpt\"");
  EXPECT_EQ(error_of("train:\n  checkpoint: [a]\n"),
            "t.yaml:2: train.checkpoint: expected a mapping of train.checkpoint.* keys (dir, "
            "every, keep_last), got a list [a]");
  // Duplicates, of a key in the group and of the group itself.
  EXPECT_EQ(error_of("train:\n  checkpoint:\n    every: 1\n    every: 2\n"),
            "t.yaml:4: duplicate key 'train.checkpoint.every' (first set at line 3)");
  EXPECT_EQ(error_of("train:\n  checkpoint:\n    every: 1\n  steps: 5\n  checkpoint:\n"
                     "    dir: a\n"),
            "t.yaml:5: duplicate key 'train.checkpoint' (first set at line 2)");
  // The dotted spelling inside the section is the same key (and so a duplicate of it).
  RunConfig c = config_from_yaml_string("train:\n  checkpoint.every: 7\n", {});
  EXPECT_EQ(c.train.checkpoint.every, 7);
  EXPECT_EQ(error_of("train:\n  checkpoint.every: 7\n  checkpoint:\n    every: 8\n"),
            "t.yaml:4: duplicate key 'train.checkpoint.every' (first set at line 2)");
  // A group is not a section.
  EXPECT_HAS(error_of("checkpoint:\n  dir: a\n"), "t.yaml:1: unknown section 'checkpoint'");
}

TEST(Config, StopAfterAtMostSteps) {
  RunConfig c = config_from_yaml_string("train:\n  steps: 400\n  stop_after: 400\n", {});
  EXPECT_EQ(c.train.stop_after, 400);
  EXPECT_EQ(error_of("train:\n  steps: 400\n  stop_after: 401\n"),
            "t.yaml:3: train.stop_after=401 must be <= train.steps=400 (0 runs all steps; "
            "train.stop_after: t.yaml:3; train.steps: t.yaml:2)");
  std::string m = error_of("train:\n  stop_after: 150\n");  // steps keeps its default 100
  EXPECT_HAS(m, "t.yaml:2: train.stop_after=150 must be <= train.steps=100");
  EXPECT_HAS(m, "train.steps: default");
  m = error_of("train:\n  steps: 400\n  stop_after: 200\n", {"train.steps=100"});
  EXPECT_EQ(m.rfind("--set train.steps=100: train.stop_after=200 must be <= train.steps=100", 0),
            0u) << m;
}

// ------------------------------------------------------------------ overrides

TEST(Config, OverridesApplyAfterTheFile) {
  RunConfig c = config_from_yaml_string(
      "parallel:\n  tp: 1\ntrain:\n  lr: 0.1\n",
      {"parallel.tp=2", "sample.prompt=Hello there", "train.lr=3e-4", "parallel.offload=true",
       "train.lr=5e-4", "sample.count=0", "data.val=x/*.bin", "parallel.recompute=full"});
  EXPECT_EQ(c.parallel.tp, 2);
  EXPECT_EQ(c.sample.prompt, "Hello there");
  EXPECT_FLOAT_EQ(c.train.lr, 5e-4f);  // the last override wins
  EXPECT_TRUE(c.parallel.offload);
  EXPECT_EQ(c.sample.count, 0);
  EXPECT_EQ(c.data.val, "x/*.bin");
  EXPECT_EQ(c.parallel.recompute, Recompute::Full);
  EXPECT_EQ(c.origins.at("parallel.tp"), "--set parallel.tp=2");
  // A quoted string value is parsed as YAML (escapes, leading spaces); unquoted is verbatim.
  c = config_from_yaml_string("", {"sample.prompt=\" a\\tb\"", "sample.count=3"});
  EXPECT_EQ(c.sample.prompt, " a\tb");
  c = config_from_yaml_string("", {"sample.prompt=Q: what # not a comment"});
  EXPECT_EQ(c.sample.prompt, "Q: what # not a comment");
}

TEST(Config, OverridesAreValidated) {
  EXPECT_EQ(error_of("", {"train.lr=fast"}),
            "--set train.lr=fast: train.lr: expected a number > 0, got \"fast\"");
  EXPECT_EQ(error_of("", {"model.layer=3"}),
            "--set model.layer=3: unknown key 'model.layer' (did you mean 'model.layers'?)");
  EXPECT_EQ(error_of("", {"modle.layers=3"}),
            "--set modle.layers=3: unknown key 'modle.layers' (did you mean 'model.layers'?)");
  EXPECT_HAS(error_of("", {"train.lr"}), "--set train.lr: expected key.path=value");
  EXPECT_HAS(error_of("", {"train=3"}), "--set train=3: 'train' is a section");
  EXPECT_EQ(error_of("", {"parallel.tp=[1, 2]"}),
            "--set parallel.tp=[1, 2]: parallel.tp: expected an integer >= 1, got a list [1, 2]");
  EXPECT_EQ(error_of("", {"train.steps="}),
            "--set train.steps=: train.steps: expected an integer >= 1, got nothing (null)");
  EXPECT_HAS(error_of("", {"train.steps=[1, 2"}), "--set train.steps=[1, 2: train.steps: the value is not valid YAML");
  EXPECT_EQ(error_of("", {"sample.prompt="}),
            "--set sample.prompt=: sample.prompt: expected a non-empty string, got \"\"");
  // An override that fixes a bad file value still cannot hide the bad file value: the file
  // is checked first, as written.
  EXPECT_HAS(error_of("train:\n  lr: fast\n", {"train.lr=0.1"}), "t.yaml:2: train.lr");
}

// ------------------------------------------------------------------ layout checks

TEST(Config, CheckLayoutNamesTheRuleBroken) {
  struct Case { std::vector<std::string> set; int world; const char* message; };
  const Case cases[] = {
      {{"parallel.dp=2", "parallel.tp=2"}, 8,
       "parallel.dp * parallel.tp * parallel.pp = 2 * 2 * 1 = 4 but the job has 8 ranks"},
      {{"parallel.tp=3", "model.heads=4", "model.dim=64"}, 3,
       "model.heads=4 is not divisible by parallel.tp=3"},
      {{"parallel.tp=8", "model.heads=8", "model.dim=64"}, 8, ""},  // valid: 50304 % 8 == 0
      {{"parallel.tp=3", "model.heads=3", "model.dim=66"}, 3, ""},  // valid: 50304 % 3 == 0
      {{"parallel.tp=5", "model.heads=5", "model.dim=65"}, 5,
       "the padded vocabulary 50304 (model.vocab=50257 rounded up to a multiple of 128) is not "
       "divisible by parallel.tp=5"},
      {{"parallel.pp=8", "model.layers=4", "train.batch=16", "parallel.microbatches=8"}, 8,
       "model.layers=4 is fewer than the 8 pipeline stages"},
      {{"parallel.microbatches=3"}, 1, "train.batch=8 must be a multiple of parallel.dp * parallel.microbatches"},
      {{"parallel.pp=4", "parallel.microbatches=2"}, 4,
       "parallel.schedule=1f1b needs parallel.microbatches >= parallel.pp (got microbatches=2, pp=4)"},
      {{"parallel.pp=4", "parallel.microbatches=2", "parallel.schedule=gpipe"}, 4, ""},
      {{"parallel.chunks=2"}, 1, "parallel.chunks=2 needs parallel.schedule: interleaved"},
  };
  for (const Case& c : cases) {
    RunConfig cfg = config_from_yaml_string("", c.set);
    if (std::string(c.message).empty()) {
      EXPECT_NO_THROW(check_layout(cfg, c.world)) << c.set[0];
      continue;
    }
    try {
      check_layout(cfg, c.world);
      ADD_FAILURE() << "accepted " << c.set[0];
    } catch (const ConfigError& e) {
      EXPECT_HAS(std::string(e.what()), c.message);
      EXPECT_HAS(std::string(e.what()), "--set ");  // points at where the value came from
    }
  }
  // In a file, the message points at the line.
  RunConfig cfg = config_from_yaml_string("parallel:\n  tp: 2\n", {}, "x.yaml");
  try {
    check_layout(cfg, 4);
    ADD_FAILURE() << "accepted tp=2 on 4 ranks";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "x.yaml:2: parallel.dp * parallel.tp * parallel.pp");
  }
}

TEST(Config, BatchLayout) {
  RunConfig ok = config_from_yaml_string("train:\n  batch: 12\nparallel:\n  microbatches: 4\n", {});
  EXPECT_NO_THROW(check_batch_layout(ok));
  RunConfig bad = config_from_yaml_string(
      "train:\n  batch: 10\nparallel:\n  dp: 2\n  microbatches: 4\n", {}, "b.yaml");
  try {
    check_batch_layout(bad);
    ADD_FAILURE() << "accepted batch 10 over 2 x 4";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "b.yaml:2: train.batch=10 must be a multiple of parallel.dp * "
              "parallel.microbatches = 2 * 4 = 8 (train.batch: b.yaml:2; parallel.dp: b.yaml:4; "
              "parallel.microbatches: b.yaml:5)");
  }
  RunConfig over =
      config_from_yaml_string("train:\n  batch: 8\n", {"parallel.microbatches=3"});
  try {
    check_batch_layout(over);
    ADD_FAILURE() << "accepted batch 8 over 3 microbatches";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "--set parallel.microbatches=3: train.batch=8");
  }
}

TEST(Config, DescribeListsEveryKey) {
  RunConfig c = config_from_yaml_string(kEveryKey, {}, "every.yaml");
  std::string d = describe_config(c);
  EXPECT_EQ(d.rfind("config every.yaml", 0), 0u) << d;
  for (const std::string& key : config_keys()) {
    std::string leaf = key.substr(key.find('.') + 1);  // "lr", "checkpoint.dir"
    EXPECT_HAS(d, " " + leaf + "=");
  }
  EXPECT_HAS(d, "checkpoint.dir=\"out/ckpt run\" checkpoint.every=25 checkpoint.keep_last=0");
  EXPECT_HAS(d, "lr=0.0003");
  EXPECT_HAS(d, "recompute=selective");
  EXPECT_HAS(d, "prompt=\"Hello: \\\"world\\\"\"");
  EXPECT_HAS(d, "tokenizer=tok");
  EXPECT_LE(std::count(d.begin(), d.end(), '\n'), 6);
}

// ------------------------------------------------------------------ shipped configs

TEST(Config, QuickstartLoads) {
  RunConfig c = load_config(std::string(TANDEM_SOURCE_DIR) + "/configs/quickstart.yaml", {});
  EXPECT_EQ(c.model.layers, 4);
  EXPECT_EQ(c.model.dim, 128);
  EXPECT_EQ(c.model.heads, 4);
  EXPECT_EQ(c.model.seq_len, 128);
  EXPECT_EQ(c.model.vocab, 50257);
  EXPECT_EQ(c.train.batch, 4);
  EXPECT_EQ(c.train.steps, 500);
  EXPECT_FLOAT_EQ(c.train.lr, 2e-3f);
  EXPECT_EQ(c.train.warmup, 30);
  EXPECT_EQ(c.train.eval_every, 100);
  EXPECT_EQ(c.train.eval_batches, 16);
  EXPECT_EQ(c.parallel.microbatches, 1);
  EXPECT_EQ(c.train.device, "cpu");
  EXPECT_EQ(c.train.precision, "fp32");  // the default: quickstart does not set it
  EXPECT_EQ(c.sample.prompt, "The jury said");
  EXPECT_EQ(c.sample.count, 3);
  EXPECT_EQ(c.sample.tokens, 40);
  EXPECT_NO_THROW(check_layout(c, 1));
  EXPECT_NO_THROW(check_batch_layout(c));
}

TEST(Config, Gpt2SmallLoadsAndHas124MParameters) {
  RunConfig c = load_config(std::string(TANDEM_SOURCE_DIR) + "/configs/gpt2-small.yaml", {});
  EXPECT_NO_THROW(check_layout(c, 1));
  EXPECT_NO_THROW(check_batch_layout(c));
  const long long d = c.model.dim, L = c.model.layers;
  // Embeddings (tied head) + positions + per block (2 LayerNorms, QKV, proj, MLP) + final LN.
  long long params = c.model.vocab * d + c.model.seq_len * d +
                     L * (4 * d + (3 * d * d + 3 * d) + (d * d + d) + (8 * d * d + 5 * d)) + 2 * d;
  EXPECT_EQ(params, 124439808);
  EXPECT_FLOAT_EQ(c.train.lr, 6e-4f);
  EXPECT_EQ(c.train.warmup, 100);
  EXPECT_EQ(c.train.steps, 1000);
  EXPECT_EQ(c.train.batch, 8);
}

TEST(Config, DedicatedServingKeysAreCheckedTogether) {
  EXPECT_NE(error_of("", {"serve.mode=dedicated"}).find("serve.mode=dedicated needs serve.ranks >= 1"),
            std::string::npos);
  EXPECT_NE(error_of("", {"serve.mode=windows", "serve.ranks=2"})
                .find("serve.ranks=2 sets ranks apart for serve.mode=dedicated, but serve.mode is windows"),
            std::string::npos);
  EXPECT_NE(error_of("", {"serve.mode=dedicated", "serve.ranks=3", "serve.tp=2"})
                .find("serve.ranks=3 is not a multiple of serve.tp * serve.pp = 2 * 1"),
            std::string::npos);
  EXPECT_NE(error_of("", {"serve.mode=dedicated", "serve.ranks=3", "serve.tp=3"})
                .find("model.heads=4 is not divisible by serve.tp=3"),
            std::string::npos);
  EXPECT_NE(error_of("", {"serve.mode=dedicated", "serve.ranks=8", "serve.pp=8"})
                .find("model.layers=4 is fewer than serve.pp=8"),
            std::string::npos);
  EXPECT_NE(error_of("", {"serve.sync_every=0"}).find("serve.sync_every: expected an integer >= 1"),
            std::string::npos);
  EXPECT_NO_THROW(config_from_yaml_string("", {"serve.mode=dedicated", "serve.ranks=2", "serve.tp=2"}, "t.yaml"));
}

TEST(Config, DedicatedServingRanksLeaveTheRestToTraining) {
  CommandArgs a;
  a.config = std::string(TANDEM_SOURCE_DIR) + "/configs/quickstart.yaml";
  a.overrides = {"serve.mode=dedicated", "serve.ranks=2", "parallel.dp=2"};
  EXPECT_EQ(check_train_config(a, 4, true).serve.ranks, 2);  // 2 train (dp 2), 2 serve
  try {
    check_train_config(a, 5, true);
    ADD_FAILURE() << "5 ranks - 2 servers = 3 trainers for dp 2 was accepted";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "but the job has 3 ranks (the training ranks: the job's 5 less serve.ranks=2)");
  }
  try {
    check_train_config(a, 2, true);
    ADD_FAILURE() << "every rank set apart was accepted";
  } catch (const ConfigError& e) {
    EXPECT_HAS(std::string(e.what()), "serve.ranks=2 sets apart every one of the job's 2 ranks");
  }
  // tandem train ignores serve.ranks: the layout fills the whole job.
  EXPECT_EQ(check_train_config(a, 2).parallel.dp, 2);
}

}  // namespace
}  // namespace tandem
