#!/usr/bin/env bash
# Resharding on load: a checkpoint saved at step 10 under one layout is resumed under another,
# and steps 11..20 stay in step with the straight 1-rank run within the layout-equivalence
# test's tolerance (relative 1e-5 on loss and grad_norm per step). Pairs (dp, tp, pp):
#   (2,2,1) zero1       -> (1,1,4)
#   (1,2,2) offload     -> (2,1,1)
#   (1,1,1)             -> (2,2,2) zero1 offload
#   pp=2 x 2 interleaved chunks -> (1,1,1)
#   dp=2 zero1          -> dp=2 zero0
# Every run is under a hard timeout, so a deadlock fails the test.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

TOL=1e-5
small=(--set model.layers=4 --set model.dim=64 --set model.heads=4 --set model.seq_len=64
       --set train.steps=20 --set train.batch=8 --set train.eval_batches=1 --set sample.count=0
       --set train.threads=1 --set train.warmup=5)
train() {  # train NAME NP overrides...
  local name=$1 np=$2; shift 2
  local t0=$(date +%s)
  if ! mpi 600 "$np" "$TANDEM" train configs/quickstart.yaml "${small[@]}" "$@" \
       --metrics-out "$WORK/$name.jsonl" > "$WORK/$name.log" 2>&1; then
    tail -20 "$WORK/$name.log"; fail "$name ($np ranks) exited non-zero"
  fi
  echo "ran $name on $np rank(s) in $(( $(date +%s) - t0 )) s"
}

train base 1
pairs=(
  "dp2tp2_to_pp4|4|--set parallel.dp=2 --set parallel.tp=2 --set parallel.zero=1|4|--set parallel.pp=4 --set parallel.microbatches=4"
  "tp2pp2_to_dp2|4|--set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2 --set parallel.offload=true|2|--set parallel.dp=2"
  "base_to_dp2tp2pp2|1||8|--set parallel.dp=2 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2 --set parallel.zero=1 --set parallel.offload=true"
  "interleaved_to_base|2|--set parallel.pp=2 --set parallel.schedule=interleaved --set parallel.chunks=2 --set parallel.microbatches=2|1|"
  "zero1_to_zero0|2|--set parallel.dp=2 --set parallel.zero=1|2|--set parallel.dp=2 --set parallel.zero=0"
)
ok=1
for spec in "${pairs[@]}"; do
  IFS='|' read -r name np_a a np_b b <<< "$spec"
  dir=$WORK/$name
  # shellcheck disable=SC2086
  train "$name-a" "$np_a" $a --set train.stop_after=10 --set train.checkpoint.dir="$dir"
  # shellcheck disable=SC2086
  train "$name-b" "$np_b" $b --set train.checkpoint.dir="$dir" --resume
  grep -q "resumed from .*step_00000010.h5 at step 10" "$WORK/$name-b.log" || fail "$name: did not resume from step 10"
  grep "layout: " "$WORK/$name-a.log" "$WORK/$name-b.log" | sed 's/.*layout: /  layout: /' | cut -c1-90
  python3 "$SRC/tests/e2e/compare_metrics.py" --tol "$TOL" "$WORK/base.jsonl" "$WORK/$name-a.jsonl" "$WORK/$name-b.jsonl" || ok=0
done
[ $ok = 1 ] || fail "a resharded run left the straight run's path"
pass "5 reshards stay within $TOL of the straight run (loss and grad_norm, steps 1..20)"
