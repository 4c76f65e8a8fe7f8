#!/usr/bin/env bash
# `tandem train` contract: progress lines, JSON-lines metrics with step/loss/lr/tokens_per_s
# (+ val_loss when computed), the final summary line, --set overrides, samples at the end.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

metrics=$WORK/m.jsonl
out=$(timeout 600 "$TANDEM" train configs/quickstart.yaml --set model.layers=1 --set model.dim=64 \
      --set model.heads=2 --set model.seq_len=32 --set train.batch=4 --set train.steps=6 \
      --set train.eval_every=3 --set train.eval_batches=2 --set sample.count=1 \
      --set sample.tokens=5 --set parallel.microbatches=2 --metrics-out "$metrics" 2>&1)
rc=$?
echo "$out" | tail -12
[ $rc -eq 0 ] || fail "train exited $rc"
[ "$(grep -c . "$metrics")" -eq 6 ] || fail "want 6 metrics lines, got $(grep -c . "$metrics")"
python3 - "$metrics" <<'PY' || fail "metrics content"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
for i, r in enumerate(recs, 1):
    for k in ("step", "loss", "lr", "tokens_per_s"):
        assert k in r, f"line {i} lacks {k}: {r}"
    assert r["step"] == i, r
    assert r["tokens_per_s"] > 0 and r["loss"] > 0, r
with_val = [r["step"] for r in recs if "val_loss" in r]
assert with_val == [3, 6], f"val_loss at steps {with_val}, want [3, 6]"
# warm-up then cosine: lr rises during warm-up (warmup 30 > 6 steps here)
assert recs[0]["lr"] < recs[-1]["lr"], [r["lr"] for r in recs]
PY
echo "$out" | grep -qE "^step +6/6 \| loss [0-9.]+ \| val [0-9.]+ \| lr .* tok/s \| elapsed .* \| eta .* \| peak" \
  || fail "progress line format"
echo "$out" | grep -qE "^final: step=6 loss=[0-9.]+ val_loss=[0-9.]+ tokens_per_s=[0-9.]+$" || fail "final line"
echo "$out" | grep -q "^sample 1: The jury said" || fail "sample line"
pass "progress, metrics, final line and sample as documented"
