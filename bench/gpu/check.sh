#!/usr/bin/env bash
# check.sh OUTDIR — the GPU checks of Tandem (issue 10 §1 and §4), run from a kit that
# bench/gpu/build_kit.sh gathered (this script sits at the kit's root; it reads nothing else of
# the repository or its build folders). Parts, each under its own timeout, each with a log in
# OUTDIR, then OUTDIR/summary.txt:
#   env       the machine, glibc against the kit's needs, the NVIDIA libraries found at run time
# correctness (scripts/check_correctness.sh):
#   parity    CUDA parity tests (test_kernels --gtest_filter=CudaParity*): op by op, forward and
#             backward against the CPU reference
#   mpi_nccl  test_parallel_mpi under orterun -np 1 (MPI communicator, NCCL communicator and a
#             CUDA mesh on one rank) and -np 2 (MPI at two ranks; NCCL parts need a GPU per rank)
#   model_cpu / model_cuda
#             10 steps of configs/quickstart.yaml with train.device=cpu and =cuda; per-step loss
#             and grad_norm of cuda against cpu within TOL_MODEL / TOL_GNORM (relative, fp32)
#   bf16_track  HOOK(gpu-bf16): scripts/bf16_track.sh when the kit has it
#   layout_*  (dp,tp,pp) = (2,1,1) (1,2,1) (1,1,2) (2,2,2) with train.device=cuda under orterun on
#             this machine's GPUs, against the 1-rank cuda run within TOL_LAYOUT (relative)
#   staged_*  HOOK(gpu-mem): the same layouts with parallel.device_comm=staged, when bin/tandem
#             knows the key
# performance (scripts/check_perf.sh; issue 10 §4): training tokens/s and MFU of Tandem
#   (train_bench) and PyTorch (eager, torch.compile), KV-cached decode tokens/s of Tandem
#   (decode_bench) and PyTorch; comm_overlap HOOK(gpu-comm); OUTDIR/perf.jsonl (one JSON
#   line per measurement) and OUTDIR/perf_summary.txt (the tables)
# PARTS (default "correctness,perf") selects the groups; env always runs. Without a GPU the GPU
# parts are SKIPPED; PERF_REHEARSAL=cpu runs the performance parts on the CPU at tiny shapes
# instead (a rehearsal of their code paths, not a measurement).
# Statuses: PASS, FAIL, TIMEOUT, SKIPPED (no GPU, a hook absent, an earlier part failed, the
# budget spent before a performance part), REFUSED (Tandem refused the layout by design: more
# ranks than GPUs, NCCL needs one GPU per rank).
# Exit status: 1 if any part FAILED or TIMED OUT, 77 if none did but some were SKIPPED or
# REFUSED, 0 if every part passed. The whole run is bounded by BUDGET_S (default 270 s): a
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
BUDGET_S=${BUDGET_S:-270}   # two runs and a machine start in 15 minutes: bench/gpu/README.md
PARTS=${PARTS:-correctness,perf}
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
  printf '%-27s %-8s %4ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"
  case "$2" in FAIL|TIMEOUT) FAILED=$((FAILED + 1));; SKIPPED|REFUSED) SKIPPED=$((SKIPPED + 1));; esac
}
# bounded PART SECONDS cmd...: runs cmd with the smaller of SECONDS and the budget left, output
# into OUTDIR/PART.log; sets RC (124 = timed out) and DT. The kit's LD_LIBRARY_PATH (kx) is
# given to cmd unless NOKX=1 (the machine's own python3 and PyTorch keep their libraries).
bounded() {
  local part=$1 secs=$2; shift 2
  local l; l=$(left)
  [ "$l" -lt "$secs" ] && secs=$l
  local t0; t0=$(now)
  if [ "$secs" -lt 5 ]; then RC=124; DT=0; echo "budget of ${BUDGET_S}s spent before $part" > "$OUTDIR/$part.log"; return; fi
  echo "\$ $*  (timeout ${secs}s)" > "$OUTDIR/$part.log"
  if [ "${NOKX:-0}" = 1 ]; then timeout --kill-after=10 "$secs" "$@" >> "$OUTDIR/$part.log" 2>&1
  else kx timeout --kill-after=10 "$secs" "$@" >> "$OUTDIR/$part.log" 2>&1; fi
  RC=$?
  [ $RC = 137 ] && RC=124
  DT=$(( $(now) - t0 ))
  [ $RC = 124 ] && reap
}
first_error() {  # the first line of LOG that says what went wrong, shortened
  { grep -m1 -E '\[(critical|error)\]|tandem: .*failed|^(train_bench|decode_bench): |terminate called|what\(\)|^Traceback|Error: ' "$1" \
    || grep -m1 -iE 'error|not found|cannot' "$1"; } | sed 's/^\[[0-9:]*\] //' | cut -c1-220
}
want() { case ",$PARTS," in *",$1,"*) return 0;; esac; return 1; }
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

# ---------------------------------------------------------------- the parts
export KIT OUTDIR
for group in correctness perf; do
  if want $group; then
    # shellcheck source=/dev/null
    . "$KIT/scripts/check_$group.sh"
  else
    echo "(parts of group '$group' not selected: PARTS=$PARTS)" | tee -a "$SUMMARY"
  fi
done

TOTAL=$(( $(now) - T_START ))
if [ $FAILED != 0 ]; then RESULT="FAIL ($FAILED part(s) failed or timed out, $SKIPPED skipped/refused)"; EXIT=1
elif [ $SKIPPED != 0 ]; then RESULT="INCOMPLETE (no failure; $SKIPPED part(s) SKIPPED or REFUSED: not passed)"; EXIT=77
else RESULT="PASS (every part)"; EXIT=0; fi
echo "RESULT: $RESULT in ${TOTAL}s (budget ${BUDGET_S}s); logs in $OUTDIR" | tee -a "$SUMMARY"
exit $EXIT
