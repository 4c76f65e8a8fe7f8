#!/usr/bin/env bash
# A bounded soak through the real client and server: 2000 requests with random prompt and
# output lengths, priorities and sampling, a fifth of them disconnected mid-stream, from 8
# concurrent clients. It ends with every KV block free, no request failed (overloaded aside),
# and the leader's resident memory flat: after the first 400 requests (warm caches) it grows
# by less than 16 MB over the remaining 1600.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
[ -x "$SERVE_CHECK" ] || fail "$SERVE_CHECK not built"
REQUESTS=${SOAK_REQUESTS:-2000}

CKPT=$WORK/ckpt
make_serve_checkpoint "$CKPT"
start_server soak 1 1200 "$CKPT" --set serve.kv_blocks=96 --set serve.max_seqs=8 --set serve.prefill_chunk=16
rss() { awk '/VmRSS/ { print $2 }' "/proc/$LEADER_PID/status"; }
warm=$((REQUESTS / 5))
timeout 600 "$SERVE_CHECK" "$SERVER_ADDR" soak "$warm" 1 || { tail -20 "$WORK/soak.log"; fail "warm-up soak"; }
rss0=$(rss)
timeout 1000 "$SERVE_CHECK" "$SERVER_ADDR" soak $((REQUESTS - warm)) 2 || { tail -20 "$WORK/soak.log"; fail "soak"; }
rss1=$(rss)
growth=$(( (rss1 - rss0) / 1024 ))
echo "leader RSS: ${rss0} kB after warm-up, ${rss1} kB at the end (+${growth} MB)"
stop_server soak
[ "$growth" -lt 16 ] || fail "the leader's memory grew by ${growth} MB over $((REQUESTS - warm)) requests"
pass "$REQUESTS-request soak: all blocks free, memory flat (+${growth} MB)"
