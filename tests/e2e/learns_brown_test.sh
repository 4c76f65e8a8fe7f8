#!/usr/bin/env bash
# Training on real text learns: a short run on the Brown corpus must bring the validation loss
# well under the unigram level. The unigram level of the validation split is 7.47 nats (the
# cross-entropy of the val tokens under the add-one-smoothed unigram distribution of the
# training tokens); random initialisation starts at ln(50257) = 10.8. The model is a small
# variant of configs/quickstart.yaml (2 layers, width 64), so that 1200 steps of 2048 tokens
# (2.5M tokens, 2 epochs) take ~9 minutes on 2 cores. The 6.8 bar was fixed before the first
# run; that run used 900 steps and ended at 6.79 (6.86 at step 600), too close to the bar, so
# the run was lengthened to 1200 steps — the bar was not moved.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

THRESHOLD=6.8   # nats: 0.67 under the unigram level
metrics=$WORK/learn.jsonl
"$TANDEM" train configs/quickstart.yaml --set model.layers=2 --set model.dim=64 --set model.heads=2 \
  --set model.seq_len=64 --set train.batch=32 --set train.lr=3e-3 --set train.steps=1200 \
  --set train.eval_every=400 --set train.eval_batches=8 --set sample.count=2 --set sample.tokens=24 \
  --metrics-out "$metrics" > "$WORK/learn.log" 2>&1 || { tail -20 "$WORK/learn.log"; fail "training exited non-zero"; }
grep -E "val|^final|^sample" "$WORK/learn.log" | grep -v "^\[" | tail -8
python3 - "$metrics" "$THRESHOLD" <<'PY' || fail "validation loss did not fall below the threshold"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
vals = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]
first, last = recs[0]["loss"], vals[-1][1]
print(f"first training loss {first:.3f}; validation loss by step: " + ", ".join(f"{s}: {v:.3f}" for s, v in vals))
assert first > 10.0, first                    # starts from a random model
assert all(b < a for (_, a), (_, b) in zip(vals, vals[1:])), vals  # falls at every evaluation
assert last < float(sys.argv[2]), (last, sys.argv[2])
PY
pass "validation loss fell below $THRESHOLD nats (unigram level 7.47)"
