# Tandem's serving API (Cap'n Proto 0.9, two-party RPC). docs/serving.md explains each call.
#
# Contract: a client bootstraps `Tandem` from the server's socket. `generate` streams the reply
# through the client's `TokenSink` and returns an Outcome: either a Result or a typed Error the
# client can branch on. The server sends a reply's tokens one `tokens` call at a time, waiting
# for each to return before the next (tokens that arrive meanwhile go together in the next
# call), and returns the Outcome only after the last call returned: every token has reached
# the sink by then. A sink call that throws ends the request with `internal`; one that does not
# return within the server's serve.sink_timeout_s (or before the request's deadline) ends it
# with `deadlineExceeded`; a null sink is `invalidRequest`. Dropping the generate call (its
# promise) cancels the request; the server frees its KV blocks. Errors never close the
# connection: the server keeps serving after each of them. Texts are taken at their full
# length (a NUL byte is kept). Limits (docs/serving.md, "Bounds"): a message larger than the
# server's serve.max_message_bytes (default: the largest valid generate call) ends its
# connection with Cap'n Proto's "Message is too large"; connections beyond
# serve.max_connections are closed at once, and one idle for serve.idle_timeout_s is closed.
@0xc3afffc67efd9086;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("tandem::rpc");

enum Priority {
  realtime @0;  # tight time-to-first-token; scheduled before batch
  batch @1;
}

enum ErrorKind {
  invalidRequest @0;    # the request itself is wrong (including parameters of the wrong type,
                        # an unknown enum value, no sink); do not retry it unchanged
  overloaded @1;        # the priority class's queue is full; retry after retryAfterS
  deadlineExceeded @2;  # the deadline passed before the reply could finish, or the sink did
                        # not return a call within the server's serve.sink_timeout_s
  shuttingDown @3;      # the server is stopping; go to another replica
  internal @4;          # a bug, a failed rank, or the client's sink threw; the message says which
}

enum FinishReason {
  length @0;       # maxTokens generated
  stop @1;         # a stop sequence matched (the stop text itself is not streamed)
  endOfText @2;    # the model emitted <|endoftext|>
  contextFull @3;  # prompt + output reached the model's seq_len
}

struct GenerateParams {
  prompt :union {
    text @0 :Text;             # tokenized with the server's GPT-2 BPE (only as far as it fits)
    tokens @1 :List(Int32);    # token ids, each < vocab
  }
  maxTokens @2 :Int32 = 16;    # >= 1; prompt + maxTokens <= seq_len
  temperature @3 :Float32 = 0; # 0: greedy; > 0: sample (below 1e-6: served greedy)
  topK @4 :Int32 = 0;          # 0: off; >= 1 keeps the k most likely tokens
  topP @5 :Float32 = 1;        # (0, 1]; 1: off
  seed @6 :UInt64 = 0;         # per-request sampling seed: same seed, same text
  stop @7 :List(Text);         # up to 8 non-empty stop sequences
  priority @8 :Priority = batch;
  deadlineS @9 :Float64 = 0;   # 0: none; else seconds from arrival for the whole reply
}

struct Token {
  id @0 :Int32;
  text @1 :Text;  # the text this token completes (may be empty inside a UTF-8 character)
}

interface TokenSink {
  tokens @0 (tokens :List(Token)) -> stream;  # in order; return when they are taken
}

struct Error {
  kind @0 :ErrorKind;
  message @1 :Text;
  retryAfterS @2 :Float64;  # overloaded: a hint; else 0
}

struct Result {
  finish @0 :FinishReason;
  promptTokens @1 :Int32;
  outputTokens @2 :Int32;
  ttftS @3 :Float64;           # arrival -> first token sent
  totalS @4 :Float64;          # arrival -> finish
  weightsVersion @5 :Int64;    # optimizer step of the weights that computed the reply
  replica @6 :Int32;           # the data-parallel replica that served it (0 when dp = 1)
}

struct Outcome {
  union {
    result @0 :Result;
    error @1 :Error;
  }
}

struct Latency {
  p50 @0 :Float64;  # seconds
  p90 @1 :Float64;
  p99 @2 :Float64;
  count @3 :Int64;
}

struct ClassStats {
  priority @0 :Priority;
  queueDepth @1 :Int64;
  ttft @2 :Latency;
  tpot @3 :Latency;  # time per output token after the first
}

struct Rejection {
  kind @0 :ErrorKind;
  count @1 :Int64;
}

struct Stats {
  classes @0 :List(ClassStats);  # one per priority, realtime first
  activeSequences @1 :Int64;
  kvBlocksUsed @2 :Int64;
  kvBlocksFree @3 :Int64;
  kvBlocksTotal @4 :Int64;
  tokensPerS @5 :Float64;
  weightsVersion @6 :Int64;
  requestsFinished @7 :Int64;     # each request is counted once, as its client saw it: a Result,
  requestsCancelled @8 :Int64;    # the client dropped it first, or an error of that kind
  rejections @9 :List(Rejection);
  promptTokensTotal @10 :Int64;
  outputTokensTotal @11 :Int64;
  replicas @12 :List(Stats);  # dp > 1: each replica's own stats (the fields above sum them;
                              # latency percentiles are the worst replica's); else empty
  trainingVersion @13 :Int64;  # serving while training: the step the trainers have reached
                               # (weightsVersion lags it while a kept copy drains); else = it
  windowsOpened @14 :Int64;    # serve.mode windows: safe points at which the engine stepped
  staleness @15 :Int64;        # trainingVersion - weightsVersion: versions behind the trainers
                               # (merged: the worst replica's own, so <= the merged
                               # trainingVersion - weightsVersion, which mix replicas)
  weightSyncs @16 :Int64;      # serve.mode dedicated: weight versions received from the trainers
  busySeconds @17 :Float64;    # time the engine spent in steps and weight refreshes (merged: sum)
}

struct ModelInfo {
  name @0 :Text;
  layers @1 :Int32;
  dim @2 :Int32;
  heads @3 :Int32;
  vocab @4 :Int32;
  seqLen @5 :Int32;
  dp @6 :Int32;
  tp @7 :Int32;
  pp @8 :Int32;
  layout @9 :Text;
  kvBlockTokens @10 :Int32;
  kvBlocks @11 :Int32;
  weightsVersion @12 :Int64;
}

interface Tandem {
  generate @0 (params :GenerateParams, sink :TokenSink) -> (outcome :Outcome);
  health @1 () -> (live :Bool, ready :Bool, detail :Text);
  stats @2 () -> (stats :Stats);
  modelInfo @3 () -> (info :ModelInfo);
}
