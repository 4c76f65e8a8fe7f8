#!/usr/bin/env bash
# KV-cached decode and prefill of Tandem's CPU inference path vs the PyTorch peer, same shape,
# same thread count, alternated in one run: for each batch, ROUNDS rounds of (peer, Tandem);
# the tables give the median of each side and the ratio of the medians (docs/performance.md,
# "KV-cached decode and prefill vs PyTorch (issue 8)").
#   bench/run_decode_bench.sh [BUILD_DIR]
# Environment: ROUNDS (default 3), ROUNDS_B16 (rounds at batch 16, default 1: the peer's
# naive no-cache decode alone takes ~100 s there), THREADS (2), BATCHES ("1 4 16"),
# STEPS (Tandem's repeats, default 5), PEER_STEPS (the peer's prefill repeats, 2 of them
# warm-ups, default 3), PEER (bench/peers/torch_gpt_bench.py).
# Needs: ./launch/setup --bench (python3-torch, libopenblas0-pthread), run with /usr/bin/python3.
# Shape: GPT-2 124M (12 x 768, 12 heads, vocab 50257), seq 64, 32 new tokens after a 32-token
# prompt (the peer's --mode infer: final context = seq).
# Tandem's bound column: every fp32 weight read once per decode step at the measured read
# bandwidth (bench/decode_bench.cpp); "% bound" is Tandem's decode_kv tok/s as a share of it.
# The header names the CPU, the ISA the build targets (TANDEM_ARCH), the BLAS library the
# peer's torch loaded and the load average (the machine may be shared: a busy machine makes
# every figure, the OpenMP ones most of all, slower).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
ROUNDS=${ROUNDS:-3}
ROUNDS_B16=${ROUNDS_B16:-1}
THREADS=${THREADS:-2}
BATCHES=${BATCHES:-1 4 16}
STEPS=${STEPS:-5}
PEER_STEPS=${PEER_STEPS:-3}
PEER=${PEER:-$ROOT/bench/peers/torch_gpt_bench.py}
[ -f "$PEER" ] || { echo "peer script not found: $PEER" >&2; exit 2; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "python3-torch missing: ./launch/setup --bench" >&2; exit 2; }
[ -x "$BUILD/bench/decode_bench" ] || { echo "$BUILD/bench/decode_bench not built (cmake --build $BUILD --target decode_bench)" >&2; exit 2; }

arch=$(sed -n 's/^TANDEM_ARCH:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
peer_blas=$(/usr/bin/python3 - <<'PY'
import torch
torch.ones(256, 256) @ torch.ones(256, 256)
libs = sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.lower() and "/" in l})
print(", ".join(libs) or "no BLAS library mapped")
PY
)
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p') model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "tandem: $BUILD (TANDEM_ARCH=${arch:-?}), OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"
echo "peer: torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), BLAS: $peer_blas"
echo "rounds: $ROUNDS alternated (peer, tandem) ($ROUNDS_B16 at batch 16), $THREADS threads; tandem --steps $STEPS, peer --steps $PEER_STEPS"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
field() { grep -oE "(^| )$1=[0-9.]+" "$2" | tail -1 | cut -d= -f2; }

shape="--layers 12 --dim 768 --heads 12 --vocab 50257 --seq 64 --gen-tokens 32"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tandem-decode-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
t_start=$(date +%s)
for b in $BATCHES; do
  rounds=$ROUNDS
  [ "$b" -ge 16 ] && rounds=$ROUNDS_B16
  for r in $(seq 1 "$rounds"); do
    # shellcheck disable=SC2086
    /usr/bin/python3 "$PEER" --mode infer $shape --batch "$b" --steps "$PEER_STEPS" \
      --threads "$THREADS" --block-size 64 > "$TMP/peer.out" 2>&1 || { cat "$TMP/peer.out" >&2; exit 1; }
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$THREADS "$BUILD/bench/decode_bench" $shape --batch "$b" --steps "$STEPS" \
      --threads "$THREADS" > "$TMP/tandem.out" 2>&1 || { cat "$TMP/tandem.out" >&2; exit 1; }
    for k in prefill_tokens_per_s decode_tokens_per_s decode_kv_tokens_per_s; do
      field "$k" "$TMP/peer.out" >> "$TMP/peer.$b.$k"
    done
    for k in prefill_tokens_per_s prefill_all_logits_tokens_per_s decode_kv_tokens_per_s \
             bound_decode_tokens_per_s steady_decode_tokens_per_s read_gbps; do
      field "$k" "$TMP/tandem.out" >> "$TMP/tandem.$b.$k"
    done
    echo "  batch $b round $r: decode_kv torch $(field decode_kv_tokens_per_s "$TMP/peer.out") tok/s," \
         "tandem $(field decode_kv_tokens_per_s "$TMP/tandem.out") tok/s (bound" \
         "$(field bound_decode_tokens_per_s "$TMP/tandem.out"), read $(field read_gbps "$TMP/tandem.out") GB/s);" \
         "prefill torch $(field prefill_tokens_per_s "$TMP/peer.out"), tandem" \
         "$(field prefill_tokens_per_s "$TMP/tandem.out") tok/s; load $(cut -d' ' -f1 /proc/loadavg)"
    sed -n '/^decode step phases/,/^  step total/p' "$TMP/tandem.out" | sed 's/^/    /'
  done
done
m() { median < "$TMP/$1"; }
echo
echo "KV-cached greedy decode, $THREADS threads (tok/s, prompt prefill included; medians):"
printf "%-6s %12s %12s %8s %12s %8s %14s\n" batch "torch kv" "tandem kv" ratio "bound" "% bound" "tandem steady"
for b in $BATCHES; do
  awk -v b="$b" -v pt="$(m "peer.$b.decode_kv_tokens_per_s")" -v tt="$(m "tandem.$b.decode_kv_tokens_per_s")" \
      -v bd="$(m "tandem.$b.bound_decode_tokens_per_s")" -v st="$(m "tandem.$b.steady_decode_tokens_per_s")" \
      'BEGIN { printf "%-6s %12.2f %12.2f %7.2fx %12.1f %7.1f%% %14.1f\n", b, pt, tt, tt / pt, bd, 100 * tt / bd, st }'
done
echo
echo "Prefill of batch x 64 tokens (tok/s; medians). tandem: last-token logits (serving); tandem all: logits of every position (the peer's work):"
printf "%-6s %12s %12s %8s %12s %8s %14s\n" batch "torch" "tandem" ratio "tandem all" ratio "torch no-kv"
for b in $BATCHES; do
  awk -v b="$b" -v pp="$(m "peer.$b.prefill_tokens_per_s")" -v tp="$(m "tandem.$b.prefill_tokens_per_s")" \
      -v ta="$(m "tandem.$b.prefill_all_logits_tokens_per_s")" -v pn="$(m "peer.$b.decode_tokens_per_s")" \
      'BEGIN { printf "%-6s %12.1f %12.1f %7.2fx %12.1f %7.2fx %14.2f\n", b, pp, tp, tp / pp, ta, ta / pp, pn }'
done
echo "(torch no-kv: the peer's naive decode, full forward over the growing context each token.)"
echo "read bandwidth (tandem runs, median): $(cat "$TMP"/tandem.*.read_gbps | median) GB/s; total $(( $(date +%s) - t_start )) s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
