#!/usr/bin/env bash
# The serving API end to end, through the real client and server (one rank):
#   - `tandem generate` streams text to stdout; a bad request exits non-zero naming its kind;
#   - a seeded sampled request gives the same text twice;
#   - cancelling mid-stream frees the sequence's KV blocks (read back through `stats`);
#   - each bad request gets invalid_request and the next good request succeeds;
#   - health / modelInfo answer, and GET /metrics serves Prometheus text;
#   - a second server with a tiny queue: a full queue refuses with overloaded (retry-after),
#     a request whose deadline passes while queued gets deadline_exceeded, then it serves on;
#   - SIGTERM stops every rank cleanly;
#   - with serve.stream_interval_ms the first token comes alone and the rest in at most one
#     message per interval, the same greedy tokens as a server streaming every token;
#   - the same seeded / cancel / errors scenarios and /metrics through the router of a
#     data-parallel server (parallel.dp=2, two ranks): both replicas serve, and the cancel
#     frees the blocks of whichever replica held them.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
[ -x "$SERVE_CHECK" ] || fail "$SERVE_CHECK not built"

CKPT=$WORK/ckpt
make_serve_checkpoint "$CKPT"
start_server api 1 600 "$CKPT" --set serve.metrics_listen=127.0.0.1:0 --set serve.kv_blocks=64

timeout 60 "$TANDEM" generate --server "$SERVER_ADDR" --prompt "The jury said" --max-tokens 12 \
  > "$WORK/gen.out" 2> "$WORK/gen.err" || { cat "$WORK/gen.err"; fail "tandem generate failed"; }
[ -s "$WORK/gen.out" ] || fail "tandem generate printed no text"
grep -q "finish: length, 12 tokens" "$WORK/gen.err" || { cat "$WORK/gen.err"; fail "generate did not report 12 tokens"; }
pass "tandem generate streamed: $(head -c 60 "$WORK/gen.out" | tr '\n' ' ')"
rc=0
timeout 60 "$TANDEM" generate --server "$SERVER_ADDR" --prompt "x" --max-tokens 100000 \
  > /dev/null 2> "$WORK/gen-bad.err" || rc=$?
[ $rc = 10 ] && grep -q "invalid_request" "$WORK/gen-bad.err" \
  || { cat "$WORK/gen-bad.err"; fail "a too-long request: exit $rc (want 10, invalid_request)"; }
pass "a bad request exits 10 with invalid_request"

for scenario in seeded cancel errors; do
  timeout 120 "$SERVE_CHECK" "$SERVER_ADDR" "$scenario" > "$WORK/$scenario.out" 2>&1
  rc=$?
  cat "$WORK/$scenario.out"
  [ $rc = 0 ] || { tail -20 "$WORK/api.log"; fail "scenario $scenario"; }
done

python3 - "$METRICS_PORT" > "$WORK/metrics.txt" <<'PY' || fail "GET /metrics failed"
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode())
PY
for m in tandem_kv_blocks_free tandem_active_sequences tandem_queue_depth tandem_ttft_seconds tandem_weights_version; do
  grep -q "^$m" "$WORK/metrics.txt" || { head -40 "$WORK/metrics.txt"; fail "metric $m missing"; }
done
pass "GET /metrics serves Prometheus text ($(grep -c '^tandem_' "$WORK/metrics.txt") samples)"
timeout 60 "$SERVE_CHECK" "$SERVER_ADDR" greedy 464,9002,531 16 > "$WORK/every.ids" \
  || { tail -20 "$WORK/api.log"; fail "greedy on the every-token server"; }
stop_server api

start_server interval 1 600 "$CKPT" --set serve.stream_interval_ms=1000
timeout 60 "$SERVE_CHECK" "$SERVER_ADDR" streamed 1000 464,9002,531 16 > "$WORK/interval.ids" \
  || { tail -20 "$WORK/interval.log"; fail "scenario streamed (serve.stream_interval_ms=1000)"; }
cat "$WORK/interval.ids"
[ "$(head -1 "$WORK/every.ids")" = "$(head -1 "$WORK/interval.ids")" ] \
  || fail "stream_interval changed the tokens: $(head -1 "$WORK/every.ids") vs $(head -1 "$WORK/interval.ids")"
stop_server interval
pass "serve.stream_interval_ms: first token alone, then one message per interval; same tokens"

start_server tight 1 600 "$CKPT" --set serve.max_seqs=1 --set serve.max_batch_tokens=8 \
  --set serve.queue_batch=2 --set serve.queue_realtime=2
timeout 300 "$SERVE_CHECK" "$SERVER_ADDR" overload > "$WORK/overload.out" 2>&1
rc=$?
cat "$WORK/overload.out"
[ $rc = 0 ] || { tail -20 "$WORK/tight.log"; fail "scenario overload"; }
stop_server tight

start_server routed 2 600 "$CKPT" --set parallel.dp=2 --set serve.metrics_listen=127.0.0.1:0 --set serve.kv_blocks=64
for scenario in seeded cancel cancel errors; do
  timeout 120 "$SERVE_CHECK" "$SERVER_ADDR" "$scenario" > "$WORK/routed-$scenario.out" 2>&1
  rc=$?
  sed 's/^/dp2: /' "$WORK/routed-$scenario.out"
  [ $rc = 0 ] || { tail -20 "$WORK/routed.log"; fail "dp=2: scenario $scenario"; }
done
timeout 60 "$SERVE_CHECK" "$SERVER_ADDR" replicas 2 || { tail -20 "$WORK/routed.log"; fail "dp=2: requests not spread"; }
python3 - "$METRICS_PORT" > "$WORK/routed-metrics.txt" <<'PY' || fail "dp=2: GET /metrics failed"
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode())
PY
grep -q '^tandem_model_info{.*dp="2"' "$WORK/routed-metrics.txt" || { grep model_info "$WORK/routed-metrics.txt"; fail "dp=2: metrics do not say dp 2"; }
grep -q '^tandem_kv_blocks_total 128' "$WORK/routed-metrics.txt" || { grep kv_blocks "$WORK/routed-metrics.txt"; fail "dp=2: metrics do not sum both replicas' 64 blocks"; }
stop_server routed
pass "dp=2: the router serves both replicas; cancel, typed errors and metrics through it"
pass "typed errors, cancellation, overload and deadlines through the real client and server"
