#!/usr/bin/env bash
# The repository's one PyTorch model (bench/peers/torch_gpt.py) and the two benchmark scripts
# over it, at tiny sizes (no Tandem binary needed):
#   model:  parameters listed in the documented order (the golden fixture's and the HF
#           script's name maps rely on it); a decode through GrowingKv and through
#           PreallocatedKv (prompt, then a chunk of several tokens, then one token) gives the
#           logits of one full forward over the same tokens, within 1e-5 relative, and
#           last_logits those of the forward's last position, within 1e-6;
#   CPU peer (bench/peers/torch_gpt_bench.py, what bench/run_{train,decode}_bench.sh run):
#           --mode train ends with tokens_per_s=..., --mode infer decodes the same tokens with
#           and without its KV cache and ends with the three fields run_decode_bench.sh reads;
#   GPU peer (bench/gpu/torch_gpu_bench.py --device cpu): a train and a decode record per
#           precision (fp32, bf16), status ok, and every decode's cache_matches true.
# Skips (exit 77) when $TANDEM_TORCH_PYTHON (default /usr/bin/python3, Debian's python3-torch)
# cannot import torch.
set -uo pipefail
source "$(dirname "$0")/../e2e/lib.sh" "$@"

PY=${TANDEM_TORCH_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import torch' > /dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch (install python3-torch, or set TANDEM_TORCH_PYTHON)"; exit 77
fi

# ---- the model's contract
out=$("$PY" - "$SRC/bench/peers" <<'PY' 2>&1
import sys
sys.path.insert(0, sys.argv[1])
import torch
from torch_gpt import GPT, GrowingKv, PreallocatedKv

torch.manual_seed(3)
model = GPT(2, 32, 4, 50, 16).eval()
names = [n for n, _ in model.named_parameters()]
want = ["wte.weight", "wpe.weight"]
for i in range(2):
    for part in ("ln1", "qkv", "proj", "ln2", "fc", "fc_proj"):
        want += [f"blocks.{i}.{part}.weight", f"blocks.{i}.{part}.bias"]
want += ["ln_f.weight", "ln_f.bias"]
assert names == want, f"parameter order {names}"
with torch.no_grad():
    idx = torch.randint(0, 50, (3, 12))
    full, _ = model(idx)
    for make in (lambda: GrowingKv(), lambda: PreallocatedKv(3, 4, 16, 8, torch.float32, "cpu")):
        caches = [make() for _ in model.blocks]
        got, past = [], 0
        for n in (7, 4, 1):  # prompt, a chunk after the cached prefix, one token
            logits, _ = model(idx[:, past:past + n], caches=caches, past=past)
            got.append(logits)
            past += n
        got = torch.cat(got, dim=1)
        rel = ((got - full).abs().max() / full.abs().max()).item()
        assert rel <= 1e-5, f"{type(caches[0]).__name__}: cached logits differ from the full forward by {rel:.2e} relative"
    last, every = model.last_logits(idx[:, :5]), model(idx[:, :5])[0][:, -1, :]
    rel = ((last - every).abs().max() / every.abs().max()).item()
    assert rel <= 1e-6, f"last_logits differs from the forward's last position by {rel:.2e} relative"
print(f"{len(names)} parameters in order; GrowingKv and PreallocatedKv match the full forward")
PY
) || fail "torch_gpt.py: $out"
pass "model: $out"

# ---- the CPU peer
tiny=(--layers 2 --dim 32 --heads 4 --vocab 200 --seq 16 --batch 2 --threads 1 --block-size 16)
peer() {  # peer NAME ARGS...: runs the peer, output in $WORK/NAME.log
  local name=$1; shift
  timeout --signal=KILL 300 "$PY" "$SRC/bench/peers/torch_gpt_bench.py" "$@" > "$WORK/$name.log" 2>&1 ||
    { cat "$WORK/$name.log" >&2; fail "torch_gpt_bench.py $* exited non-zero"; }
}
peer train --mode train --steps 3 "${tiny[@]}"
tail -1 "$WORK/train.log" | grep -Eq '^tokens_per_s=[0-9.]+$' ||
  { cat "$WORK/train.log" >&2; fail "--mode train: the last line is not tokens_per_s=N"; }
pass "CPU peer, train: $(tail -1 "$WORK/train.log")"
peer infer --mode infer --steps 3 --gen-tokens 6 "${tiny[@]}"
grep -q 'same tokens as without cache: True$' "$WORK/infer.log" ||
  { cat "$WORK/infer.log" >&2; fail "--mode infer: the KV-cached decode differs from the uncached one"; }
tail -1 "$WORK/infer.log" |
  grep -Eq '^prefill_tokens_per_s=[0-9.]+ decode_tokens_per_s=[0-9.]+ decode_kv_tokens_per_s=[0-9.]+$' ||
  { cat "$WORK/infer.log" >&2; fail "--mode infer: the last line lacks the three rates"; }
pass "CPU peer, infer: same tokens with and without cache; $(tail -1 "$WORK/infer.log")"

# ---- the GPU peer on the CPU
gpu=(--device cpu --models t:2:32:2:2 --vocab 200 --seq 16 --warmup 1 --steps 2 --batches "1 2"
     --prompt 4 --new-tokens 4 --decode-runs 1 --precisions fp32,bf16 --deadline-s 240
     --jsonl "$WORK/gpu.jsonl")
for mode in train decode; do
  timeout --signal=KILL 300 "$PY" "$SRC/bench/gpu/torch_gpu_bench.py" --mode $mode "${gpu[@]}" \
    > "$WORK/gpu_$mode.log" 2>&1 || { cat "$WORK/gpu_$mode.log" >&2; fail "torch_gpu_bench.py --mode $mode exited non-zero"; }
done
out=$(python3 - "$WORK/gpu.jsonl" <<'PY'
import json, sys
recs = [json.loads(line) for line in open(sys.argv[1])]
bad = [r for r in recs if r["status"] != "ok" or (r["kind"] == "decode" and r["cache_matches"] is not True)]
kinds = sorted((r["kind"], r["precision"], r.get("batch")) for r in recs)
want = sorted([("train", p, 2) for p in ("fp32", "bf16")] + [("decode", p, b) for p in ("fp32", "bf16") for b in (1, 2)])
if bad or kinds != want:
    print(f"records {kinds} (want {want}); not ok: {bad}")
    sys.exit(1)
print(f"{len(recs)} records ok, every decode matches its uncached decode")
PY
) || fail "torch_gpu_bench.py: $out"
pass "GPU peer on the CPU: $out"
