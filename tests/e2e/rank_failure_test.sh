#!/usr/bin/env bash
# A dying or hung rank never leaves the job hanging.
#  1. SIGKILL one rank mid-training: the job ends within 30 s, non-zero, before it finishes.
#  2. SIGSTOP one rank (a hang): the other rank's collective watchdog (parallel.timeout_s)
#     fires; that rank prints Tandem's own line (rank, reason, "aborting the job") and
#     MPI_Abort ends the whole job with Tandem's abort exit code (3).
# Nothing here depends on Open MPI's own wording: under load its help messages may fail to
# print ("ORTE_ERROR_LOG: Out of resource ... show_help.c"), and the test must not care.
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
! grep -q "^final:" "$WORK/kill.log" || { cat "$WORK/kill.log"; fail "the job ran to its end after a rank was killed"; }
pass "SIGKILL of one rank ended the job in ${ELAPSED}s (exit $RC)"

# --- 2. SIGSTOP (a hung rank) -> watchdog on the other rank -> MPI_Abort
rm -f "$WORK/m.jsonl"
start_job "$WORK/stop.log" --set parallel.timeout_s=5
victim=$(echo "$RANKS" | tail -1)
t0=$(date +%s); kill -STOP "$victim"
wait_job "$t0"
kill -KILL "$victim" 2>/dev/null
[ $RC -eq 3 ] || { cat "$WORK/stop.log"; fail "hung rank: job exited $RC, expected Tandem's abort code 3"; }
[ $ELAPSED -ge 4 ] || fail "hung rank: job ended after ${ELAPSED}s, before the 5 s watchdog could fire"
[ $ELAPSED -le 60 ] || fail "hung rank: job took ${ELAPSED}s to end with a 5 s watchdog"
line=$(grep -m1 -E "^tandem: rank [0-9]+ failed: .*did not complete within 5\.00 s.*; aborting the job" "$WORK/stop.log") \
  || { cat "$WORK/stop.log"; fail "no 'tandem: rank R failed: ... did not complete ...; aborting the job' line"; }
pass "a hung rank tripped the watchdog after ~5 s; job aborted in ${ELAPSED}s (exit $RC): ${line:0:200}"
