#!/usr/bin/env bash
# Training throughput and peak memory of Tandem vs the PyTorch peer, same shapes, same thread
# count, alternated in one run: for each shape, ROUNDS rounds of (peer, Tandem); the table gives
# the median of each side and the ratio of the medians (see docs/performance.md).
#   bench/run_train_bench.sh [BUILD_DIR] [STEPS]
# Environment: ROUNDS (default 3), THREADS (2), PEER (bench/peers/torch_gpt_bench.py).
# Needs: ./launch/setup --bench (python3-torch, libopenblas0-pthread), run with /usr/bin/python3.
# Shapes: GPT-2 124M at batch 4 x 64 tokens, and the earlier quickstart shape (4 x 256, batch 8 x 128).
# Peak memory is the process's maximum resident set (GNU time %M) for both.
# The header names the CPU, the ISA the build targets (TANDEM_ARCH), OpenBLAS's core type
# for Tandem and the BLAS library the peer's torch loaded.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
STEPS=${2:-8}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
PEER=${PEER:-$ROOT/bench/peers/torch_gpt_bench.py}
[ -f "$PEER" ] || { echo "peer script not found: $PEER" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "python3-torch missing: ./launch/setup --bench" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "/usr/bin/time missing (apt-get install time)" >&2; exit 2; }
[ -x "$BUILD/bench/train_bench" ] || { echo "$BUILD/bench/train_bench not built" >&2; exit 2; }

arch=$(sed -n 's/^TANDEM_ARCH:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
peer_blas=$(/usr/bin/python3 - <<'PY'
import torch
torch.ones(256, 256) @ torch.ones(256, 256)
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower() and "/" in l})
print(", ".join(libs) or "no BLAS library mapped")
PY
)
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "tandem: $BUILD (TANDEM_ARCH=${arch:-?}), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"
echo "peer: torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), BLAS: $peer_blas"
echo "rounds: $ROUNDS alternated (peer, tandem), $STEPS steps each, $THREADS threads"

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

shapes=(
  "gpt2-124M --layers 12 --dim 768 --heads 12 --vocab 50257 --seq 64 --batch 4"
  "quickstart --layers 4 --dim 256 --heads 4 --vocab 50257 --seq 128 --batch 8"
)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tandem-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
rows=()
for spec in "${shapes[@]}"; do
  read -r name args <<< "$spec"
  seq=$(echo "$args" | sed -E 's/.*--seq ([0-9]+).*/\1/')
  : > "$TMP/pt"; : > "$TMP/tt"; : > "$TMP/pm"; : > "$TMP/tm"
  for r in $(seq 1 "$ROUNDS"); do
    # shellcheck disable=SC2086
    /usr/bin/time -f "maxrss_kb=%M" -o "$TMP/peer.time" /usr/bin/python3 "$PEER" --mode train \
      --steps "$STEPS" --threads "$THREADS" --block-size "$seq" $args > "$TMP/peer.out" 2>&1
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$THREADS /usr/bin/time -f "maxrss_kb=%M" -o "$TMP/tandem.time" \
      "$BUILD/bench/train_bench" --steps "$STEPS" --threads "$THREADS" $args > "$TMP/tandem.out" 2>&1
    pt=$(grep -oE 'tokens_per_s=[0-9.]+' "$TMP/peer.out" | cut -d= -f2)
    tt=$(grep -oE 'tokens_per_s=[0-9.]+' "$TMP/tandem.out" | cut -d= -f2)
    echo "$pt" >> "$TMP/pt"; echo "$tt" >> "$TMP/tt"
    echo $(( $(grep -oE '[0-9]+' "$TMP/peer.time" | tail -1) / 1024 )) >> "$TMP/pm"
    echo $(( $(grep -oE '[0-9]+' "$TMP/tandem.time" | tail -1) / 1024 )) >> "$TMP/tm"
    echo "  $name round $r: torch $pt tok/s, tandem $tt tok/s"
  done
  rows+=("$(awk -v n="$name" -v pt="$(median < "$TMP/pt")" -v tt="$(median < "$TMP/tt")" \
    -v pm="$(median < "$TMP/pm")" -v tm="$(median < "$TMP/tm")" \
    'BEGIN { printf "%-11s %14.1f %14.1f %6.2fx %13d %13d %6.2fx", n, pt, tt, tt / pt, pm, tm, tm / pm }')")
done
printf "%-11s %14s %14s %7s %13s %13s %7s\n" shape "torch tok/s" "tandem tok/s" ratio "torch MiB" "tandem MiB" ratio
printf "%s\n" "${rows[@]}"
