#!/usr/bin/env bash
# Mixed precision end to end on the CPU (the GPU check's rehearsal): bench/gpu/bf16_track.sh
# with DEVICE=cpu trains the quickstart model in fp32 and in bf16 (the CPU reference path) for
# 20 steps and must say PASS (within the script's tolerances); the fp32 run's losses must also be
# bit for bit those of a run that never names train.precision (fp32 is the default and
# unchanged); a bf16 run checkpointed at step 10 and resumed must continue bit for bit as the
# uninterrupted one (the bf16 copy is rebuilt from the fp32 masters); and the script must refuse
# visibly (SKIP, exit 77) to call a cuda run passed where no GPU is visible.
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

# Checkpoints hold the fp32 masters; a resumed bf16 run rebuilds its bf16 copy from them and
# continues exactly as the uninterrupted run (steps 11..20, bit for bit).
bf16_run() {  # bf16_run NAME overrides...
  local name=$1; shift
  timeout --signal=KILL 900 "$TANDEM" train configs/quickstart.yaml --set train.precision=bf16 \
    --set sample.count=0 --set train.checkpoint.dir="$WORK/ckpt" "$@" \
    --metrics-out "$WORK/$name.jsonl" > "$WORK/$name.log" 2>&1 || { tail -20 "$WORK/$name.log"; fail "$name failed"; }
}
bf16_run first10 --set train.stop_after=10
bf16_run resumed --set train.stop_after=$STEPS --resume
python3 - "$WORK/resumed.jsonl" "$WORK/track/bf16.jsonl" <<'PY' || fail "the resumed bf16 run differs"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = {r["step"]: r["loss"] for r in map(json.loads, open(sys.argv[2]))}
assert [r["step"] for r in a] == list(range(11, 21)), [r["step"] for r in a]
assert all(r["loss"] == b[r["step"]] for r in a), [(r["loss"], b[r["step"]]) for r in a]
print("resumed bf16 == uninterrupted bf16, bit for bit, steps 11..20")
PY
pass "a resumed bf16 run continues exactly"

if command -v nvidia-smi > /dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "a GPU is visible: the cuda SKIP case is not exercised here"
else
  DEVICE=cuda bash "$SRC/bench/gpu/bf16_track.sh" "$BUILD" "$WORK/cuda" > "$WORK/cuda.out" 2>&1
  rc=$?
  cat "$WORK/cuda.out"
  [ $rc = 77 ] && grep -q '^SKIP' "$WORK/cuda.out" || fail "without a GPU the cuda check must SKIP (exit 77), got $rc"
  pass "without a GPU the cuda check says SKIP"
fi
