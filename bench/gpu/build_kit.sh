#!/usr/bin/env bash
# bench/gpu/build_kit.sh — builds Tandem with CUDA for sm_90 (H100/H200) and gathers what the
# GPU checks need into one self-contained folder (default out/gpukit, git-ignored, at most
# 64 MiB) that the device tool carries to a bare GPU machine: the binaries (tandem, the two
# test programs, train_bench and decode_bench), check.sh's parts and the performance parts'
# Python (scripts/, the PyTorch model torch_gpt.py included), every shared library they load
# except glibc's and the big NVIDIA ones (cuBLAS, cuBLASLt, cuDNN, NCCL, the driver; check.sh
# finds those on the GPU machine at run time), a relocatable Open MPI (orterun, its plugins,
# help and config files, PMIx), the quickstart config and data, and check.sh.
#
# usage: bench/gpu/build_kit.sh [--gather-only] [KIT_DIR]
#   BUILD_DIR   build folder (default build-gpukit; configured here, never build/)
#   JOBS        parallel compile jobs (default 2; compiles run under nice -n 10)
# See bench/gpu/README.md for the rehearsal and the device run.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$SRC"
GATHER_ONLY=0
if [ "${1:-}" = "--gather-only" ]; then GATHER_ONLY=1; shift; fi
KIT=${1:-out/gpukit}
BUILD=${BUILD_DIR:-build-gpukit}
JOBS=${JOBS:-2}
LIMIT_MIB=64
TARGETS=(tandem test_kernels test_parallel_mpi train_bench decode_bench)
# HOOK(gpu-comm): built and packed when the build knows the target (branch gpu-comm).
OPTIONAL_TARGETS=(comm_overlap_bench)
case "$BUILD" in build|build-avx2|./build|./build-avx2|build/|build-avx2/) echo "refusing to use $BUILD" >&2; exit 2;; esac
case "$(realpath -m "$KIT")" in /|"$SRC"|"$SRC"/bench*|"$HOME") echo "refusing kit folder $KIT" >&2; exit 2;; esac

# ---------------------------------------------------------------- build
if [ $GATHER_ONLY = 0 ]; then
  # x86-64-v3 (AVX2+FMA): the CPU code must run on the GPU machine's processor, not just here.
  mkdir -p "$BUILD"
  cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DTANDEM_ARCH=x86-64-v3 > "$BUILD/kit-configure.log" 2>&1 \
    || { tail -30 "$BUILD/kit-configure.log"; exit 1; }
  grep -q "Tandem CUDA backend: ON" "$BUILD/kit-configure.log" \
    || { echo "CUDA backend is not ON in $BUILD" >&2; exit 1; }
  KNOWN=$(ninja -C "$BUILD" -t targets all 2>/dev/null | sed -n 's/^\([A-Za-z0-9_]*\): .*/\1/p')
  for t in "${OPTIONAL_TARGETS[@]}"; do
    if grep -qx "$t" <<< "$KNOWN"; then TARGETS+=("$t"); fi
  done
  nice -n 10 cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"
fi
BINS=("$BUILD/tandem" "$BUILD/tests/test_kernels" "$BUILD/tests/test_parallel_mpi"
      "$BUILD/bench/train_bench" "$BUILD/bench/decode_bench")
for b in "${BINS[@]}"; do [ -x "$b" ] || { echo "missing $b (build first)" >&2; exit 1; }; done

# ---------------------------------------------------------------- gather
# Everything but check.sh is staged in the build folder and packed into payload.tar.gz (the
# uncompressed tree is about 95 MiB, OpenBLAS alone 35); check.sh unpacks it into a private
# folder under TMPDIR on the GPU machine.
STAGE=$BUILD/kit-stage
rm -rf "$STAGE" "$KIT"
mkdir -p "$KIT" "$STAGE"/{bin,lib,data/brown,data/gpt2,configs,ompi/bin,ompi/lib/openmpi3,ompi/etc,ompi/share,pmix/lib/pmix}
cp "${BINS[@]}" "$STAGE/bin/"
for t in "${OPTIONAL_TARGETS[@]}"; do
  for f in "$BUILD/bench/$t" "$BUILD/$t"; do
    if [ -x "$f" ]; then cp "$f" "$STAGE/bin/"; echo "packed optional $t"; break; fi
  done
done
# The parts of check.sh (sourced from scripts/) and the performance parts' Python (with the
# repository's one PyTorch model, bench/peers/torch_gpt.py, which torch_gpu_bench.py imports
# from beside itself); the HOOK(gpu-bf16) script when the branch that adds it is merged.
mkdir -p "$STAGE/scripts"
cp bench/gpu/check_correctness.sh bench/gpu/check_perf.sh bench/gpu/perf_report.py \
   bench/gpu/torch_gpu_bench.py bench/peers/torch_gpt.py "$STAGE/scripts/"
if [ -f bench/gpu/bf16_track.sh ]; then cp bench/gpu/bf16_track.sh "$STAGE/scripts/"; fi

# Open MPI (Debian's 4.1, external PMIx): orterun is mpirun; plugins load from OPAL_PKGLIBDIR.
# Left out: the plugins of network fabrics a one-node run never uses (UCX, OFI, verbs, PSM)
# and of OpenSHMEM, with the libraries only they pull in.
OMPI_LIBDIR=/usr/lib/x86_64-linux-gnu/openmpi/lib
cp -L /usr/bin/orterun /usr/bin/orted /usr/bin/ompi_info "$STAGE/ompi/bin/"
for f in "$OMPI_LIBDIR"/openmpi3/*.so; do
  case "$(basename "$f")" in
    *ucx*|*ofi*|*openib*|*psm*|*verbs*|mca_spml_*|mca_sshmem_*|mca_scoll_*|mca_memheap_*|mca_atomic_*) continue;;
  esac
  cp -L "$f" "$STAGE/ompi/lib/openmpi3/"
done
cp -rL /usr/share/openmpi "$STAGE/ompi/share/"
cp -rL /etc/openmpi "$STAGE/ompi/etc/"
PMIX_DIR=/usr/lib/x86_64-linux-gnu/pmix2
cp -L "$PMIX_DIR"/lib/pmix/*.so "$STAGE/pmix/lib/pmix/"
cp -rL "$PMIX_DIR/share" "$STAGE/pmix/"

# Shared libraries: the closure of every ELF above, as ldd resolves it here, minus glibc (the
# GPU machine's own, newer one is used: see GLIBC_NEEDED below) and the NVIDIA libraries that
# the GPU machine has (CUDA toolkit or PyTorch's nvidia-* wheels) and that are far too big.
skip_lib() {
  case "$1" in
    linux-vdso.so*|ld-linux-x86-64.so*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|\
    libresolv.so*|libutil.so*|libanl.so*|libnsl.so*|libBrokenLocale.so*|libmvec.so*) return 0;;
    libcuda.so*|libnvidia-*|libcublas.so*|libcublasLt.so*|libcudnn*|libnccl.so*|libnvrtc*|\
    libnvJitLink*|libcufft*|libcurand*|libcusolver*|libcusparse*) return 0;;
  esac
  return 1
}
MISSING=()
ELFS=("$STAGE"/bin/* "$STAGE"/ompi/bin/* "$STAGE"/ompi/lib/openmpi3/*.so "$STAGE"/pmix/lib/pmix/*.so)
declare -A SEEN=()
while read -r name path; do
  [ -n "$name" ] || continue
  skip_lib "$name" && continue
  [ -n "${SEEN[$name]:-}" ] && continue
  SEEN[$name]=1
  if [ "$path" = "not" ]; then MISSING+=("$name"); continue; fi
  cp -L "$path" "$STAGE/lib/$name"
done < <(ldd "${ELFS[@]}" 2>/dev/null | awk '/=>/ {print $1, $3} /not found/ {print $1, "not"}' | sort -u)
# Plugins of optional transports (UCX, OFI, PSM, verbs) whose libraries are absent here would
# fail to load there too; Open MPI skips them quietly. Anything else missing is an error.
for m in "${MISSING[@]}"; do echo "warning: not found here: $m" >&2; done

# Data and config of the model-level checks (configs/quickstart.yaml reads data/... relative
# to the working directory, which check.sh sets to the kit).
for f in data/brown/train_000.bin data/brown/val_000.bin data/gpt2/encoder.json data/gpt2/vocab.bpe; do
  [ -s "$f" ] || { echo "missing $f (run ./launch/setup, or launch/fetch_data)" >&2; exit 1; }
  cp "$f" "$STAGE/$f"
done
cp configs/quickstart.yaml "$STAGE/configs/"

# The newest glibc symbol version any gathered ELF needs (check.sh compares it with the GPU
# machine's glibc before running anything), and what was built from.
GLIBC_NEEDED=$(find "$STAGE" -type f \( -name '*.so*' -o -perm -u+x \) -exec objdump -T {} + 2>/dev/null \
  | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V -u | tail -1 || true)
{
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release; echo "$PRETTY_NAME"), $(ldd --version | head -1)"
  echo "source: $(git -C "$SRC" rev-parse --short HEAD)$(git -C "$SRC" diff --quiet HEAD -- . ':!out' 2>/dev/null || echo ' + uncommitted changes')"
  echo "cuda: $(/usr/local/cuda/bin/nvcc --version | grep -m1 release || true)"
  echo "cuda_architectures: $(grep -m1 CMAKE_CUDA_ARCHITECTURES: "$BUILD/CMakeCache.txt" | cut -d= -f2)"
  echo "cpu_arch: $(grep -m1 TANDEM_ARCH: "$BUILD/CMakeCache.txt" | cut -d= -f2)"
  NCCL_LIB=$(grep -m1 TANDEM_NCCL_LIB: "$BUILD/CMakeCache.txt" | cut -d= -f2)
  echo "nccl_built_against: $( (strings "$NCCL_LIB" | grep -o 'NCCL version [^ ]*' | head -1) 2>/dev/null || true)"
  echo "glibc_needed: $GLIBC_NEEDED"
  echo "external_libs: $(for b in "$STAGE"/bin/*; do ldd "$b"; done | awk '{print $1}' | while read -r n; do
         case "$n" in libcuda.so*|libnvidia-*|libcublas*|libcudnn*|libnccl*|libnvrtc*|libnvJitLink*|libcufft*|libcurand*|libcusolver*|libcusparse*) echo "$n";; esac; done | sort -u | tr '\n' ' ')"
  echo "uncompressed_kib: $(du -sk "$STAGE" | cut -f1)"
} > "$STAGE/MANIFEST"
tar -C "$STAGE" -cf - . | gzip -9 > "$KIT/payload.tar.gz"
cp "$STAGE/MANIFEST" "$KIT/MANIFEST"
cp bench/gpu/check.sh "$KIT/check.sh"
chmod +x "$KIT/check.sh"

KIB=$(du -sk "$KIT" | cut -f1)
MIB=$(( (KIB + 1023) / 1024 ))
cat "$KIT/MANIFEST"
# What the device tool sends is the repository's working tree (tracked and untracked files that
# git does not ignore) plus the carried kit, 64 MiB in all.
TREE_KIB=$(git ls-files -z -co --exclude-standard | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
echo "kit: $KIT, $(find "$KIT" -type f | wc -l) files, ${MIB} MiB (limit ${LIMIT_MIB} MiB; $(( $(du -sk "$STAGE" | cut -f1) / 1024 )) MiB unpacked)"
echo "working tree that travels with it: $(( TREE_KIB / 1024 )) MiB; together $(( (KIB + TREE_KIB) / 1024 )) MiB of the device tool's 64 MiB"
if [ $(( KIB + TREE_KIB )) -gt $(( LIMIT_MIB * 1024 )) ]; then
  echo "FAIL: the kit and the working tree together exceed ${LIMIT_MIB} MiB" >&2; exit 1
fi
if [ "$KIB" -gt $(( LIMIT_MIB * 1024 )) ]; then
  echo "FAIL: the kit is larger than ${LIMIT_MIB} MiB" >&2
  du -sk "$STAGE"/* "$STAGE"/lib/* | sort -n | tail -15 >&2
  exit 1
fi
