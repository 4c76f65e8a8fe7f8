#!/usr/bin/env bash
# Training on real text learns: a short run on the Brown corpus must bring the validation loss
# well under the unigram level. The unigram level of the validation split is 7.47 nats (the
# cross-entropy of the val tokens under the add-one-smoothed unigram distribution of the
# training tokens); random initialisation starts at ln(50257) = 10.8. The 6.8 bar was fixed
# before the first run and has never moved.
#
# Sized by work: a small variant of configs/quickstart.yaml (2 layers, width 64), 1200 steps of
# 16 x 64 tokens (1.23M tokens, one epoch), trained data-parallel on 2 ranks x 1 thread (the
# per-step losses of a layout equal one rank's; on 2 cores this runs ~1.5x faster than 1 rank
# x 2 threads, whose small GEMMs scale poorly). Measured: val 7.07 / 6.83 / 6.757 at steps
# 400 / 800 / 1200, the same to 1e-3 on both instruction sets. Time on a 2-core AMD EPYC Zen 4
# VM: 329 s under ctest with the AVX2 build (-march=znver3, OPENBLAS_CORETYPE=Zen), 280 s with
# the native AVX-512 build. Not yet timed on a real AVX2-only machine (a Zen 3 with a lower
# clock may take up to ~2x as long; the ctest timeout is 1500 s, the run's own 1400 s). History: the first version (1200 steps of 32 x 64 tokens, 1 rank) took 7.5 min
# on the AVX-512 machine but ~28 min on an AVX2-only Zen 3, past its timeout, mostly because the
# exp loops did not vectorize without AVX-512 (fixed in kernels/cpu/simd.h); halving the batch
# kept the bar reachable (6.77 at 1.0M tokens, where 32 x 64 needed 1.8M for 6.79).
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

THRESHOLD=6.8   # nats: 0.67 under the unigram level
metrics=$WORK/learn.jsonl
mpi 1400 2 "$TANDEM" train configs/quickstart.yaml --set model.layers=2 --set model.dim=64 \
  --set model.heads=2 --set model.seq_len=64 --set train.batch=16 --set train.lr=3e-3 \
  --set train.steps=1200 --set train.eval_every=400 --set train.eval_batches=8 \
  --set parallel.dp=2 --set train.threads=1 --set sample.count=2 --set sample.tokens=24 \
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
