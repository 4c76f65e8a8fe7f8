#!/usr/bin/env bash
# Checkpoints under faults.
# 1. A `latest` with a CRLF line end is refused (by --resume and by inspect) with the CR shown.
# 2. An unwritable checkpoint directory (a read-only tmpfs; chmod 555 when not root) stops every
#    rank at start-up, before the first step, with exit 2 and a message that names
#    train.checkpoint.dir and the OS error.
# 3. A full disk: resumed from a step-2 checkpoint on a tmpfs with room for half a checkpoint
#    more, the save of step 4 hits ENOSPC on 2 ranks (tp 2) and on 4 ranks (dp 2 x tp 2). The
#    job ends on its own (Tandem's abort, exit 3; no watchdog needed, the hard 300 s limit
#    untouched) with Tandem's line naming the file and "No space left on device"; `latest` still
#    names step 2, which inspects cleanly; no .tmp or latest.tmp remains and the space is free
#    again. Once with the space reservation (the failure comes from rank 0's fallocate) and
#    once without (TANDEM_FAULT_NO_RESERVE=1: the writes of some ranks fail mid-file, and the
#    ranks agree on it before the collective close).
# Parts 2 and 3 need permission to mount a tmpfs: without it they print SKIP (exit 77 at the end).
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done  # -l: a killed rank may still hold it
  rm -rf "$WORK"
}
trap cleanup EXIT

small=(--set model.layers=2 --set model.dim=64 --set model.heads=4 --set model.seq_len=64
       --set train.steps=4 --set train.batch=4 --set train.eval_every=0 --set train.eval_batches=1
       --set sample.count=0 --set train.threads=1 --set parallel.timeout_s=20)
MPIX=()  # mpirun options of the next runs (-x VAR)
run() {  # run NAME NP overrides...
  local name=$1 np=$2; shift 2
  local t0=$(date +%s)
  mpi 300 "$np" "${MPIX[@]}" "$TANDEM" train configs/quickstart.yaml "${small[@]}" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  ELAPSED=$(( $(date +%s) - t0 ))
  return $rc
}
free_bytes() { python3 -c "import os,sys; s=os.statvfs(sys.argv[1]); print(s.f_bavail*s.f_frsize)" "$1"; }
mount_tmpfs() {  # mount_tmpfs DIR OPTIONS: 0 when mounted
  mkdir -p "$1"
  mount -t tmpfs -o "$2" tmpfs "$1" 2>"$WORK/mount.err" || return 1
  MOUNTS+=("$1")
}

# The step-2 checkpoint every part starts from.
run base 2 --set parallel.tp=2 --set train.stop_after=2 --set train.checkpoint.dir="$WORK/base" ||
  { tail -20 "$WORK/base.log"; fail "the base run failed"; }
[ "$(cat "$WORK/base/latest")" = step_00000002.h5 ] || fail "the base run did not save step 2"
S=$(stat -c %s "$WORK/base/step_00000002.h5")
echo "a checkpoint of this model is $S bytes"

# ---------------------------------------------------------------- 1. CRLF latest
cp -r "$WORK/base" "$WORK/crlf"
printf 'step_00000002.h5\r\n' > "$WORK/crlf/latest"
"$TANDEM" ckpt inspect "$WORK/crlf" > "$WORK/crlf-inspect.log" 2>&1 && fail "inspect accepted a CRLF latest"
grep -qF 'found "step_00000002.h5\r"' "$WORK/crlf-inspect.log" || { cat "$WORK/crlf-inspect.log"; fail "inspect does not show the CR"; }
run crlf 2 --set parallel.tp=2 --set train.checkpoint.dir="$WORK/crlf" --resume && fail "--resume accepted a CRLF latest"
grep -qF 'step_00000002.h5\r' "$WORK/crlf.log" || { tail "$WORK/crlf.log"; fail "--resume does not show the CR"; }
pass "a CRLF latest is refused, the CR shown: $(grep -o 'found "[^"]*".*' "$WORK/crlf.log" | head -1)"

# ---------------------------------------------------------------- 2. unwritable directory
RO=$WORK/ro
if mount_tmpfs "$RO" ro,size=1m; then
  want="Read-only file system"
elif [ "$(id -u)" != 0 ]; then
  mkdir -p "$RO"; chmod 555 "$RO"; want="Permission denied"
else
  RO=""; echo "SKIP: unwritable directory: cannot mount a read-only tmpfs ($(cat "$WORK/mount.err")), and root writes anywhere"
fi
if [ -n "$RO" ]; then
  for dir in "$RO" "$RO/ckpt"; do
    run unwritable 2 --set parallel.dp=2 --set train.checkpoint.dir="$dir"; rc=$?
    [ $rc = 2 ] || { tail "$WORK/unwritable.log"; fail "an unwritable $dir: exit $rc, expected 2 (a config error on every rank)"; }
    grep -q "^step " "$WORK/unwritable.log" && fail "an unwritable $dir: training started"
    grep -qE "train\.checkpoint\.dir: cannot (write into|create) checkpoint directory $dir: $want" "$WORK/unwritable.log" ||
      { cat "$WORK/unwritable.log"; fail "an unwritable $dir: no message naming the key and '$want'"; }
  done
  pass "an unwritable checkpoint directory stops every rank before the first step: $want"
fi

# ---------------------------------------------------------------- 3. full disk
MOUNTABLE=1
full_disk() {  # full_disk NAME NP overrides...
  local name=$1 np=$2; shift 2
  local D=$WORK/disk-$name
  mount_tmpfs "$D" size=$(( S * 4 )) || { MOUNTABLE=0; return; }
  cp -r "$WORK/base" "$D/ckpt"
  mount -o remount,size=$(( S + S / 2 )) "$D" || fail "$name: cannot shrink the tmpfs"
  local before; before=$(free_bytes "$D")
  run "$name" "$np" --set train.checkpoint.dir="$D/ckpt" --resume "$@"; local rc=$?
  echo "$name: the job exited $rc after $ELAPSED s ($(( before / 1048576 )) MiB were free for a $(( S / 1048576 )) MiB save)"
  [ $rc = 137 ] && { tail -30 "$WORK/$name.log"; fail "$name: killed by the 300 s limit: the save hung"; }
  [ $rc = 3 ] || { tail -30 "$WORK/$name.log"; fail "$name: exit $rc, expected Tandem's abort (3)"; }
  grep -q "^step     4/4" "$WORK/$name.log" || { tail -30 "$WORK/$name.log"; fail "$name: did not train to step 4"; }
  local line
  line=$(grep -m1 -E "^tandem: rank [0-9]+ failed: .*step_00000004\.h5\.tmp.*No space left on device.*; aborting the job" "$WORK/$name.log") ||
    { tail -30 "$WORK/$name.log"; fail "$name: no Tandem line naming the file and 'No space left on device'"; }
  grep -qE "did not (finish|complete) within" "$WORK/$name.log" && { tail -30 "$WORK/$name.log"; fail "$name: only a watchdog ended the save"; }
  [ "$(cat "$D/ckpt/latest")" = step_00000002.h5 ] || fail "$name: latest names $(cat "$D/ckpt/latest"), not step 2"
  local left; left=$(ls -A "$D/ckpt" | grep -v -x -e latest -e step_00000002.h5)
  [ -z "$left" ] || fail "$name: the failed save left: $left"
  local after; after=$(free_bytes "$D")
  [ "$after" -ge "$before" ] || fail "$name: $(( before - after )) bytes of the failed save are still held"
  "$TANDEM" ckpt inspect "$D/ckpt" > "$WORK/$name-inspect.log" 2>&1 || { tail "$WORK/$name-inspect.log"; fail "$name: step 2 does not inspect cleanly"; }
  umount "$D"
  pass "$name: ENOSPC ended the job in ${ELAPSED}s, latest kept step 2: ${line:0:260}"
}
full_disk enospc-tp2 2 --set parallel.tp=2
if [ $MOUNTABLE = 1 ]; then
  full_disk enospc-dp2tp2 4 --set parallel.dp=2 --set parallel.tp=2
  export TANDEM_FAULT_NO_RESERVE=1
  MPIX=(-x TANDEM_FAULT_NO_RESERVE)
  full_disk enospc-tp2-midfile 2 --set parallel.tp=2
  full_disk enospc-dp2tp2-midfile 4 --set parallel.dp=2 --set parallel.tp=2
  MPIX=()
  unset TANDEM_FAULT_NO_RESERVE
fi
if [ $MOUNTABLE = 0 ] || [ -z "$RO" ]; then
  echo "SKIP: cannot mount a tmpfs here ($(cat "$WORK/mount.err")): the full-disk cases did not run"
  exit 77
fi
