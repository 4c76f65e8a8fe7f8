#!/usr/bin/env bash
# Mixed precision end to end on the CPU (the GPU check's rehearsal): bench/gpu/bf16_track.sh
# with DEVICE=cpu trains the quickstart model in fp32 and in bf16 (the CPU reference path) for
# 20 steps and must say PASS (per-step losses within the script's 2%); the fp32 run's losses
# must also be bit for bit those of a run that never names train.precision (fp32 is the default
# and unchanged), and the script must refuse visibly (SKIP, exit 77) to call a cuda run passed
# where no GPU is visible.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

STEPS=20
DEVICE=cpu STEPS=$STEPS TIMEOUT=1200 bash "$SRC/bench/gpu/bf16_track.sh" "$BUILD" "$WORK/track" \
  > "$WORK/track.out" 2>&1
rc=$?
cat "$WORK/track.out"
[ $rc = 0 ] || { tail -5 "$WORK/track/bf16.log"; fail "bf16_track.sh on the CPU exited $rc"; }
grep -q '^PASS bf16 vs fp32 on cpu: 20/20 steps' "$WORK/track.out" || fail "no PASS line"
grep -q 'precision bf16 on the CPU backend: the reference path' "$WORK/track/bf16.log" \
  || fail "the bf16 run does not say it runs the CPU reference path"
pass "bf16 tracks fp32 on the CPU reference path"

# The default (no train.precision anywhere) is the fp32 run, bit for bit.
timeout --signal=KILL 900 "$TANDEM" train configs/quickstart.yaml --set train.stop_after=$STEPS \
  --set sample.count=0 --metrics-out "$WORK/default.jsonl" > "$WORK/default.log" 2>&1 \
  || { tail -20 "$WORK/default.log"; fail "the default run failed"; }
python3 - "$WORK/default.jsonl" "$WORK/track/fp32.jsonl" <<'PY' || fail "fp32 losses differ from the default run's"
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 20 and a == b, (a, b)
print("fp32 == default, bit for bit, over", len(a), "steps")
PY
pass "train.precision=fp32 is the default, unchanged"

if command -v nvidia-smi > /dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "a GPU is visible: the cuda SKIP case is not exercised here"
else
  DEVICE=cuda bash "$SRC/bench/gpu/bf16_track.sh" "$BUILD" "$WORK/cuda" > "$WORK/cuda.out" 2>&1
  rc=$?
  cat "$WORK/cuda.out"
  [ $rc = 77 ] && grep -q '^SKIP' "$WORK/cuda.out" || fail "without a GPU the cuda check must SKIP (exit 77), got $rc"
  pass "without a GPU the cuda check says SKIP"
fi
