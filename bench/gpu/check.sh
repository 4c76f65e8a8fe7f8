#!/usr/bin/env bash
# check.sh OUTDIR — the GPU checks of Tandem (issue 10 §1), run from a kit that
# bench/gpu/build_kit.sh gathered (this script sits at the kit's root; it reads nothing else of
# the repository or its build folders). Parts, each under its own timeout, each with a log in
# OUTDIR, then OUTDIR/summary.txt:
#   env       the machine, glibc against the kit's needs, the NVIDIA libraries found at run time
#   parity    CUDA parity tests (test_kernels --gtest_filter=CudaParity*): op by op, forward and
#             backward against the CPU reference
#   mpi_nccl  test_parallel_mpi under orterun -np 1 (MPI communicator, NCCL communicator and a
#             CUDA mesh on one rank) and -np 2 (MPI at two ranks; NCCL parts need a GPU per rank)
#   model_cpu / model_cuda
#             10 steps of configs/quickstart.yaml with train.device=cpu and =cuda; per-step loss
#             and grad_norm of cuda against cpu within TOL_MODEL / TOL_GNORM (relative, fp32)
#   layout_*  (dp,tp,pp) = (2,1,1) (1,2,1) (1,1,2) (2,2,2) with train.device=cuda under orterun on
#             this machine's GPUs, against the 1-rank cuda run within TOL_LAYOUT (relative)
# Statuses: PASS, FAIL, TIMEOUT, SKIPPED (no GPU, or an earlier part failed), REFUSED (Tandem
# refused the layout by design: more ranks than GPUs, NCCL needs one GPU per rank).
# Exit status: 1 if any part FAILED or TIMED OUT, 77 if none did but some were SKIPPED or
# REFUSED, 0 if every part passed. The whole run is bounded by BUDGET_S (default 240 s): a
# part gets at most its own timeout and what is left of the budget.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1" || exit 2
OUTDIR=$(cd "$1" && pwd)
T_UNPACK=$(date +%s)
# The kit: payload.tar.gz beside this script, unpacked into a private folder (never into /),
# or an already unpacked kit (bin/ beside this script).
if [ -d "$HERE/bin" ]; then
  KIT=$HERE
else
  KIT=$(mktemp -d "${TMPDIR:-/tmp}/tandem-gpukit.XXXXXX") || exit 2
  trap 'rm -rf "$KIT"' EXIT
  if ! tar -C "$KIT" -xzf "$HERE/payload.tar.gz" 2>"$OUTDIR/unpack.log"; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      "$HERE/payload.tar.gz" "$KIT" 2>>"$OUTDIR/unpack.log" \
      || { echo "cannot unpack $HERE/payload.tar.gz (unpack.log)" | tee "$OUTDIR/summary.txt"; exit 1; }
  fi
  rm -f "$OUTDIR/unpack.log"
fi
T_UNPACK=$(( $(date +%s) - T_UNPACK ))
SUMMARY=$OUTDIR/summary.txt
BUDGET_S=${BUDGET_S:-240}
TOL_MODEL=${TOL_MODEL:-1e-4}    # cuda vs cpu, per-step loss (fp32; different summation orders)
TOL_GNORM=${TOL_GNORM:-1e-3}    # cuda vs cpu, per-step gradient norm
TOL_LAYOUT=${TOL_LAYOUT:-1e-5}  # layouts vs 1 rank, loss and grad_norm (tests/e2e/layout_equivalence_test.sh's)
STEPS=10
T_START=$(date +%s)
: > "$SUMMARY"
cd "$KIT" || exit 2   # configs/quickstart.yaml reads data/... relative to the working directory

now() { date +%s; }
left() { echo $(( BUDGET_S - ($(now) - T_START) )); }
FAILED=0 SKIPPED=0
record() {  # record PART STATUS SECONDS DETAIL
  printf '%-16s %-8s %4ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"
  case "$2" in FAIL|TIMEOUT) FAILED=$((FAILED + 1));; SKIPPED|REFUSED) SKIPPED=$((SKIPPED + 1));; esac
}
# bounded PART SECONDS cmd...: runs cmd with the smaller of SECONDS and the budget left, output
# into OUTDIR/PART.log; sets RC (124 = timed out) and DT.
bounded() {
  local part=$1 secs=$2; shift 2
  local l; l=$(left)
  [ "$l" -lt "$secs" ] && secs=$l
  local t0; t0=$(now)
  if [ "$secs" -lt 5 ]; then RC=124; DT=0; echo "budget of ${BUDGET_S}s spent before $part" > "$OUTDIR/$part.log"; return; fi
  echo "\$ $*  (timeout ${secs}s)" > "$OUTDIR/$part.log"
  kx timeout --kill-after=10 "$secs" "$@" >> "$OUTDIR/$part.log" 2>&1
  RC=$?
  [ $RC = 137 ] && RC=124
  DT=$(( $(now) - t0 ))
  [ $RC = 124 ] && reap
}
# After a timeout: end the kit's own processes that outlived their orterun (ranks stuck in a
# collective), so they do not hold the GPU during the next part. Only executables of this kit.
reap() {
  local p exe
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$exe" in "$KIT"/*) kill -9 "${p#/proc/}" 2>/dev/null && echo "reaped ${p#/proc/} $exe" >> "$OUTDIR/reaped.log";; esac
  done
}

# ---------------------------------------------------------------- environment
# Open MPI (Debian's build, relocated into the kit: its compiled-in paths are absolute, so each
# install directory is named, not just OPAL_PREFIX) and its external PMIx.
export OPAL_PREFIX=$KIT/ompi OPAL_EXEC_PREFIX=$KIT/ompi OPAL_BINDIR=$KIT/ompi/bin \
  OPAL_LIBDIR=$KIT/lib OPAL_PKGLIBDIR=$KIT/ompi/lib/openmpi3 OPAL_DATAROOTDIR=$KIT/ompi/share \
  OPAL_DATADIR=$KIT/ompi/share OPAL_PKGDATADIR=$KIT/ompi/share/openmpi \
  OPAL_SYSCONFDIR=$KIT/ompi/etc/openmpi
export OMPI_MCA_mca_base_component_path=$KIT/ompi/lib/openmpi3
export PMIX_PREFIX=$KIT/pmix PMIX_INSTALL_PREFIX=$KIT/pmix PMIX_EXEC_PREFIX=$KIT/pmix \
  PMIX_LIBDIR=$KIT/pmix/lib PMIX_PKGLIBDIR=$KIT/pmix/lib/pmix PMIX_DATAROOTDIR=$KIT/pmix/share \
  PMIX_DATADIR=$KIT/pmix/share PMIX_PKGDATADIR=$KIT/pmix/share/pmix PMIX_SYSCONFDIR=$KIT/pmix/etc \
  PMIX_MCA_mca_base_component_path=$KIT/pmix/lib/pmix
# hwloc (Open MPI's topology) would load its optional plugins (PCI, OpenCL, GL) from the
# system; the GPU machine has none, and the rehearsal must not use this machine's.
mkdir -p "$KIT/hwloc-plugins"
export HWLOC_PLUGINS_PATH=$KIT/hwloc-plugins
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
# One node, shared memory and loopback only: no UCX/OFI/verbs probing, no ssh needed, and no
# cross-memory-attach (refused in some sandboxes).
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo \
  OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_plm=isolated OMPI_MCA_btl_vader_single_copy_mechanism=none \
  OMPI_MCA_osc=^ucx OMPI_MCA_btl_base_warn_component_unused=0 OMPI_MCA_hwloc_base_binding_policy=none
export PATH=$KIT/ompi/bin:$PATH
export TMPDIR=${TMPDIR:-/tmp}
MPIRUN=(orterun --oversubscribe --bind-to none -x LD_LIBRARY_PATH -x PATH)

GLIBC_NEEDED=$(sed -n 's/^glibc_needed: //p' "$KIT/MANIFEST")
GLIBC_HERE=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')

# The NVIDIA libraries the binaries need but the kit leaves out (cuBLAS, cuBLASLt, NCCL, the
# driver's libcuda): the first folder that has each, from TANDEM_GPU_LIBS, the toolkit, the
# driver mount, then the pip wheels of the python3 on PATH (nvidia/*/lib, nvidia/cu13/lib).
candidate_dirs() {
  local d
  for d in ${TANDEM_GPU_LIBS:+${TANDEM_GPU_LIBS//:/ }} /usr/local/cuda/lib64 /usr/local/cuda/lib \
           /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
           /usr/lib/x86_64-linux-gnu /usr/lib64; do
    [ -d "$d" ] && echo "$d"
  done
  if command -v python3 > /dev/null; then
    timeout 30 python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except Exception:
    roots = []
import site, sys
for s in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
    p = os.path.join(s, "nvidia")
    if os.path.isdir(p) and p not in roots:
        roots.append(p)
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "*", "lib"))):
        print(d)
PY
  fi
}
needed_external() {  # sonames the binaries need that the kit does not hold (listed at build time)
  sed -n 's/^external_libs: //p' "$KIT/MANIFEST"
}
GPU_LIB_DIRS=()
LIB_NOTE=""
mapfile -t CANDS < <(candidate_dirs | awk '!seen[$0]++')
for so in $(needed_external) libcuda.so.1; do
  found=""
  for d in "${CANDS[@]}"; do
    if [ -e "$d/$so" ]; then found=$d; break; fi
  done
  if [ -z "$found" ] && [ "$so" = libcuda.so.1 ] && ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1 '; then
    LIB_NOTE+="$so: ld.so.cache; "; continue
  fi
  LIB_NOTE+="$so: ${found:-NOT FOUND}; "
  [ -n "$found" ] && GPU_LIB_DIRS+=("$found")
done
LDP=$KIT/lib
for d in $(printf '%s\n' "${GPU_LIB_DIRS[@]}" | awk 'NF && !seen[$0]++'); do LDP+=":$d"; done
# Only the kit's programs get it (kx): the machine's own tools keep their own libraries.
KIT_LDP=$LDP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
kx() { LD_LIBRARY_PATH=$KIT_LDP "$@"; }

HAVE_GPU=0
if command -v nvidia-smi > /dev/null && timeout 30 nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then HAVE_GPU=1; fi
NGPU=0
[ $HAVE_GPU = 1 ] && NGPU=$(timeout 30 nvidia-smi -L | grep -c '^GPU ')

{
  echo "kit: $HERE, unpacked into $KIT in ${T_UNPACK}s"; cat "$KIT/MANIFEST"; echo
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -n)  kernel: $(uname -r)  cpus: $(nproc)"
  grep -m1 'model name' /proc/cpuinfo
  (. /etc/os-release 2>/dev/null && echo "os: $PRETTY_NAME")
  echo "glibc here: $GLIBC_HERE, kit needs: $GLIBC_NEEDED"
  echo "python3: $(command -v python3 || echo none) $(python3 --version 2>&1)"
  echo "GPUs: $NGPU"
  [ $HAVE_GPU = 1 ] && timeout 30 nvidia-smi
  echo "NVIDIA libraries: $LIB_NOTE"
  echo "LD_LIBRARY_PATH of the kit's programs: $KIT_LDP"
  echo; echo "candidate folders:"; printf '  %s\n' "${CANDS[@]}"
  echo; for b in "$KIT"/bin/*; do echo "ldd $b:"; kx ldd "$b" 2>&1 | sed 's/^/  /'; done
  echo; kx orterun --version 2>&1 | head -2
} > "$OUTDIR/env.log" 2>&1
ENV_OK=1 ENV_DETAIL="glibc $GLIBC_HERE (needs $GLIBC_NEEDED), $NGPU GPU(s)"
if [ -z "$GLIBC_HERE" ] || [ "$(printf '%s\n%s\n' "$GLIBC_NEEDED" "$GLIBC_HERE" | sort -V | head -1)" != "$GLIBC_NEEDED" ]; then
  ENV_OK=0 ENV_DETAIL+="; glibc too old"
fi
NOTFOUND=$(for b in "$KIT"/bin/* "$KIT"/ompi/bin/orterun; do kx ldd "$b" 2>&1; done | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
if [ -n "$NOTFOUND" ]; then
  if [ $HAVE_GPU = 1 ]; then ENV_OK=0; fi
  ENV_DETAIL+="; libraries not found: $NOTFOUND"
fi
if ! kx timeout 30 orterun -np 1 true >> "$OUTDIR/env.log" 2>&1; then ENV_OK=0; ENV_DETAIL+="; orterun -np 1 true failed"; fi
record env "$([ $ENV_OK = 1 ] && echo PASS || echo FAIL)" $(( $(now) - T_START )) "$ENV_DETAIL; LD_LIBRARY_PATH in env.log"
if [ $HAVE_GPU = 0 ]; then
  echo "*** no GPU visible (nvidia-smi -L): the GPU parts below are SKIPPED, not passed ***" | tee -a "$SUMMARY"
fi

# ---------------------------------------------------------------- gtest parts
gtest_counts() {  # passed/skipped/failed counts from a gtest log (rank 0's report)
  local log=$1
  P=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  S=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  F=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  P=${P:-0} S=${S:-0} F=${F:-0}
}
gtest_status() {  # gtest_status PART: from RC and the counts; a GPU part whose tests all skip on a GPU machine fails
  local part=$1 gpu_needed=$2
  gtest_counts "$OUTDIR/$part.log"
  local d="$P passed, $S skipped, $F failed"
  if [ $RC = 124 ]; then record "$part" TIMEOUT "$DT" "$d (timed out)"
  elif [ $RC != 0 ] || [ "$F" != 0 ]; then record "$part" FAIL "$DT" "$d, exit $RC: $(grep -m3 -E '^\[  FAILED  \]|rror' "$OUTDIR/$part.log" | tr '\n' ' ' | cut -c1-200)"
  elif [ "$P" = 0 ] && [ "$S" = 0 ]; then record "$part" FAIL "$DT" "no test ran"
  elif [ "$S" != 0 ] && [ $HAVE_GPU = 0 ]; then record "$part" SKIPPED "$DT" "$d (no GPU)"
  elif [ "$S" != 0 ] && [ "$gpu_needed" = all ] && [ "$P" = 0 ]; then record "$part" FAIL "$DT" "$d: every test skipped on a machine with a GPU (CUDA sees no device: libcuda? env.log)"
  else record "$part" PASS "$DT" "$d"
  fi
}

if [ $ENV_OK = 1 ]; then
  bounded parity 150 "$KIT/bin/test_kernels" --gtest_filter='CudaParity*' --gtest_color=no
  gtest_status parity all

  bounded mpi_nccl 90 bash -c "${MPIRUN[*]} -np 1 '$KIT/bin/test_parallel_mpi' --gtest_color=no && echo '--- np 2 ---' && ${MPIRUN[*]} -np 2 '$KIT/bin/test_parallel_mpi' --gtest_color=no --gtest_filter='-NcclCommunicatorN.*'"
  # the np 1 report carries the NCCL verdict; np 2 must just pass (MPI only)
  if [ $RC = 0 ]; then
    sed -n '1,/^--- np 2 ---$/p' "$OUTDIR/mpi_nccl.log" > "$OUTDIR/mpi_nccl.np1"
    gtest_counts "$OUTDIR/mpi_nccl.np1"; rm -f "$OUTDIR/mpi_nccl.np1"
    nccl_skips=$(grep -c '^\[  SKIPPED \] NcclCommunicatorN' "$OUTDIR/mpi_nccl.log")
    if [ $HAVE_GPU = 0 ] && [ "$nccl_skips" != 0 ]; then record mpi_nccl SKIPPED "$DT" "MPI parts pass at np 1 and 2; $nccl_skips NCCL tests skipped (no GPU)"
    elif [ "$nccl_skips" != 0 ] && [ "$(grep -c '^\[       OK \] NcclCommunicatorN' "$OUTDIR/mpi_nccl.log")" = 0 ]; then record mpi_nccl FAIL "$DT" "every NCCL test skipped on a GPU machine"
    else record mpi_nccl PASS "$DT" "np 1: $P passed, $S skipped (NCCL on 1 rank included); np 2 (MPI) passed"
    fi
  else
    gtest_status mpi_nccl some
  fi
else
  record parity SKIPPED 0 "environment check failed (env.log)"
  record mpi_nccl SKIPPED 0 "environment check failed (env.log)"
fi

# ---------------------------------------------------------------- model level
first_error() {  # the first line of LOG that says what went wrong, shortened
  { grep -m1 -E '\[(critical|error)\]|tandem: .*failed|terminate called|what\(\)' "$1" \
    || grep -m1 -iE 'error|not found|cannot' "$1"; } | sed 's/^\[[0-9:]*\] //' | cut -c1-220
}
COMMON=(--set "train.steps=$STEPS" --set train.eval_batches=1 --set sample.count=0)
train() {  # train PART SECONDS NP overrides...
  local part=$1 secs=$2 np=$3; shift 3
  bounded "$part" "$secs" "${MPIRUN[@]}" -np "$np" "$KIT/bin/tandem" train configs/quickstart.yaml \
    "${COMMON[@]}" "$@" --metrics-out "$OUTDIR/$part.jsonl"
}
# compare BASE RUN TOL_LOSS TOL_GNORM: per-step relative differences, a table into OUTDIR/RUN.cmp
compare() {
  local base=$OUTDIR/$1.jsonl run=$OUTDIR/$2.jsonl
  [ -s "$base" ] && [ -s "$run" ] || { CMP="missing metrics"; return 1; }
  CMP=$(awk -v tl="$3" -v tg="$4" -v steps=$STEPS -v out="$OUTDIR/$2.cmp" -v bn="$1" -v rn="$2" '
    function num(line, key,   m) {
      if (match(line, "\"" key "\": *[-+0-9.eE]+")) { m = substr(line, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m + 0 }
      return "none"
    }
    function rel(a, b) { d = a - b; if (d < 0) d = -d; if (b < 0) b = -b; return b > 0 ? d / b : d }
    FNR == 1 { file++ }
    { s = num($0, "step"); if (s == "none") next; l = num($0, "loss"); g = num($0, "grad_norm"); v = num($0, "val_loss")
      if (file == 1) { bl[s] = l; bg[s] = g; if (v != "none") bv = v } else { rl[s] = l; rg[s] = g; if (v != "none") rv = v } }
    END {
      printf "%4s %14s %14s %10s %12s %12s %10s\n", "step", bn " loss", rn " loss", "rel", bn " gnorm", rn " gnorm", "rel" > out
      n = 0; wl = 0; wg = 0; bad = 0
      for (s = 1; s <= steps; s++) {
        if (!(s in bl) || !(s in rl)) { bad = 1; continue }
        n++; a = rel(rl[s], bl[s]); b = rel(rg[s], bg[s])
        if (a > wl) wl = a; if (b > wg) wg = b
        printf "%4d %14.8f %14.8f %10.2e %12.6f %12.6f %10.2e\n", s, bl[s], rl[s], a, bg[s], rg[s], b > out
      }
      wv = (bv != "" && rv != "") ? rel(rv, bv) : -1
      if (wv >= 0) printf "val  %14.8f %14.8f %10.2e\n", bv, rv, wv > out
      ok = (n == steps && !bad && wl <= tl && wg <= tg && (wv < 0 || wv <= tl))
      vs = (wv >= 0) ? sprintf("%.2e", wv) : "n/a"
      printf("%s: %d/%d steps, max rel diff loss %.2e (tol %g), grad_norm %.2e (tol %g), val %s", (ok ? "ok" : "DIFFERS"), n, steps, wl, tl, wg, tg, vs)
      exit (ok ? 0 : 1)
    }' "$base" "$run")
}

if [ $ENV_OK = 1 ]; then
  train model_cpu 120 1 --set train.device=cpu
  if [ $RC = 124 ]; then record model_cpu TIMEOUT "$DT" "10 cpu steps did not finish"
  elif [ $RC != 0 ] || [ ! -s "$OUTDIR/model_cpu.jsonl" ]; then record model_cpu FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/model_cpu.log")"
  else record model_cpu PASS "$DT" "$(wc -l < "$OUTDIR/model_cpu.jsonl") steps; loss $(awk 'match($0, /"loss": *[-+0-9.eE]+/) { v = substr($0, RSTART, RLENGTH); sub(/.*: */, "", v); printf "%s%.4f", (n++ ? " " : ""), v }' "$OUTDIR/model_cpu.jsonl")"
  fi
else
  record model_cpu SKIPPED 0 "environment check failed (env.log)"
fi

CUDA_BASE_OK=0
if [ $HAVE_GPU = 0 ] || [ $ENV_OK = 0 ]; then
  record model_cuda SKIPPED 0 "$([ $HAVE_GPU = 0 ] && echo 'no GPU' || echo 'environment check failed')"
else
  train model_cuda 90 1 --set train.device=cuda
  if [ $RC = 124 ]; then record model_cuda TIMEOUT "$DT" "10 cuda steps did not finish"
  elif [ $RC != 0 ] || [ ! -s "$OUTDIR/model_cuda.jsonl" ]; then record model_cuda FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/model_cuda.log")"
  else
    CUDA_BASE_OK=1
    grep -qi 'cuda' "$OUTDIR/model_cuda.log" || echo "warning: the log does not name cuda" >> "$OUTDIR/model_cuda.log"
    if [ -s "$OUTDIR/model_cpu.jsonl" ]; then
      if compare model_cpu model_cuda "$TOL_MODEL" "$TOL_GNORM"; then record model_cuda PASS "$DT" "vs cpu: $CMP"
      else record model_cuda FAIL "$DT" "vs cpu: $CMP (table: model_cuda.cmp)"; fi
    else
      record model_cuda FAIL "$DT" "ran, but no cpu run to compare with"
    fi
  fi
fi

# ---------------------------------------------------------------- layouts (NCCL)
LAYOUTS=(
  "layout_dp2 2 --set parallel.dp=2"
  "layout_tp2 2 --set parallel.tp=2"
  "layout_pp2 2 --set parallel.pp=2 --set parallel.microbatches=2"
  "layout_dp2tp2pp2 8 --set parallel.dp=2 --set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2"
)
for spec in "${LAYOUTS[@]}"; do
  read -r name np rest <<< "$spec"
  if [ $HAVE_GPU = 0 ] || [ $ENV_OK = 0 ]; then record "$name" SKIPPED 0 "$([ $HAVE_GPU = 0 ] && echo 'no GPU' || echo 'environment check failed')"; continue; fi
  # shellcheck disable=SC2086
  train "$name" 60 "$np" --set train.device=cuda $rest
  if [ $RC = 124 ]; then record "$name" TIMEOUT "$DT" "$np ranks did not finish"
  elif [ $RC != 0 ]; then
    why=$(grep -m1 -o -E "ranks [0-9]+ and [0-9]+ of the group would share one GPU[^;]*|ranks run on this node but only [0-9]+ CUDA devices|Duplicate GPU detected.*" "$OUTDIR/$name.log")
    if [ -n "$why" ]; then record "$name" REFUSED "$DT" "$np ranks on $NGPU GPU(s): $why"
    else record "$name" FAIL "$DT" "exit $RC: $(first_error "$OUTDIR/$name.log")"; fi
  elif [ $CUDA_BASE_OK = 0 ]; then record "$name" FAIL "$DT" "ran, but the 1-rank cuda run to compare with failed"
  elif compare model_cuda "$name" "$TOL_LAYOUT" "$TOL_LAYOUT"; then record "$name" PASS "$DT" "vs 1-rank cuda: $CMP"
  else record "$name" FAIL "$DT" "vs 1-rank cuda: $CMP (table: $name.cmp)"
  fi
done

TOTAL=$(( $(now) - T_START ))
if [ $FAILED != 0 ]; then RESULT="FAIL ($FAILED part(s) failed or timed out, $SKIPPED skipped/refused)"; EXIT=1
elif [ $SKIPPED != 0 ]; then RESULT="INCOMPLETE (no failure; $SKIPPED part(s) SKIPPED or REFUSED: not passed)"; EXIT=77
else RESULT="PASS (every part)"; EXIT=0; fi
echo "RESULT: $RESULT in ${TOTAL}s (budget ${BUDGET_S}s); logs in $OUTDIR" | tee -a "$SUMMARY"
exit $EXIT
