// ServeOptions (YAML section `serve`): the serving engine and its RPC front end.
//
// Contract: plain data, validated by launch/config (ranges in docs/config.md). The KV cache is
// reserved once at start-up: kv_blocks blocks of kv_block_tokens tokens per layer and replica;
// a request reserves ceil((prompt + max_tokens) / kv_block_tokens) blocks when admitted.
#pragma once

#include <cstdint>
#include <string>

namespace tandem {

struct ServeOptions {
  // `tandem run`: how training and serving share the ranks. "windows": the training ranks
  // serve at the trainer's safe points (serve/serving_windows.h); "dedicated": the last
  // serve.ranks ranks serve, fed the trainers' weights (serve/dedicated_serving.h); "off":
  // `tandem run` refuses (use `tandem train`).
  std::string mode = "off";
  int ranks = 0;        // dedicated: ranks set apart for serving (the job's last ones)
  int tp = 1, pp = 1;   // dedicated: the serving replicas' layout (dp = ranks / (tp * pp))
  int sync_every = 1;   // dedicated: optimizer steps between weight syncs to the servers
  double max_wait_ms = 50.0;   // windows: the target wait of a realtime request for a window
  double max_window_ms = 200.0;  // windows: one window's longest run (0: no cap; serve/engine_window.h)
                               // (reported against the measured gap between safe points)
  double batch_budget = 0.25;  // windows: batch-only serving's share of wall time
  std::string window_points = "all";  // windows: "all" safe points, or "steps" (only between
                                      // optimizer steps: the plain alternative, for comparison)
  std::string listen = "127.0.0.1:7411";  // RPC address (port 0: any free port)
  std::string metrics_listen;             // Prometheus text at GET /metrics ("" = off)
  // parallel.dp > 1: the host each replica's own RPC server binds (any free port); the router
  // on serve.listen connects to it. A wildcard ("*", "0.0.0.0") advertises the node's name.
  std::string replica_listen = "127.0.0.1";
  std::string name;                       // the model name modelInfo reports ("" = config stem)
  int kv_blocks = 512;
  int kv_block_tokens = 16;
  int max_seqs = 16;           // sequences decoding at once
  int max_batch_tokens = 256;  // new tokens per engine step (decodes + prefill chunks)
  int prefill_chunk = 128;     // prompt tokens per sequence per step
  int queue_realtime = 64;     // bounded admission queues, per priority class
  int queue_batch = 256;
  bool recompute = false;      // reference mode: no KV reuse, recompute whole contexts
  double idle_heartbeat_s = 0.02;
  // Streamed tokens of a sequence go out at most every stream_interval_ms (0: every token);
  // the first and the last always at once. Fewer, larger messages cost the RPC thread and the
  // client fewer wake-ups, which matters when they share cores with training.
  double stream_interval_ms = 0.0;
  // Bounds on what a client can make a server hold (docs/serving.md, "Bounds"): the largest
  // incoming Cap'n Proto message (0: the largest valid generate call for this model's seq_len
  // and tokenizer), the open connections per listener, the idle time after which a connection
  // without a call in flight is closed (0: never), and how long a TokenSink call may take
  // before its request ends with deadlineExceeded.
  int max_message_bytes = 0;
  int max_connections = 256;
  double idle_timeout_s = 60.0;
  double sink_timeout_s = 30.0;
};

}  // namespace tandem
