#!/usr/bin/env bash
# The serving front end against hostile clients, through the real server over a socket
# (tests/serve_e2e/serve_hostile.cpp is the client):
#   - a server on one rank without mpirun (a singleton) listens on its RPC and metrics ports
#     only: no Open MPI listener on any interface; under mpirun on one node the ranks
#     likewise (mpirun's own listeners are the launcher's, see docs/serving.md);
#   - one rank: a 1 MB single-word prompt, a 10 MB prompt and prompts that cannot fit each get
#     their error quickly while a second connection's health and requests keep their latency;
#     a NUL stays in a prompt, a subnormal temperature is greedy; slow, stalled, throwing and
#     null sinks and wrongly typed parameters end as the contract says and are counted once
#     (stats and /metrics); resident memory returns to within 24 MB after unique long words,
#     20 connections each sending 16 MB of one message and 2,000 idle connections;
#   - tp = 2: the sink and value scenarios again.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
HOSTILE=$BUILD/tests/serve_hostile
[ -x "$HOSTILE" ] || fail "$HOSTILE not built"
LIMITS=(--set serve.sink_timeout_s=1 --set serve.idle_timeout_s=2 --set serve.max_connections=64
        --set serve.metrics_listen=127.0.0.1:0)

CKPT=$WORK/ckpt
make_serve_checkpoint "$CKPT"

# Listeners of the tandem processes under $1 (the test's own pid tree), minus the given ports.
other_listeners() {  # other_listeners PID PORT...
  local pid=$1; shift
  python3 "$SRC/tests/e2e/listening_ports.py" "$pid" | awk -v keep="$*" '
    BEGIN { n = split(keep, k, " "); for (i = 1; i <= n; i++) ok[k[i]] = 1 }
    $3 == "tandem" { split($1, a, ":"); port = a[length(a)]; if (!(port in ok)) print }'
}

# 1. A singleton: started without mpirun.
rm -f "$WORK/single.port"
"$TANDEM" serve configs/quickstart.yaml "${SERVE_MODEL[@]}" --set train.threads=1 --set serve.listen=127.0.0.1:0 \
  --set serve.metrics_listen=127.0.0.1:0 --checkpoint "$CKPT" --port-file "$WORK/single.port" > "$WORK/single.log" 2>&1 &
single=$!
for _ in $(seq 1 600); do [ -s "$WORK/single.port" ] && break; sleep 0.1; done
[ -s "$WORK/single.port" ] || { kill -9 $single; tail -20 "$WORK/single.log"; fail "singleton: no port file"; }
all=$(python3 "$SRC/tests/e2e/listening_ports.py" $single | awk '{ print $1 }' | tr '\n' ' ')
extra=$(other_listeners $single "$(sed -n 1p "$WORK/single.port")" "$(sed -n 2p "$WORK/single.port")")
kill -TERM $single; wait $single
[ -z "$extra" ] || fail "a singleton server listens beyond its RPC and metrics ports: $extra"
pass "singleton: listens on its RPC and metrics ports only: $all"

# 2. One rank.
start_server one 1 900 "$CKPT" "${LIMITS[@]}"
for scenario in prompts values "sinks 1" "memory $LEADER_PID 2 64"; do
  # shellcheck disable=SC2086
  timeout 300 "$HOSTILE" "$SERVER_ADDR" $scenario > "$WORK/one-${scenario%% *}.out" 2>&1
  rc=$?
  cat "$WORK/one-${scenario%% *}.out"
  [ $rc = 0 ] || { tail -20 "$WORK/one.log"; fail "one rank: scenario $scenario"; }
done
python3 - "$METRICS_PORT" > "$WORK/metrics.txt" <<'PY' || fail "GET /metrics failed"
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read().decode())
PY
grep -q '^tandem_requests_rejected_total{kind="internal"} 1$' "$WORK/metrics.txt" \
  || { grep rejected "$WORK/metrics.txt"; fail "/metrics does not count the throwing sink once under internal"; }
grep -q '^tandem_requests_rejected_total{kind="deadline_exceeded"} 1$' "$WORK/metrics.txt" \
  || { grep rejected "$WORK/metrics.txt"; fail "/metrics does not count the stalled sink under deadline_exceeded"; }
stop_server one
pass "one rank: bounded prompts, sinks, values and memory"

# 3. tp = 2 under mpirun.
start_server tp2 2 600 "$CKPT" "${LIMITS[@]}" --set parallel.tp=2
extra=$(other_listeners "$SERVER_PID" "${SERVER_ADDR##*:}" "$METRICS_PORT")
[ -z "$extra" ] || fail "tp=2: the ranks listen beyond the RPC and metrics ports: $extra"
for scenario in values "sinks 1"; do
  # shellcheck disable=SC2086
  timeout 300 "$HOSTILE" "$SERVER_ADDR" $scenario > "$WORK/tp2-${scenario%% *}.out" 2>&1
  rc=$?
  sed 's/^/tp2: /' "$WORK/tp2-${scenario%% *}.out"
  [ $rc = 0 ] || { tail -20 "$WORK/tp2.log"; fail "tp=2: scenario $scenario"; }
done
stop_server tp2
pass "tp=2: only the RPC and metrics ports; sinks and values as on one rank"
