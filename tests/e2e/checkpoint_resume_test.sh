#!/usr/bin/env bash
# Exact resume: 20 steps straight equal 10 steps, a checkpoint, a `--resume`, then 10 more —
# per-step loss and grad_norm bitwise equal, and the final weights and optimizer state
# bitwise equal (every dataset's checksum in `tandem ckpt inspect`), on 1 rank and on
# dp=2 x ZeRO-1 (the same layout on both sides). Also: `--resume` with no checkpoint says so
# and exits non-zero, as does `--resume` without train.checkpoint.dir, and keep_last prunes.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

small=(--set model.layers=4 --set model.dim=64 --set model.heads=4 --set model.seq_len=64
       --set train.steps=20 --set train.batch=8 --set train.eval_batches=1 --set sample.count=0
       --set train.threads=1 --set train.warmup=5)
train() {  # train NAME NP overrides...
  local name=$1 np=$2; shift 2
  if ! mpi 300 "$np" "$TANDEM" train configs/quickstart.yaml "${small[@]}" "$@" \
       --metrics-out "$WORK/$name.jsonl" > "$WORK/$name.log" 2>&1; then
    tail -20 "$WORK/$name.log"; fail "$name ($np ranks) exited non-zero"
  fi
}
checksums() { "$TANDEM" ckpt inspect "$1" | grep -E '^  (model|optimizer)/' | awk '{print $1, $3, $5, $6}'; }

for layout in "1rank 1" "dp2zero1 2 --set parallel.dp=2 --set parallel.zero=1"; do
  read -r name np rest <<< "$layout"
  # shellcheck disable=SC2086
  train "$name-straight" "$np" $rest --set train.checkpoint.dir="$WORK/$name-straight"
  # shellcheck disable=SC2086
  train "$name-first" "$np" $rest --set train.stop_after=10 --set train.checkpoint.dir="$WORK/$name-split" \
        --set train.checkpoint.every=5 --set train.checkpoint.keep_last=2
  grep -q "checkpoint: step 10 -> " "$WORK/$name-first.log" || fail "$name: no checkpoint at step 10"
  [ "$(cat "$WORK/$name-split/latest")" = "step_00000010.h5" ] || fail "$name: latest is not step 10"
  [ -f "$WORK/$name-split/step_00000005.h5" ] || fail "$name: keep_last=2 removed step 5 too early"
  # shellcheck disable=SC2086
  train "$name-second" "$np" $rest --set train.checkpoint.dir="$WORK/$name-split" --set train.checkpoint.keep_last=2 --resume
  grep -q "resumed from .*step_00000010.h5 at step 10" "$WORK/$name-second.log" || fail "$name: did not resume from step 10"
  python3 "$SRC/tests/e2e/compare_metrics.py" --exact "$WORK/$name-straight.jsonl" "$WORK/$name-first.jsonl" \
      "$WORK/$name-second.jsonl" || fail "$name: resumed run differs from the straight run"
  ls "$WORK/$name-split"/step_*.h5 | xargs -n1 basename | tr '\n' ' ' | grep -qx "step_00000010.h5 step_00000020.h5 " \
      || fail "$name: keep_last=2 should leave steps 10 and 20, found: $(ls "$WORK/$name-split")"
  a=$(checksums "$WORK/$name-straight"); b=$(checksums "$WORK/$name-split")
  [ -n "$a" ] || fail "$name: inspect listed no tensors"
  [ "$a" = "$b" ] || fail "$name: final checkpoints differ: $(diff <(echo "$a") <(echo "$b") | head -5)"
  pass "$name: 20 = 10 + resume + 10, bitwise (losses, grad norms, $(echo "$a" | wc -l) final tensors)"
done

# --resume without a checkpoint, and without a checkpoint dir: clear message, non-zero exit.
mkdir -p "$WORK/empty"
"$TANDEM" train configs/quickstart.yaml "${small[@]}" --set train.checkpoint.dir="$WORK/empty" --resume \
    > "$WORK/noresume.log" 2>&1 && fail "--resume with no checkpoint exited 0"
grep -q "no checkpoint to resume from in $WORK/empty" "$WORK/noresume.log" || { cat "$WORK/noresume.log"; fail "--resume with no checkpoint: message"; }
grep -q "^step " "$WORK/noresume.log" && fail "--resume with no checkpoint trained anyway"
"$TANDEM" train configs/quickstart.yaml "${small[@]}" --resume > "$WORK/nodir.log" 2>&1 && fail "--resume without a dir exited 0"
grep -q "set train.checkpoint.dir" "$WORK/nodir.log" || { cat "$WORK/nodir.log"; fail "--resume without a dir: message"; }
pass "--resume without a checkpoint or a dir is refused"
