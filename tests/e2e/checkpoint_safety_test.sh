#!/usr/bin/env bash
# Checkpoint safety.
# 1. A save killed mid-write (SIGKILL of one of two ranks while the file is half written,
#    held there by TANDEM_FAULT_SAVE_PAUSE) leaves the previous checkpoint loadable and
#    `latest` pointing at it; resuming from it continues exactly as the uninterrupted run.
# 2. A corrupt, truncated or mismatched checkpoint is refused with a message naming what is
#    wrong, and nothing is overwritten (the file and `latest` are unchanged): flipped data
#    bytes (checksum), a truncated file, a file that is not HDF5, a missing dataset, an
#    unknown format version, root attributes changed with h5py (the step alone; the step and
#    its three companions together, which only attrs_checksum sees; a step beyond 32 bits),
#    and a config whose model shape disagrees with the file. `tandem ckpt inspect` exits
#    non-zero on each of them but the last (which is about the config, not the file), naming
#    the same problem. A format version 1 file (before attrs_checksum) still loads.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data
PY=${TANDEM_PYTHON:-/usr/bin/python3}  # Debian's python3-h5py lives there
"$PY" -c "import h5py" 2>/dev/null || { echo "SKIP: python3-h5py missing (./launch/setup installs it)"; exit 77; }

small=(--set model.layers=2 --set model.dim=64 --set model.heads=4 --set model.seq_len=64
       --set train.steps=6 --set train.batch=4 --set train.eval_batches=1 --set sample.count=0
       --set train.threads=1 --set parallel.dp=2 --set parallel.microbatches=1)
run() {  # run NAME overrides... (2 ranks)
  local name=$1; shift
  mpi 300 2 "$TANDEM" train configs/quickstart.yaml "${small[@]}" "$@" --metrics-out "$WORK/$name.jsonl" \
      > "$WORK/$name.log" 2>&1
}

# ---------------------------------------------------------------- 1. SIGKILL during a save
run straight --set train.checkpoint.dir="$WORK/straight" || { tail "$WORK/straight.log"; fail "straight run"; }
D=$WORK/killed
TANDEM_FAULT_SAVE_PAUSE=6:60 timeout --signal=KILL 200 mpirun -np 2 --oversubscribe -x TANDEM_FAULT_SAVE_PAUSE \
    "$TANDEM" train configs/quickstart.yaml "${small[@]}" --set train.checkpoint.dir="$D" --set train.checkpoint.every=3 \
    --metrics-out "$WORK/killed.jsonl" > "$WORK/killed.log" 2>&1 &
job=$!
for _ in $(seq 600); do  # the save of step 6 pauses after the weights are written
  grep -q "pausing 60 s inside the save of step 6" "$WORK/killed.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "pausing 60 s inside the save of step 6" "$WORK/killed.log" || { kill -9 $job; cat "$WORK/killed.log"; fail "the save never paused"; }
[ -s "$D/.step_00000006.h5.tmp" ] || fail "no half-written temporary for step 6"
launcher=$(pgrep -P $job | head -1)
victim=$(pgrep -P "$launcher" | tail -1)
[ -n "$victim" ] || fail "no rank process found under mpirun (pid $launcher)"
kill -9 "$victim"
t0=$(date +%s); wait $job; rc=$?
echo "killed rank pid $victim during the save of step 6; the job exited $rc after $(( $(date +%s) - t0 )) s"
[ $rc -ne 0 ] || fail "the job exited 0 after a rank was killed"
[ "$(cat "$D/latest")" = "step_00000003.h5" ] || fail "latest should still name step 3, names $(cat "$D/latest")"
[ ! -f "$D/step_00000006.h5" ] || fail "a step-6 checkpoint appeared although its save was killed"
"$TANDEM" ckpt inspect "$D" > "$WORK/inspect3.log" 2>&1 || { cat "$WORK/inspect3.log"; fail "step 3 does not inspect cleanly"; }
run resumed --set train.checkpoint.dir="$D" --resume || { tail "$WORK/resumed.log"; fail "resume after the kill"; }
grep -q "resumed from .*step_00000003.h5 at step 3" "$WORK/resumed.log" || fail "did not resume from step 3"
python3 "$SRC/tests/e2e/compare_metrics.py" --exact "$WORK/straight.jsonl" "$WORK/killed.jsonl" "$WORK/resumed.jsonl" > "$WORK/cmp.log" ||
  { cat "$WORK/cmp.log"; fail "the run resumed after the kill differs from the straight run"; }
ls -a "$D" | grep -q '\.tmp$' && fail "the stale temporary was not cleaned up by the next save"
pass "SIGKILL during a save: latest kept step 3, which loads and resumes exactly"

# ---------------------------------------------------------------- 2. refusals
good=$WORK/straight/step_00000006.h5
# The file reads without Tandem, and docs/checkpoints.md's numpy checksum matches every dataset.
"$PY" - "$good" <<'PY' || fail "an h5py reader disagrees with docs/checkpoints.md"
import h5py, numpy as np, sys
def splitmix64(x):
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
with h5py.File(sys.argv[1], "r") as f:
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    assert f.attrs["format_version"] == 2 and f.attrs["step"] == 6, dict(f.attrs)
    # attrs_checksum, as docs/checkpoints.md computes it
    NAMES = ["format", "format_version", "tandem_version", "step", "weights_version", "data_position",
             "seed", "rng", "config", "layout", "has_optimizer_state", "has_master_weights", "adam_step",
             "model_layers", "model_dim", "model_heads", "model_vocab", "model_seq_len"]
    text = b"".join(k.encode() + b"=" + (bytes(f.attrs[k]) if isinstance(f.attrs[k], bytes) else
                                         str(int(f.attrs[k])).encode()) + b"\n" for k in NAMES)
    text += b"\0" * (-len(text) % 4)
    words = np.frombuffer(text, dtype="<u4").astype(np.uint64)
    with np.errstate(over="ignore"):
        hashed = splitmix64((np.arange(words.size, dtype=np.uint64) << np.uint64(32)) ^ words)
        assert int(hashed.sum(dtype=np.uint64)) == int(f.attrs["attrs_checksum"]), "attrs_checksum"
    assert f["model/wte/weight"].shape == (50257, 64), f["model/wte/weight"].shape
    for n in names:
        w = f[n][...]
        i = np.arange(w.size, dtype=np.uint64)
        with np.errstate(over="ignore"):
            h = splitmix64((i << np.uint64(32)) ^ w.ravel().view(np.uint32).astype(np.uint64))
            assert int(h.sum(dtype=np.uint64)) == int(f[n].attrs["checksum"]), n
    print(f"h5py: {len(names)} datasets, every numpy checksum matches")
PY
refuse() {  # refuse NAME EXPECTED_REGEX [overrides...]: resume from $WORK/$NAME must fail so
  local name=$1 want=$2; shift 2
  local dir=$WORK/$name before latest_before
  before=$(md5sum "$dir/step_00000006.h5" | cut -d' ' -f1); latest_before=$(cat "$dir/latest")
  if run "refuse-$name" --set train.checkpoint.dir="$dir" --resume "$@"; then
    fail "$name: a bad checkpoint was accepted"
  fi
  grep -Eq "$want" "$WORK/refuse-$name.log" || { grep -i "tandem\|error" "$WORK/refuse-$name.log" | head; fail "$name: message does not match /$want/"; }
  grep -q "^step " "$WORK/refuse-$name.log" && fail "$name: training started from a bad checkpoint"
  [ "$(md5sum "$dir/step_00000006.h5" | cut -d' ' -f1)" = "$before" ] || fail "$name: the checkpoint file was modified"
  [ "$(cat "$dir/latest")" = "$latest_before" ] || fail "$name: latest was modified"
  pass "$name refused: $(grep -Eo "$want" "$WORK/refuse-$name.log" | head -1)"
}
copy() { mkdir -p "$WORK/$1"; cp "$good" "$WORK/$1/"; echo step_00000006.h5 > "$WORK/$1/latest"; }
inspect_refuses() {  # inspect_refuses NAME EXPECTED_REGEX: inspect must exit non-zero naming it
  local name=$1 want=$2
  if "$TANDEM" ckpt inspect "$WORK/$name" > "$WORK/inspect-$name.log" 2>&1; then
    tail -5 "$WORK/inspect-$name.log"; fail "$name: inspect exited 0 on a checkpoint a load refuses"
  fi
  grep -Eq "$want" "$WORK/inspect-$name.log" || { tail -5 "$WORK/inspect-$name.log"; fail "$name: inspect does not say /$want/"; }
}
set_attrs() {  # set_attrs NAME KEY=INT...: rewrites root attributes as h5py writes them (int64)
  local name=$1; shift
  "$PY" - "$WORK/$name/step_00000006.h5" "$@" <<'PY'
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "r+") as f:
    for kv in sys.argv[2:]:
        k, v = kv.split("=")
        f.attrs[k] = np.int64(int(v))
PY
}

copy flipped
"$PY" - "$WORK/flipped/step_00000006.h5" <<'PY'
import h5py, sys
path = sys.argv[1]
with h5py.File(path, "r") as f:
    off = f["model/blocks/1/mlp/fc/weight"].id.get_offset()  # byte offset of its raw data
with open(path, "r+b") as f:
    f.seek(off + 1000); b = f.read(4); f.seek(off + 1000)
    f.write(bytes(x ^ 0x5A for x in b))
PY
refuse flipped "corrupt: 1 dataset\(s\) fail their checksum: model/blocks/1/mlp/fc/weight"
inspect_refuses flipped "model/blocks/1/mlp/fc/weight .*MISMATCH"

copy truncated
truncate -s $(( $(stat -c %s "$good") / 2 )) "$WORK/truncated/step_00000006.h5"
refuse truncated "cannot open \([0-9]+ bytes; truncated or corrupt\?\)"
inspect_refuses truncated "cannot open \([0-9]+ bytes; truncated or corrupt\?\)"

copy garbage
python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.write(b'\0'*4096)" "$WORK/garbage/step_00000006.h5"
refuse garbage "not an HDF5 file"
inspect_refuses garbage "not an HDF5 file"

copy missing
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); del f['optimizer/v/blocks/0/attn/qkv/weight']" "$WORK/missing/step_00000006.h5"
refuse missing "missing dataset optimizer/v/blocks/0/attn/qkv/weight"
inspect_refuses missing "missing dataset optimizer/v/blocks/0/attn/qkv/weight"

copy version
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs['format_version']=99" "$WORK/version/step_00000006.h5"
refuse version "format version 99 is unknown"
inspect_refuses version "format version 99 is unknown"

copy step-alone
set_attrs step-alone step=3
refuse step-alone "weights_version is 6 but step is 3"
inspect_refuses step-alone "weights_version is 6 but step is 3"

copy step-all
set_attrs step-all step=3 weights_version=3 data_position=3 adam_step=3
refuse step-all "the root attributes fail their checksum"
inspect_refuses step-all "the root attributes fail their checksum"

copy step-wide
set_attrs step-wide step=4294967299 weights_version=4294967299 data_position=4294967299 adam_step=4294967299
refuse step-wide "step 4294967299 is outside \[0, 2147483646\]"
inspect_refuses step-wide "step 4294967299 is outside"

# A format version 1 file (written before attrs_checksum) still loads and resumes.
copy version1
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs['format_version']=1; del f.attrs['attrs_checksum']" "$WORK/version1/step_00000006.h5"
"$TANDEM" ckpt inspect "$WORK/version1" > "$WORK/inspect-version1.log" 2>&1 || { tail "$WORK/inspect-version1.log"; fail "a version 1 file does not inspect"; }
run version1 --set train.checkpoint.dir="$WORK/version1" --resume ||
  { tail "$WORK/version1.log"; fail "a version 1 file does not resume"; }
grep -q "resumed from .*step_00000006.h5 at step 6" "$WORK/version1.log" || fail "the version 1 file did not resume at step 6"
pass "a format version 1 checkpoint still loads"

copy shape
refuse shape "dataset model/blocks/0/attn/qkv/weight is float32 \[192, 64\], the config expects float32 \[384, 128\]" \
  --set model.dim=128
