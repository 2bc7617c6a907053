#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs what is missing, builds, then
#   example  builds the unbalanced Fashion-MNIST folder and runs the whole augment pipeline on it
#   test     runs the test suite; then, where the CUDA toolkit is installed, the torch2 build and
#            the same suite against it
#   build    only builds
#   torch2   builds against the LibTorch 2.x of PyPI's torch wheel (CUDA enabled) in build-torch2
#            and runs the test suite there; the wheel goes into a virtual environment under
#            ~/.cache/augment (AUGMENT_TORCH_VERSION, default 2.15.0), downloaded once per machine
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
case "$mode" in example|test|build|torch2) ;; *) echo "usage: $0 example|test|build|torch2" >&2; exit 64 ;; esac

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
mapfile -t packages < <(grep -v '^\s*#' tools/debian-packages.txt | sed '/^\s*$/d')
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# A compile cache shared by every clone on this machine (ccache, under ~/.cache/augment): a
# rebuild from a fresh clone costs minutes instead of a quarter of an hour per LibTorch flavour.
# The sloppiness lets ccache reuse results compiled with the torch precompiled header; the base
# directory makes paths inside the clone relative, so another clone hits the same entries.
launcher=()
if command -v ccache > /dev/null 2>&1 && [ "${AUGMENT_CCACHE:-1}" != 0 ]; then
  export CCACHE_DIR="${CCACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/augment/ccache}"
  export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi

# The CUDA toolkit the torch wheel's CMake files need (nvcc); none on a plain Debian machine.
cuda_toolkit() { command -v nvcc > /dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; }

torch2_stamp="${XDG_CACHE_HOME:-$HOME/.cache}/augment/torch2-build-seconds"
torch2() {
  version="${AUGMENT_TORCH_VERSION:-2.15.0}"
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/augment/torch-$version"
  if ! "$venv/bin/python3" -c 'import torch' 2>/dev/null; then
    echo "installing torch $version from PyPI into $venv (once per machine; about 5 GB)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "torch==$version"
  fi
  # The wheel's CMake files, and its root so that its libraries are found before any system LibTorch.
  torch_root=$("$venv/bin/python3" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
  cmake -S . -B build-torch2 -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "-DCMAKE_PREFIX_PATH=$torch_root/share/cmake;$torch_root"
  local start=$SECONDS
  cmake --build build-torch2 -j "$(nproc)"
  # What this flavour's build took on this machine, for the test mode's time estimate.
  echo $((SECONDS - start)) > "$torch2_stamp"
  PATH="/usr/bin:$PATH" ctest --test-dir build-torch2 --output-on-failure -j 2
}

if [ "$mode" = torch2 ]; then
  cuda_toolkit || { echo "torch2: the CUDA toolkit (nvcc) is needed to configure against the CUDA wheel" >&2; exit 69; }
  torch2
  exit
fi

# The test suite (CI) builds with warnings as errors; the LibTorch 2.x flavour does not, as the
# wheel's headers are newer than the code is checked against on every machine.
werror=()
[ "$mode" = test ] && werror=(-DAUGMENT_WERROR=ON)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "${werror[@]}"
cmake --build build -j "$(nproc)"
build_seconds=$SECONDS

case "$mode" in
  example)
    mkdir -p build/example
    ./build/make_fashion_mnist --out build/example/fashion-mnist-unbalanced --counts 2000,1000,500,250,125
    # The whole pipeline; the augmented folder (real + synthetic, manifests) lands in
    # build/example/augmented, the report in build/example/augmented_report, the HDF5 shards in
    # build/example/augmented_hdf5.
    ./build/augment run --config examples/fashion_mnist.ini \
      --input build/example/fashion-mnist-unbalanced --work build/example/work --output build/example/augmented "${@:2}"
    # The same options as the run, or status would call the stages they change stale.
    ./build/augment status --config examples/fashion_mnist.ini \
      --input build/example/fashion-mnist-unbalanced --work build/example/work --output build/example/augmented "${@:2}"
    ;;
  test)
    # Python in tests only: proves downstream tools (h5py, PIL) read what augment writes.
    PATH="/usr/bin:$PATH" ctest --test-dir build --output-on-failure -j 2
    suite_seconds=$((SECONDS - build_seconds))
    # Then the same suite against LibTorch 2.x (CUDA build), where the CUDA toolkit is installed
    # and it fits the time budget (AUGMENT_TEST_MINUTES, default 45: CI's limit). Its suite takes
    # about 1.25 times the Debian one. Its build time is what its last build on this machine took
    # (about 1.7 times the Debian build, as a warm cache is), or 35 minutes where it has never been
    # built here: the two flavours share few compile-cache entries, so a warm Debian build says
    # nothing about it, and a cold one (25-35 minutes on 2 cores) would run past CI's limit.
    torch2_build=2100
    [ -s "$torch2_stamp" ] && torch2_build=$(cat "$torch2_stamp")
    [ "$torch2_build" -lt $((build_seconds * 17 / 10)) ] && torch2_build=$((build_seconds * 17 / 10))
    estimate=$((torch2_build + suite_seconds * 5 / 4))
    [ -x "${XDG_CACHE_HOME:-$HOME/.cache}/augment/torch-${AUGMENT_TORCH_VERSION:-2.15.0}/bin/python3" ] || estimate=$((estimate + 300))
    budget=$((${AUGMENT_TEST_MINUTES:-45} * 60))
    if ! cuda_toolkit; then
      echo "test: LibTorch 2.x build skipped: no CUDA toolkit (nvcc) on this machine"
    elif [ $((SECONDS + estimate)) -gt "$budget" ]; then
      echo "test: LibTorch 2.x build skipped: $((SECONDS / 60)) min so far and about $((estimate / 60)) min more would exceed" \
        "AUGMENT_TEST_MINUTES=${AUGMENT_TEST_MINUTES:-45} (its compile cache is cold); run 'bash tools/bootstrap.sh torch2'"
    else
      torch2
    fi
    ;;
esac
