#!/usr/bin/env bash
# Checkpoint save and load of the GPT-2 124M model (configs/gpt2-small.yaml) against the same
# machine's sequential write and read of the same number of bytes with dd, alternated in one run
# (docs/performance.md, "Checkpoint save and load"), and the training stall per checkpoint.
#   bench/run_ckpt_bench.sh [--small] [RANKS_LIST] [ROUNDS]      defaults "1 2 4", 3
# For each rank count N, ROUNDS rounds of:
#   1. Tandem save: `train.steps=1` with train.checkpoint.dir set (the final checkpoint), on N
#      ranks as dp=N with ZeRO-1 (parallel.zero=1: each rank holds and writes 1/N of the Adam
#      moments; without it every rank holds all of them), offload off (no master weights), so
#      the file holds weights + m + v (124M x 3 float32, ~1.5 GB). Seconds and bytes from the
#      `checkpoint:` line;
#   2. dd write of the same bytes: dd copies the checkpoint file, bs=4M conv=fsync (Tandem's save
#      fsyncs too). Not /dev/zero: on the VMs measured, writes of zero pages run up to 4x faster;
#   3. Tandem load: `--resume` of that dir with train.steps=2, seconds from the `resumed from`
#      line, GB/s = the file's size on disk / seconds (the line's bytes are rank 0's only);
#   4. dd read of the dd file, bs=4M (one reused buffer, bytes discarded), and read() of the
#      checkpoint into one pre-touched buffer of its size (where a load must put the bytes).
#   The page cache is dropped before both reads (cold), or, where that is not allowed, both
#   files are read once first (warm); the header says which. `sync` comes before both writes.
#   The table gives medians over the rounds; ratio = median Tandem seconds / median dd seconds.
# Stall: configs/quickstart.yaml on 1 rank, train.steps=4, train.checkpoint.every=2 (saves at
#   steps 2 and 4); checkpoint_s against the median step_s of steps 2-4 (step 1 warms up) from
#   the metrics file, as % of a step and as the share of training time at every=100.
# --small: the quickstart model (16M parameters, ~190 MB files) instead of 124M, to check the
#   script in about a minute. Environment: BUILD (build), BENCH_DIR (base of the temporary
#   directory: out/; put it on the file system checkpoints go to), SEQ (model.seq_len, 64),
#   MODEL_OVERRIDES (extra `--set k=v` words for the save/load runs).
# Needs: the Brown shards in data/ (./launch/setup), mpirun. As root it drops caches itself.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SMALL=0
if [ "${1:-}" = "--small" ]; then SMALL=1; shift; fi
RANKS_LIST=${1:-"1 2 4"}
ROUNDS=${2:-3}
BUILD=${BUILD:-$ROOT/build}
SEQ=${SEQ:-64}
BENCH_DIR=${BENCH_DIR:-$ROOT/out}
PYTHON=${PYTHON:-/usr/bin/python3}  # with numpy (Debian's python3-numpy, installed by ./launch/setup)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 LC_ALL=C
[ -x "$BUILD/tandem" ] || { echo "$BUILD/tandem not built" >&2; exit 2; }
command -v mpirun >/dev/null || { echo "mpirun missing (./launch/setup)" >&2; exit 2; }
ls data/brown/train_*.bin >/dev/null 2>&1 || { echo "no token shards in data/brown (./launch/setup)" >&2; exit 2; }

if [ "$SMALL" = 1 ]; then CONFIG=configs/quickstart.yaml; MODEL="quickstart (--small)"; else
  CONFIG=configs/gpt2-small.yaml; MODEL="GPT-2 124M"; fi
mkdir -p "$BENCH_DIR"
TMP=$(mktemp -d "$BENCH_DIR/tandem-ckpt-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# Cold reads when the page cache can be dropped (root), else warm reads (each file read once first).
if sync && (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then READS=cold; else READS=warm; fi
before_read() {  # before_read FILE...
  sync
  if [ "$READS" = cold ]; then echo 3 > /proc/sys/vm/drop_caches; else cat "$@" > /dev/null; fi
}
dd_seconds() { sed -nE 's/.* copied, ([0-9.e+-]+) s,.*/\1/p' "$1" | tail -1; }  # GNU dd's summary line

common=(--set train.eval_every=0 --set train.eval_batches=1 --set sample.count=0 --set parallel.microbatches=1
        --set parallel.offload=false --set model.seq_len="$SEQ")
# shellcheck disable=SC2206
extra=(${MODEL_OVERRIDES:-})
tandem() {  # tandem NP LOG args...: an mpirun of `tandem train`; the log is shown if it fails
  local np=$1 log=$2; shift 2
  timeout --signal=KILL 3600 mpirun -np "$np" --oversubscribe --bind-to none "$BUILD/tandem" train "$@" \
    > "$log" 2>&1 || { echo "tandem failed (mpirun -np $np ... $*):" >&2; tail -20 "$log" >&2; exit 1; }
}

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB"
echo "file system of $BENCH_DIR: $(df -hT "$TMP" | awk 'NR == 2 { print $2 " on " $1 " (" $7 "), " $5 " free" }')"
echo "tandem: $BUILD/tandem; model: $MODEL, $CONFIG, seq_len $SEQ, batch = ranks, layout dp=ranks zero=1 offload off"
echo "rounds: $ROUNDS alternated (tandem save, dd write, tandem load, dd read); reads $READS$(
  [ "$READS" = cold ] && echo ' (page cache dropped before each)' || echo ' (cannot drop the page cache; each file read once first)')"

rows=()
size=0
for n in $RANKS_LIST; do
  for k in save_s save_b ddw_s load_s ddr_s rdb_s; do : > "$TMP/$k"; done
  run=(--set parallel.dp="$n" --set parallel.zero=1 --set train.batch="$n" "${common[@]}" "${extra[@]}")
  for r in $(seq 1 "$ROUNDS"); do
    dir=$TMP/ckpt-$n-$r
    sync
    tandem "$n" "$TMP/save.log" "$CONFIG" "${run[@]}" --set train.steps=1 --set train.checkpoint.dir="$dir"
    line=$(grep '^checkpoint: step 1 ' "$TMP/save.log") || { echo "no checkpoint line in the save run" >&2; exit 1; }
    read -r save_mib save_s < <(echo "$line" | sed -E 's/.*\(([0-9.]+) MiB in ([0-9.]+) s, .*/\1 \2/')
    file=$dir/step_00000001.h5
    size=$(stat -c %s "$file")
    echo "$save_s" >> "$TMP/save_s"; echo "$save_mib" >> "$TMP/save_b"

    sync
    # The same bytes: dd copies the checkpoint just written (from the page cache) with fsync.
    dd if="$file" of="$TMP/dd.bin" bs=4M conv=fsync 2> "$TMP/ddw.log"
    ddw=$(dd_seconds "$TMP/ddw.log"); echo "$ddw" >> "$TMP/ddw_s"

    before_read "$file"
    tandem "$n" "$TMP/load.log" "$CONFIG" "${run[@]}" --set train.steps=2 --set train.checkpoint.dir="$dir" --resume
    line=$(grep '^resumed from .* at step 1 ' "$TMP/load.log") || { echo "no 'resumed from' line in the load run" >&2; exit 1; }
    load_s=$(echo "$line" | sed -E 's/.* in ([0-9.]+) s\)$/\1/')
    echo "$load_s" >> "$TMP/load_s"

    before_read "$TMP/dd.bin"
    dd if="$TMP/dd.bin" of=/dev/null bs=4M 2> "$TMP/ddr.log"
    ddr=$(dd_seconds "$TMP/ddr.log"); echo "$ddr" >> "$TMP/ddr_s"
    # A second read baseline: read() of the checkpoint into one pre-touched buffer of its size,
    # which is where a load must land its bytes (dd reuses one 4 MiB buffer and discards them).
    before_read "$file"
    rdb=$("$PYTHON" - "$file" <<'PY'
import sys, time, numpy as np
path = sys.argv[1]
import os
buf = np.ones(os.path.getsize(path), dtype=np.uint8)  # touched, like Tandem's zeroed buffers
t = time.perf_counter()
with open(path, "rb", buffering=0) as f:
    mv, got = memoryview(buf), 0
    while got < len(buf):
        got += f.readinto(mv[got:got + (64 << 20)])
print(f"{time.perf_counter() - t:.4f}")
PY
)
    echo "$rdb" >> "$TMP/rdb_s"
    rm -rf "$dir" "$TMP/dd.bin"
    awk -v n="$n" -v r="$r" -v b="$size" -v s="$save_s" -v w="$ddw" -v l="$load_s" -v d="$ddr" -v q="$rdb" 'BEGIN {
      printf "  %d rank(s) round %d: save %.2f s (%.2f GB/s), dd write %.2f s (%.2f GB/s) | load %.2f s (%.2f GB/s), dd read %.2f s (%.2f GB/s), read into a buffer %.2f s (%.2f GB/s)\n",
        n, r, s, b / 1e9 / s, w, b / 1e9 / w, l, b / 1e9 / l, d, b / 1e9 / d, q, b / 1e9 / q }'
  done
  rows+=("$(awk -v n="$n" -v b="$size" -v mib="$(median < "$TMP/save_b")" -v s="$(median < "$TMP/save_s")" \
    -v w="$(median < "$TMP/ddw_s")" -v l="$(median < "$TMP/load_s")" -v d="$(median < "$TMP/ddr_s")" \
    -v q="$(median < "$TMP/rdb_s")" 'BEGIN {
    printf "| %d | %.2f | %.2f | %.2f | %.2fx | %.2f | %.2f | %.2f | %.2fx | %.2f | %.2fx |",
      n, s, mib * 1048576 / 1e9 / s, b / 1e9 / w, s / w, l, b / 1e9 / l, b / 1e9 / d, l / d, b / 1e9 / q, l / q }')")
done
echo "checkpoint file: $size bytes ($(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }')); save GB/s = tensor bytes of the \`checkpoint:\` line / s, load and dd GB/s = file bytes / s"
echo "| ranks | save s | save GB/s | dd write GB/s | ratio | load s | load GB/s | dd read GB/s | ratio | read→buffer GB/s | ratio |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf "%s\n" "${rows[@]}"

echo "== training stall per checkpoint: configs/quickstart.yaml, 1 rank, steps=4, checkpoint.every=2"
: > "$TMP/stall"
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$TMP/stall-ckpt" "$TMP/stall.jsonl"
  sync
  tandem 1 "$TMP/stall.log" configs/quickstart.yaml --set train.steps=4 --set train.checkpoint.every=2 \
    --set train.checkpoint.dir="$TMP/stall-ckpt" --set train.eval_every=0 --set train.eval_batches=1 \
    --set sample.count=0 --metrics-out "$TMP/stall.jsonl"
  python3 - "$TMP/stall.jsonl" "$(stat -c %s "$TMP/stall-ckpt/step_00000004.h5")" >> "$TMP/stall" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ck = [r["checkpoint_s"] for r in recs if "checkpoint_s" in r]
step = statistics.median(r["step_s"] for r in recs[1:])
assert len(ck) == 2, f"expected 2 checkpoints (steps 2 and 4), got {len(ck)}"
print(statistics.median(ck), step, sys.argv[2])
PY
  tail -1 "$TMP/stall" | awk -v r="$r" '{ printf "  round %d: checkpoint %.3f s, step %.3f s\n", r, $1, $2 }'
done
ck=$(awk '{ print $1 }' "$TMP/stall" | median); st=$(awk '{ print $2 }' "$TMP/stall" | median)
awk -v c="$ck" -v s="$st" -v b="$(tail -1 "$TMP/stall" | awk '{ print $3 }')" 'BEGIN {
  printf "checkpoint (%.1f MiB) %.3f s, median step %.3f s: stall %.0f%% of a step; at every: 100, %.2f%% of training time (stall / (100 x step))\n",
    b / 1048576, c, s, 100 * c / s, 100 * c / (100 * s) }'
