#!/usr/bin/env bash
# Greedy output through the real client and server: with the KV cache it equals the output
# that recomputes the whole context every step (serve.recompute=true), under layouts (dp, tp,
# pp) = (1,1,1), (1,2,1), (1,1,2), (1,2,2), and every layout gives the same tokens; so do the
# data-parallel layouts (2,1,1) and (2,2,1), where the router spreads the requests round-robin
# over two replicas and each replica serves some of them (read back through stats). Four
# prompts, 20 new tokens each (chunked prefill: serve.prefill_chunk=4), plus one seeded
# sampled request (temperature 1, top-k 50, top-p 0.9: the distributed sampler over
# vocabulary shards); one checkpoint written on one rank, resharded on load.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
[ -x "$SERVE_CHECK" ] || fail "$SERVE_CHECK not built"

CKPT=$WORK/ckpt
make_serve_checkpoint "$CKPT" --set train.steps=1 --set train.warmup=0 --set train.lr=1e-9
prompts=("464,1,2,3,4,5,6" "15496,11,616,1438,318" "40,1101,257,1332,286,262,6881,290,262,17290,11,290,340,373,257" "7454,2402,257,640")
layouts=("1|1|1" "1|2|1" "1|1|2" "1|2|2" "2|1|1" "2|2|1")
ref=""
for spec in "${layouts[@]}"; do
  IFS='|' read -r dp tp pp <<< "$spec"
  np=$((dp * tp * pp))
  for mode in cached recompute; do
    name=dp${dp}tp${tp}pp${pp}-$mode
    extra=()
    [ $mode = recompute ] && extra=(--set serve.recompute=true)
    start_server "$name" "$np" 300 "$CKPT" --set parallel.dp="$dp" --set parallel.tp="$tp" --set parallel.pp="$pp" \
      --set serve.prefill_chunk=4 "${extra[@]}"
    out=""
    for p in "${prompts[@]}"; do
      got=$(timeout 120 "$SERVE_CHECK" "$SERVER_ADDR" greedy "$p" 20) || { tail -20 "$WORK/$name.log"; fail "$name: greedy request failed"; }
      out+="$got;"
    done
    got=$(timeout 120 "$SERVE_CHECK" "$SERVER_ADDR" sampled "464,3290,531" 20) || { tail -20 "$WORK/$name.log"; fail "$name: sampled request failed"; }
    out+="sampled:$got"
    if [ "$dp" -gt 1 ]; then
      timeout 60 "$SERVE_CHECK" "$SERVER_ADDR" replicas "$dp" || { tail -20 "$WORK/$name.log"; fail "$name: requests not spread over $dp replicas"; }
    fi
    stop_server "$name"
    echo "$name: ${out:0:50}... sampled: ${out##*sampled:}"
    if [ -z "$ref" ]; then ref=$out
    elif [ "$out" != "$ref" ]; then
      echo "reference: $ref"; echo "$name:      $out"; fail "$name differs from dp1tp1pp1-cached"
    fi
  done
done
pass "KV-cached greedy == recompute greedy, identical under (1,1,1) (1,2,1) (1,1,2) (1,2,2) (2,1,1) (2,2,1)"
