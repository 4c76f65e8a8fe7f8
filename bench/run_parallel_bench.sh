#!/usr/bin/env bash
# Parallel-training figures on this machine (recorded in docs/performance.md):
#   1. tokens/s of dp=2 on 2 ranks against 1 rank (quickstart model, same global batch);
#   2. bytes each rank hands to each group per step, against the analytic count;
#   3. the measured pipeline bubble against (pp-1)/(m+pp-1);
#   4. peak activation memory with recompute none / selective / full (train_bench).
#   bench/run_parallel_bench.sh [BUILD_DIR] [STEPS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
STEPS=${2:-12}
cd "$ROOT"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=$(mktemp -d /tmp/tandem-pbench.XXXXXX)
common=(--set train.steps="$STEPS" --set train.eval_every=0 --set train.eval_batches=1 --set sample.count=0)

train() {  # train NAME NP overrides...
  local name=$1 np=$2; shift 2
  timeout --signal=KILL 1800 mpirun -np "$np" --oversubscribe --bind-to none "$BUILD/tandem" train \
    configs/quickstart.yaml "${common[@]}" "$@" --metrics-out "$OUT/$name.jsonl" > "$OUT/$name.log" 2>&1 \
    || { tail -20 "$OUT/$name.log"; exit 1; }
}

echo "== 1. data parallel: 1 rank (2 threads) vs dp=2 on 2 ranks (1 thread each), global batch 8 x 128"
train one 1 --set train.threads=2
train dp2 2 --set parallel.dp=2 --set train.threads=1
train dp2z 2 --set parallel.dp=2 --set parallel.zero=1 --set train.threads=1
echo "== 2. bytes per step per group (rank 0) against the analytic count"
train tp2pp2 4 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=4 --set train.threads=1
train dp2tp2pp2 8 --set parallel.dp=2 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2 --set parallel.zero=1 --set train.threads=1
echo "== 3. pipeline bubble"
for m in 2 4 8; do train "pp2m$m" 2 --set parallel.pp=2 --set parallel.microbatches=$m --set train.batch=16 --set train.threads=1; done
train pp2gpipe 2 --set parallel.pp=2 --set parallel.microbatches=4 --set parallel.schedule=gpipe --set train.batch=16 --set train.threads=1
train pp2x2 2 --set parallel.pp=2 --set parallel.microbatches=4 --set parallel.schedule=interleaved --set parallel.chunks=2 --set train.batch=16 --set train.threads=1

python3 - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def recs(name): return [json.loads(l) for l in open(f"{out}/{name}.jsonl")]
def med(name, key, skip=2): return statistics.median(r[key] for r in recs(name)[skip:])
one, dp2, dp2z = (med(n, "tokens_per_s") for n in ("one", "dp2", "dp2z"))
print(f"tokens/s: 1 rank {one:.0f} | dp=2 {dp2:.0f} ({dp2/one:.2f}x) | dp=2 zero=1 {dp2z:.0f} ({dp2z/one:.2f}x)")
same = all(abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"]) for a, b in zip(recs("one"), recs("dp2")))
print(f"dp=2 losses equal to 1 rank within 1e-5: {same}")

# Analytic bytes for world rank 0 (dp 0, tp 0, pp 0: the first pipeline stage).
L, C, V, T, B, Vp = 4, 256, 50257, 128, 8, 50304
def analytic(dp, tp, pp, m, zero):
    b = B // (dp * m); n = b * T; Ls = L // pp
    act = n * C * 4
    tp_b = m * (Ls * 4 * act + act) + 4 if tp > 1 else 0   # 4 all-reduces per layer, embedding, norm
    pp_b = (m * act if pp > 1 else 0) + (4 + 8 + 4 if pp > 1 else 0)  # activations sent + norm, loss, busy
    # stage-0 params: wte shard, wpe, Ls blocks (tp-sharded), padded to a multiple of dp
    blk = 2*C + (3*C*C + 3*C)//tp + (C*C)//tp + C + 2*C + (4*C*C + 4*C)//tp + (4*C*C)//tp + C
    numel = (Vp // tp) * C + T * C + Ls * blk
    padded = -(-numel // dp) * dp
    if dp > 1:
        dp_b = padded * 4 + 8                     # gradient buckets (all-reduce or reduce-scatter) + loss
        if zero: dp_b += padded * 4 // dp + 4     # all-gather of the updated shard, norm
    else:
        dp_b = 0
    emb_b = (Vp // tp) * C * 4 if pp > 1 else 0
    return {"tp": tp_b, "dp": dp_b, "pp": pp_b, "embedding": emb_b}
for name, lay in (("tp2pp2", (1, 2, 2, 4, 0)), ("dp2tp2pp2", (2, 2, 2, 2, 1))):
    r = recs(name)[-1]
    a = analytic(*lay)
    print(f"{name} (dp, tp, pp, m, zero) = {lay}, rank 0:")
    for g in ("tp", "dp", "pp", "embedding"):
        got = r[f"comm_bytes_{g}"]
        print(f"  {g:9s} measured {got/2**20:9.3f} MiB  analytic {a[g]/2**20:9.3f} MiB  ratio {got/a[g] if a[g] else float('nan'):.3f}")

print("pipeline bubble (pp=2, idle fraction of the step averaged over stages):")
for name, m, p, v in (("pp2m2", 2, 2, 1), ("pp2m4", 4, 2, 1), ("pp2m8", 8, 2, 1), ("pp2gpipe", 4, 2, 1), ("pp2x2", 4, 2, 2)):
    meas = med(name, "pipeline_bubble")
    theory = (p - 1) / (v * m + p - 1)
    print(f"  {name:9s} m={m} v={v}: measured {meas:.3f}  analytic {theory:.3f}")
PY

echo "== 4. recompute: peak activation memory of one training step (124M, batch 4 x 64; quickstart)"
for shape in "--layers 12 --dim 768 --heads 12 --seq 64 --batch 4" "--layers 4 --dim 256 --heads 4 --seq 128 --batch 8"; do
  for rc in none selective full; do
    # shellcheck disable=SC2086
    line=$("$BUILD/bench/train_bench" --steps 3 --threads 2 --recompute $rc $shape | tail -1)
    echo "  [$shape] recompute=$rc: $line"
  done
done
rm -rf "$OUT"
