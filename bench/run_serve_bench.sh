#!/usr/bin/env bash
# bench-serve on the quickstart model (configs/quickstart.yaml; the figures in docs were taken at 4 x 256): one `tandem serve` rank, the open-loop
# load generator at several Poisson request rates, 25% realtime, prompts of 8..64 tokens and
# 8..32 output tokens. Prints each rate's table (TTFT / TPOT percentiles per class, throughput,
# rejections) and writes JSON per rate into OUT (default: a temp dir, printed).
#   bench/run_serve_bench.sh [BUILD_DIR] [RATES...]
# Environment: REQUESTS per rate (200), THREADS per server rank (2), DP (1: one rank; > 1:
# mpirun -np DP with parallel.dp=DP, the router on rank 0 spreading requests over DP
# replicas), CKPT (a quickstart-shaped checkpoint; default: one trained here for 20 steps —
# speed does not depend on the weights).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
shift || true
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(2 8 32 128)
REQUESTS=${REQUESTS:-200}
THREADS=${THREADS:-2}
DP=${DP:-1}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tandem-serve-bench.XXXXXX")}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$ROOT"
CKPT=${CKPT:-$OUT/ckpt}
if [ ! -e "$CKPT/latest" ]; then
  "$BUILD/tandem" train configs/quickstart.yaml --set train.steps=20 --set sample.count=0 \
    --set train.eval_every=0 --set train.checkpoint.dir="$CKPT" > "$OUT/train.log" 2>&1
fi
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "server: $DP rank(s) (parallel.dp=$DP), $THREADS threads each, quickstart model; $REQUESTS requests per rate"
launch=()
[ "$DP" -gt 1 ] && launch=(mpirun -np "$DP" --oversubscribe)
"${launch[@]}" "$BUILD/tandem" serve configs/quickstart.yaml --set parallel.dp="$DP" --checkpoint "$CKPT" --set train.threads="$THREADS" \
  --set serve.listen=127.0.0.1:0 --port-file "$OUT/port" > "$OUT/serve.log" 2>&1 &
for _ in $(seq 1 300); do [ -s "$OUT/port" ] && break; sleep 0.1; done
PORT=$(sed -n 1p "$OUT/port")
trap 'kill -TERM $(sed -n 3p "$OUT/port") 2>/dev/null; wait' EXIT
for rate in "${RATES[@]}"; do
  "$BUILD/tandem" bench-serve --server "127.0.0.1:$PORT" --rate "$rate" --requests "$REQUESTS" \
    --realtime-fraction 0.25 --prompt-tokens 8:64 --output-tokens 8:32 --seed 1 --json "$OUT/rate_$rate.json"
  echo
done
echo "json: $OUT"
