#!/usr/bin/env bash
# Two builds of Tandem for different instruction sets, side by side on this machine:
# ROUNDS alternated rounds of (A, B), each round running kernel_bench and a short quickstart
# training; the tables give each side's median and the ratio B / A of the medians (time per
# kernel call, tokens/s of the training step).
#   bench/run_isa_bench.sh BUILD_A BUILD_B [ROUNDS=3] [STEPS=30]
# Typical use, on an AVX-512 machine, to see what an AVX2-only machine would get:
#   cmake -S . -B build-avx2 -DTANDEM_ARCH=znver3 -DTANDEM_CUDA=OFF && cmake --build build-avx2
#   CORETYPE_B=Zen bench/run_isa_bench.sh build build-avx2
# CORETYPE_A / CORETYPE_B set OPENBLAS_CORETYPE for that side (OpenBLAS picks its kernels at run
# time from the CPU, not from -march; Zen or Haswell selects its AVX2 kernels).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
A=${1:?usage: run_isa_bench.sh BUILD_A BUILD_B [ROUNDS] [STEPS]}
B=${2:?usage: run_isa_bench.sh BUILD_A BUILD_B [ROUNDS] [STEPS]}
ROUNDS=${3:-3}
STEPS=${4:-30}
for b in "$A" "$B"; do
  [ -x "$b/bench/kernel_bench" ] && [ -x "$b/tandem" ] || { echo "$b: kernel_bench or tandem not built" >&2; exit 2; }
done
[ -f data/brown/train_000.bin ] || { echo "data/ not prepared (./launch/setup)" >&2; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tandem-isa.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
arch() { sed -n 's/^TANDEM_ARCH:STRING=//p' "$1/CMakeCache.txt" 2>/dev/null || echo "?"; }
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "A: $A (TANDEM_ARCH=$(arch "$A"), OPENBLAS_CORETYPE=${CORETYPE_A:-auto})"
echo "B: $B (TANDEM_ARCH=$(arch "$B"), OPENBLAS_CORETYPE=${CORETYPE_B:-auto})"

run_side() {  # run_side SIDE BUILD CORETYPE ROUND
  local side=$1 build=$2 core=$3 r=$4
  local env=(env OPENBLAS_THREAD_TIMEOUT=4)
  [ -n "$core" ] && env+=(OPENBLAS_CORETYPE="$core")
  "${env[@]}" "$build/bench/kernel_bench" 2 256 10 > "$TMP/kb.$side.$r"
  "${env[@]}" "$build/tandem" train configs/quickstart.yaml --set train.steps="$STEPS" \
    --set train.eval_every=0 --set sample.count=0 > "$TMP/qs.$side.$r" 2>&1
  echo "  round $r $side: quickstart $(grep -oE 'tokens_per_s=[0-9.]+' "$TMP/qs.$side.$r")"
}
for r in $(seq 1 "$ROUNDS"); do
  run_side A "$A" "${CORETYPE_A:-}" "$r"
  run_side B "$B" "${CORETYPE_B:-}" "$r"
done

python3 - "$TMP" "$ROUNDS" <<'PY'
import re, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
def kernels(side):
    best = {}
    for r in range(1, rounds + 1):
        for line in open(f"{tmp}/kb.{side}.{r}"):
            m = re.match(r"(.{34}) +[0-9.]+ ms \(best +([0-9.]+)\).*bound +([0-9.]+) ms", line)
            if m:
                best.setdefault(m.group(1).strip(), []).append((float(m.group(2)), float(m.group(3))))
    return best
def machine(side):
    return [l.strip() for l in open(f"{tmp}/kb.{side}.1") if l.startswith(("CPU kernels", "machine:"))]
ka, kb = kernels("A"), kernels("B")
for side in "AB":
    print(f"{side}: " + " | ".join(machine(side)))
print(f"\n{'kernel (best ms, median of rounds)':36} {'A ms':>9} {'A %bound':>9} {'B ms':>9} {'B %bound':>9} {'B/A':>6}")
for name in ka:
    a = statistics.median(t for t, _ in ka[name]); ab = statistics.median(b for _, b in ka[name])
    b = statistics.median(t for t, _ in kb[name]); bb = statistics.median(b for _, b in kb[name])
    print(f"{name:36} {a:9.3f} {100 * ab / a:8.1f}% {b:9.3f} {100 * bb / b:8.1f}% {b / a:5.2f}x")
def tps(side):
    return statistics.median(float(re.search(r"tokens_per_s=([0-9.]+)", open(f"{tmp}/qs.{side}.{r}").read()).group(1))
                             for r in range(1, rounds + 1))
ta, tb = tps("A"), tps("B")
print(f"\nquickstart training step (tokens/s, median of {rounds}): A {ta:.1f}  B {tb:.1f}  step time B/A {ta / tb:.2f}x")
PY
