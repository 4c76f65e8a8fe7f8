#!/usr/bin/env bash
# Training throughput and peak memory of Tandem vs the PyTorch peer, same shapes, same thread
# count, in one run (see docs/performance.md for recorded figures).
#   bench/run_train_bench.sh [BUILD_DIR] [STEPS]
# Needs: ./launch/setup --bench (python3-torch, libopenblas0-pthread), run with /usr/bin/python3.
# Shapes: GPT-2 124M at batch 4 x 64 tokens, and the quickstart model (4 x 256, batch 8 x 128).
# Peak memory is the process's maximum resident set (GNU time %M) for both.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
STEPS=${2:-8}
THREADS=${THREADS:-2}
PEER=${PEER:-$ROOT/../shared/peers/torch_gpt_bench.py}
[ -f "$PEER" ] || { echo "peer script not found: $PEER" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "python3-torch missing: ./launch/setup --bench" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "/usr/bin/time missing (apt-get install time)" >&2; exit 2; }

shapes=(
  "gpt2-124M --layers 12 --dim 768 --heads 12 --vocab 50257 --seq 64 --batch 4"
  "quickstart --layers 4 --dim 256 --heads 4 --vocab 50257 --seq 128 --batch 8"
)
printf "%-11s %14s %14s %7s %13s %13s %7s\n" shape "torch tok/s" "tandem tok/s" ratio "torch MiB" "tandem MiB" ratio
for spec in "${shapes[@]}"; do
  read -r name args <<< "$spec"
  seq=$(echo "$args" | sed -E 's/.*--seq ([0-9]+).*/\1/')
  # shellcheck disable=SC2086
  /usr/bin/time -f "maxrss_kb=%M" -o /tmp/peer.time /usr/bin/python3 "$PEER" --mode train \
    --steps "$STEPS" --threads "$THREADS" --block-size "$seq" $args > /tmp/peer.out 2>&1
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=$THREADS /usr/bin/time -f "maxrss_kb=%M" -o /tmp/tandem.time \
    "$BUILD/bench/train_bench" --steps "$STEPS" --threads "$THREADS" $args > /tmp/tandem.out 2>&1
  pt=$(grep -oE 'tokens_per_s=[0-9.]+' /tmp/peer.out | cut -d= -f2)
  tt=$(grep -oE 'tokens_per_s=[0-9.]+' /tmp/tandem.out | cut -d= -f2)
  pm=$(( $(grep -oE '[0-9]+' /tmp/peer.time | tail -1) / 1024 ))
  tm=$(( $(grep -oE '[0-9]+' /tmp/tandem.time | tail -1) / 1024 ))
  awk -v n="$name" -v pt="$pt" -v tt="$tt" -v pm="$pm" -v tm="$tm" \
    'BEGIN { printf "%-11s %14.1f %14.1f %6.2fx %13d %13d %6.2fx\n", n, pt, tt, tt / pt, pm, tm, tm / pm }'
done
