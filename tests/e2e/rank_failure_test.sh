#!/usr/bin/env bash
# A dying or hung rank never leaves the job hanging.
#  1. SIGKILL one rank mid-training: the job ends within 30 s, non-zero, with a message.
#  2. SIGSTOP one rank (a hang): the other rank's collective watchdog (parallel.timeout_s)
#     fires, the error is logged with its rank, MPI_Abort ends the whole job.
set -uo pipefail
source "$(dirname "$0")/lib.sh" "$@"
need_data

small=(--set model.layers=2 --set model.dim=64 --set model.heads=4 --set model.seq_len=32
       --set train.steps=100000 --set train.eval_every=0 --set sample.count=0 --set train.threads=1
       --set parallel.dp=2)

# Starts a 2-rank job in the background; waits until step 3 is logged; prints rank pids.
start_job() {  # start_job LOG extra-args...
  local log=$1; shift
  timeout --signal=KILL 300 mpirun -np 2 --oversubscribe "$TANDEM" train configs/quickstart.yaml \
    "${small[@]}" "$@" --metrics-out "$WORK/m.jsonl" > "$log" 2>&1 &
  JOB=$!
  for _ in $(seq 1 600); do
    [ -f "$WORK/m.jsonl" ] && [ "$(grep -c . "$WORK/m.jsonl")" -ge 3 ] && break
    kill -0 $JOB 2>/dev/null || { cat "$log"; fail "job died before step 3"; }
    sleep 0.1
  done
  local launcher
  launcher=$(pgrep -P "$JOB")                 # timeout -> mpirun -> the two ranks
  RANKS=$(pgrep -P "$launcher" | sort -n)
  [ "$(echo "$RANKS" | wc -l)" -eq 2 ] || fail "expected 2 rank processes, found: $RANKS"
}

# Waits for the job; prints the seconds it took after `since`.
wait_job() {  # wait_job SINCE
  wait $JOB; RC=$?; ELAPSED=$(( $(date +%s) - $1 ))
}

JOB=""
trap '[ -n "$JOB" ] && pkill -KILL -P "$(pgrep -P "$JOB" 2>/dev/null)" 2>/dev/null; kill -KILL "$JOB" 2>/dev/null; rm -rf "$WORK"' EXIT

# --- 1. SIGKILL
start_job "$WORK/kill.log"
victim=$(echo "$RANKS" | tail -1)
t0=$(date +%s); kill -KILL "$victim"
wait_job "$t0"
[ $RC -ne 0 ] || fail "job exited 0 after a rank was killed"
# (mpirun itself exits 137 = 128 + SIGKILL here; the elapsed time tells a hang apart.)
[ $ELAPSED -le 30 ] || fail "job took ${ELAPSED}s (> 30 s) to end after SIGKILL"
grep -qiE "signal 9|killed|exited on signal" "$WORK/kill.log" || { cat "$WORK/kill.log"; fail "no message about the killed rank"; }
pass "SIGKILL of one rank ended the job in ${ELAPSED}s (exit $RC)"

# --- 2. SIGSTOP (a hung rank) -> watchdog on the other rank -> MPI_Abort
rm -f "$WORK/m.jsonl"
start_job "$WORK/stop.log" --set parallel.timeout_s=5
victim=$(echo "$RANKS" | tail -1)
t0=$(date +%s); kill -STOP "$victim"
wait_job "$t0"
kill -KILL "$victim" 2>/dev/null
[ $RC -ne 0 ] || { cat "$WORK/stop.log"; fail "hung rank: job exited 0"; }
[ $ELAPSED -le 60 ] || fail "hung rank: job took ${ELAPSED}s to end with a 5 s watchdog"
grep -qE "rank [0-9]+.*(timed out|timeout|did not complete)" "$WORK/stop.log" \
  || { cat "$WORK/stop.log"; fail "no watchdog message naming the rank"; }
grep -q "MPI_ABORT" "$WORK/stop.log" || { cat "$WORK/stop.log"; fail "job did not end through MPI_Abort"; }
pass "a hung rank tripped the watchdog after ~5 s; job aborted in ${ELAPSED}s: $(grep -m1 -oE 'rank [0-9]+: .{0,120}' "$WORK/stop.log")"
