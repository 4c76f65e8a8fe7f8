#!/usr/bin/env bash
# Hugging Face GPT-2 interop, both directions, against PyTorch: tests/e2e/hf_gpt2_torch.py reads
# and writes HF names and layout (safetensors, no `transformers`) over the repository's one
# PyTorch model, bench/peers/torch_gpt.py (no code shared with Tandem).
#
#   export: train 5 steps of a small quickstart model with a checkpoint dir; `ckpt inspect` it
#           (exit 0, every checksum matches, step 5, model/wte/weight [50257, 64]: the unpadded
#           vocabulary); `ckpt export-hf`; PyTorch's loss of the exported model on a fixed batch
#           equals Tandem's validation loss on that batch with the same (final) weights.
#   import: a random HF GPT-2 (same sizes); `ckpt import-hf` it; `ckpt inspect` (step 0, no
#           optimizer state); `ckpt export-hf` of the import equals the random model's
#           safetensors tensor for tensor, bitwise; a run resumed from the import reports at
#           step 1 (computed before the update) the loss PyTorch computes on the batch.
#
# The fixed batch: a token shard holding exactly B = train.batch = 8 windows of seq_len 64 (the
# first 8*64+1 tokens of data/brown/val_000.bin). As data.val with eval_batches=1 it is one
# validation batch, windows in order; as data.train it holds exactly B windows, so step 1's
# batch is all of them (shuffled: the mean differs only by summation order).
#
# Tolerance: relative 2e-6 on the loss, the one tests/runtime/golden_test.cpp uses (kRel) for
# Tandem vs PyTorch fp32 losses. The export run trains with lr 3e-2 and no warm-up so its
# weights leave the near-uniform initial model (val loss ~8.5 vs ln 50257 = 10.82); the random
# model's c_attn weights have std 0.2 (--attn-std) so attention is far from uniform and a q/k,
# head-order or transpose mistake moves the loss by >= ~5e-5 relative (25x the tolerance;
# with std 0.02 a q/k swap moves it ~1e-6, below the tolerance).
#
# Skips (exit 77) when $TANDEM_TORCH_PYTHON (default /usr/bin/python3, Debian's python3-torch)
# cannot import torch, or when data/ is not prepared.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"

PY=${TANDEM_TORCH_PYTHON:-/usr/bin/python3}
HF=$SRC/tests/e2e/hf_gpt2_torch.py
if ! "$PY" -c 'import numpy, torch' > /dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch (install python3-torch, or set TANDEM_TORCH_PYTHON)"; exit 77
fi
need_data
[ -f "$SRC/data/brown/val_000.bin" ] || { echo "SKIP: data/brown/val_000.bin missing (run ./launch/setup)"; exit 77; }

TOL=2e-6      # relative, on the loss (golden_test.cpp kRel)
B=8 T=64      # train.batch (quickstart's) and model.seq_len
small=(--set model.layers=2 --set model.dim=64 --set model.heads=4 --set "model.seq_len=$T"
       --set train.threads=1 --set sample.count=0 --set train.eval_batches=1 --set "train.batch=$B")
t_begin=$(date +%s)

# run NAME CMD...: runs a command under a timeout, output in $WORK/NAME.log; fails with its tail.
run() {
  local name=$1; shift
  if ! timeout --signal=KILL 300 "$@" > "$WORK/$name.log" 2>&1; then
    tail -20 "$WORK/$name.log" >&2; fail "$name exited non-zero: $*"
  fi
}
# Checks that LOG has a line matching the extended regex; prints what it looked for.
expect_line() {  # expect_line NAME REGEX WHAT
  grep -Eq -- "$2" "$WORK/$1.log" || { cat "$WORK/$1.log" >&2; fail "$1: no line matching /$2/ ($3)"; }
  pass "$1: $3"
}
torch_loss() {  # torch_loss MODEL_DIR -> the loss PyTorch computes on the fixed batch
  local out
  out=$("$PY" "$HF" loss "$1" "$WORK/batch.bin" "$T" "$B" 2>&1) || fail "hf_gpt2_torch.py loss $1: $out"
  [[ $out =~ ^loss\ ([-0-9.eE+]+)$ ]] || fail "hf_gpt2_torch.py loss $1 printed '$out'"
  echo "${BASH_REMATCH[1]}"
}
same_loss() {  # same_loss WHAT TANDEM_LOSS TORCH_LOSS
  local out
  out=$(python3 - "$2" "$3" "$TOL" <<'PY'
import sys
a, b, tol = (float(x) for x in sys.argv[1:])
d = abs(a - b)
print(f"tandem {a:.8f} torch {b:.8f} |diff| {d:.3g} rel {d / abs(b):.3g} (tolerance {tol:g} rel)")
sys.exit(0 if d <= tol * abs(b) else 1)
PY
  ) || fail "$1: $out"
  pass "$1: $out"
}

# ---- the fixed batch
out=$("$PY" "$HF" shard "$WORK/batch.bin" --from data/brown/val_000.bin --windows $B --seq-len $T 2>&1) ||
  fail "hf_gpt2_torch.py shard: $out"
pass "fixed batch: $out ($B windows of $T)"

# ---- export direction
run train "$TANDEM" train configs/quickstart.yaml "${small[@]}" --set train.steps=5 --set train.warmup=0 \
    --set train.lr=3e-2 --set data.val="$WORK/batch.bin" --set train.checkpoint.dir="$WORK/trained" \
    --metrics-out "$WORK/train.jsonl"
expect_line train "data: .* $((B * T + 1)) val tokens" "the validation set is the $((B * T + 1))-token batch"
expect_line train "^checkpoint: step 5 -> .*/step_00000005\.h5" "checkpoint written at step 5"
val=$(metric "$WORK/train.jsonl" val_loss)
[ "$(metric "$WORK/train.jsonl" step)" = 5 ] && [ "$val" != None ] ||
  fail "metrics: last step $(metric "$WORK/train.jsonl" step), val_loss $val (want step 5 with a val_loss)"
echo "tandem val_loss after step 5 (the checkpoint's weights): $val"

run inspect_trained "$TANDEM" ckpt inspect "$WORK/trained"
expect_line inspect_trained "every checksum matches$" "ckpt inspect exits 0, every checksum matches"
expect_line inspect_trained "^step 5 \|.*optimizer state yes" "ckpt inspect: step 5, optimizer state yes"
expect_line inspect_trained "^  model/wte/weight +float32 +\[50257, 64\] " \
  "ckpt inspect: model/wte/weight float32 [50257, 64] (unpadded vocabulary)"

run export_trained "$TANDEM" ckpt export-hf "$WORK/trained" "$WORK/hf_trained"
[ -s "$WORK/hf_trained/model.safetensors" ] && [ -s "$WORK/hf_trained/config.json" ] ||
  fail "export-hf wrote no model.safetensors/config.json in $WORK/hf_trained: $(ls "$WORK/hf_trained" 2>&1)"
pass "export-hf: $(head -1 "$WORK/export_trained.log")"
same_loss "exported model: PyTorch loss on the batch = Tandem val_loss" "$val" "$(torch_loss "$WORK/hf_trained")"

# ---- import direction
out=$("$PY" "$HF" random "$WORK/hf_random" --layers 2 --dim 64 --heads 4 --vocab 50257 --positions $T \
      --seed 7 --attn-std 0.2 2>&1) || fail "hf_gpt2_torch.py random: $out"
pass "random HF GPT-2: $out"
want=$(torch_loss "$WORK/hf_random")
echo "torch loss of the random model on the batch: $want"

run import "$TANDEM" ckpt import-hf "$WORK/hf_random" "$WORK/imported"
pass "import-hf: $(head -1 "$WORK/import.log")"
run inspect_imported "$TANDEM" ckpt inspect "$WORK/imported"
expect_line inspect_imported "every checksum matches$" "ckpt inspect of the import exits 0, every checksum matches"
expect_line inspect_imported "^step 0 \|.*optimizer state no" "ckpt inspect: step 0, optimizer state no"
expect_line inspect_imported "^model: layers=2 dim=64 heads=4 vocab=50257 seq_len=$T$" "ckpt inspect: the random model's sizes"
expect_line inspect_imported "^  model/wte/weight +float32 +\[50257, 64\] " "ckpt inspect: model/wte/weight float32 [50257, 64]"
! grep -q "^  optimizer/" "$WORK/inspect_imported.log" || fail "the weights-only import lists optimizer tensors"
pass "ckpt inspect: no optimizer tensors in the import"

# Before the resumed run below adds step 1 to the same dir: the import's weights, back out.
run export_imported "$TANDEM" ckpt export-hf "$WORK/imported" "$WORK/hf_roundtrip"
out=$(python3 - "$WORK/hf_random/model.safetensors" "$WORK/hf_roundtrip/model.safetensors" <<'PY'
import json, struct, sys
def tensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    head.pop("__metadata__", None)
    return {k: (e["dtype"], e["shape"], raw[8 + n + e["data_offsets"][0]:8 + n + e["data_offsets"][1]])
            for k, e in head.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
bad = [f"only in the random model: {k}" for k in sorted(a.keys() - b.keys())]
bad += [f"only in the round trip: {k}" for k in sorted(b.keys() - a.keys())]
for k in sorted(a.keys() & b.keys()):
    (da, sa, xa), (db, sb, xb) = a[k], b[k]
    if (da, sa) != (db, sb):
        bad.append(f"{k}: {da} {sa} vs {db} {sb}")
    elif xa != xb:
        i = next(j for j in range(0, len(xa), 4) if xa[j:j + 4] != xb[j:j + 4])
        va, vb = struct.unpack("<f", xa[i:i + 4])[0], struct.unpack("<f", xb[i:i + 4])[0]
        nd = sum(xa[j:j + 4] != xb[j:j + 4] for j in range(0, len(xa), 4))
        bad.append(f"{k}: {nd} of {len(xa) // 4} values differ, first at element {i // 4}: {va!r} vs {vb!r}")
if bad:
    print("; ".join(bad[:10]) + (f"; ... {len(bad) - 10} more" if len(bad) > 10 else ""))
    sys.exit(1)
print(f"{len(a)} tensors, {sum(len(x) for _, _, x in a.values())} bytes, bitwise equal")
PY
) || fail "import-hf then export-hf does not give back the random model: $out"
pass "round trip (import-hf, export-hf) of the random model: $out"

run resume "$TANDEM" train configs/quickstart.yaml "${small[@]}" --resume --set train.checkpoint.dir="$WORK/imported" \
    --set data.train="$WORK/batch.bin" --set data.val="$WORK/batch.bin" --set train.steps=1 \
    --metrics-out "$WORK/resume.jsonl"
expect_line resume "^resumed from .*/step_00000000\.h5 at step 0, fresh optimizer state" \
  "the run resumes from the import (step 0, fresh optimizer state)"
expect_line resume "data: $((B * T + 1)) train tokens \($B windows\)" "the training set is exactly the $B-window batch"
[ "$(metric "$WORK/resume.jsonl" step)" = 1 ] || fail "resumed run: last metrics step $(metric "$WORK/resume.jsonl" step), want 1"
same_loss "imported model: Tandem step-1 loss = PyTorch loss on the batch" "$(metric "$WORK/resume.jsonl" loss)" "$want"

pass "HF interop both ways in $(( $(date +%s) - t_begin )) s"
