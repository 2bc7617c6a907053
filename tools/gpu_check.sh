#!/usr/bin/env bash
# augment on a GPU machine that has PyTorch with CUDA but no package access: build against that
# PyTorch's LibTorch, run the test suite (the "cuda:" device tests included), time the denoiser
# against the same model in that PyTorch, run the bundled example end to end with a short
# training budget, and gather every figure in one results file, printed at the end.
#
#   tools/gpu_check.sh [PHASE...]        phases: inventory build test bench example (default: all)
#   tools/gpu_check.sh prepare           on a machine with the Debian packages: writes the example
#                                        input (build-gpu-carry/example-input) for a GPU machine
#                                        without the dataset-fashion-mnist package
#
# Environment: GPU_CHECK_DEVICE (cuda; cpu rehearses every phase on a machine without a GPU, with
# small batches), GPU_CHECK_BUILD (build folder; build-gpu), GPU_CHECK_RESULTS (results file;
# BUILD/results.txt), GPU_CHECK_MINUTES
# (example's training budget; 3), GPU_CHECK_PYTHON (the python3 that has torch), GPU_CHECK_SUITE
# (0: the test phase runs only the cuda: cases), TORCH_CUDA_ARCH_LIST.
# Each phase fits in a few minutes on a 16-core machine; run them as separate calls when one
# command may not take more than 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
device="${GPU_CHECK_DEVICE:-cuda}"
build="${GPU_CHECK_BUILD:-$root/build-gpu}"
results="${GPU_CHECK_RESULTS:-$build/results.txt}"
minutes="${GPU_CHECK_MINUTES:-3}"
python="${GPU_CHECK_PYTHON:-$(command -v python3)}"
jobs=$(nproc)
mkdir -p "$build"
phases=("$@")
[ "${#phases[@]}" -gt 0 ] || phases=(inventory build test bench example)

record() { printf '%s\n' "$*" | tee -a "$results"; }
section() { record ""; record "== $1 ($(date -u +%FT%TZ))"; }
have() { command -v "$1" > /dev/null 2>&1; }

if [ "${phases[0]}" = prepare ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null && cmake --build build --target make_fashion_mnist > /dev/null
  rm -rf build-gpu-carry/example-input
  mkdir -p build-gpu-carry
  ./build/make_fashion_mnist --out build-gpu-carry/example-input --counts 2000,1000,500,250,125
  du -sh build-gpu-carry/example-input
  exit
fi

torch_root() { "$python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2> /dev/null; }

inventory() {
  section "inventory"
  record "host: $(hostname), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  record "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  if have nvidia-smi; then
    record "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2> /dev/null | head -1)"
  else
    record "gpu: nvidia-smi not found"
  fi
  record "python: $python ($("$python" --version 2>&1))"
  record "torch: $("$python" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"
  record "torch cmake prefix: $("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>&1 | tail -1)"
  for tool in nvcc cmake ninja g++ c++ pkg-config; do
    local where
    where=$(command -v "$tool" || true)
    [ -z "$where" ] && [ "$tool" = nvcc ] && [ -x /usr/local/cuda/bin/nvcc ] && where=/usr/local/cuda/bin/nvcc
    record "$tool: ${where:-missing}${where:+ ($("$where" --version 2>&1 | grep -m1 -E '[0-9]+\.[0-9]+' | head -c 80))}"
  done
  # The libraries augment builds with (headers found on the default include path or via pkg-config).
  local -A header=([OpenCV]=opencv4/opencv2/core.hpp [HDF5]=hdf5/serial/hdf5.h [TBB]=tbb/tbb.h
    [Boost.Program_options]=boost/program_options.hpp [fmt]=fmt/format.h [nlohmann-json]=nlohmann/json.hpp
    [libjpeg]=jpeglib.h [libpng]=png.h [xxhash]=xxhash.h [libdeflate]=libdeflate.h [OpenSSL]=openssl/sha.h [doctest]=doctest/doctest.h)
  for lib in OpenCV HDF5 TBB Boost.Program_options fmt nlohmann-json libjpeg libpng xxhash libdeflate OpenSSL doctest; do
    local h=${header[$lib]} found=missing
    for dir in /usr/include /usr/local/include /opt/conda/include; do
      [ -e "$dir/$h" ] && found="$dir/$h" && break
      [ "$lib" = HDF5 ] && [ -e "$dir/hdf5.h" ] && found="$dir/hdf5.h" && break
    done
    record "$lib: $found"
  done
}

build_phase() {
  section "build"
  local torch
  torch=$(torch_root)
  if [ -z "$torch" ]; then record "build: FAILED ($python cannot import torch; set GPU_CHECK_PYTHON)"; return 1; fi
  local nvcc_arg=()
  [ -x /usr/local/cuda/bin/nvcc ] && ! have nvcc && nvcc_arg=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  local generator=()
  have ninja && generator=(-G Ninja)
  local t0=$SECONDS
  if ! cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$torch/share/cmake;$torch" \
    "${nvcc_arg[@]}" > "$build/configure.log" 2>&1; then
    record "configure: FAILED, last lines of $build/configure.log:"
    tail -15 "$build/configure.log" | tee -a "$results"
    return 1
  fi
  grep -E "CUDA kernels|NCCL backend|torch PCH" "$build/configure.log" | sed 's/^-- /configure: /' | tee -a "$results"
  if ! cmake --build "$build" -j "$jobs" > "$build/build.log" 2>&1; then
    record "build: FAILED, first errors in $build/build.log:"
    grep -m 10 -B2 -A3 "error" "$build/build.log" | tee -a "$results"
    return 1
  fi
  record "build: ok in $((SECONDS - t0)) s on $jobs cores"
}

test_phase() {
  section "test"
  [ -x "$build/augment_tests" ] || { record "test: no build ($build/augment_tests missing)"; return 1; }
  local t0=$SECONDS
  # The device tests first, so their lines are in the results even if the suite runs long.
  "$build/augment_tests" --test-case='cuda:*' --success=false > "$build/device-tests.log" 2>&1
  record "device tests (cuda:*): exit $?; $(grep -E '^\[doctest\] (test cases|assertions)' "$build/device-tests.log" | tr '\n' ' ')"
  grep -h "MESSAGE\|no CUDA" "$build/device-tests.log" | sort -u | head -3 | tee -a "$results"
  if [ "${GPU_CHECK_SUITE:-1}" = 0 ]; then record "suite: not run (GPU_CHECK_SUITE=0)"; return 0; fi
  ctest --test-dir "$build" -j "$jobs" --timeout 600 > "$build/ctest.log" 2>&1
  local rc=$?
  record "suite: exit $rc in $((SECONDS - t0)) s; $(grep -E 'tests passed|tests failed' "$build/ctest.log")"
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess)' "$build/ctest.log" | head -20 | tee -a "$results"
}

bench_phase() {
  section "bench (ref32, cfg)"
  [ -x "$build/bench_unet" ] || { record "bench: no build"; return 1; }
  local batches=(64 256) iters=5
  [ "$device" = cpu ] && batches=(8) && iters=1
  for batch in "${batches[@]}"; do
    local ours="$build/bench_unet.$batch.json" theirs="$build/bench_torch.$batch.json"
    "$build/bench_unet" --config ref32 --device "$device" --precisions fp32,bf16 --formats contiguous,channels_last \
      --batch "$batch" --iters "$iters" > "$ours" 2> "$build/bench_unet.$batch.log" || { record "bench_unet batch $batch: FAILED"; tail -5 "$build/bench_unet.$batch.log" | tee -a "$results"; }
    for layout in contiguous channels_last; do
      local flag=()
      [ "$layout" = channels_last ] && flag=(--channels-last)
      "$python" tools/bench_unet_torch.py --config ref32 --device "$device" --precisions fp32,bf16 "${flag[@]}" \
        --batch "$batch" --iters "$iters" > "$theirs.$layout" 2> "$build/bench_torch.$batch.$layout.log" ||
        { record "PyTorch eager batch $batch $layout: FAILED"; tail -5 "$build/bench_torch.$batch.$layout.log" | tee -a "$results"; }
    done
    "$python" - "$ours" "$theirs.contiguous" "$theirs.channels_last" "$batch" <<'EOF' | tee -a "$results"
import json, sys
def rows(path):
    try:
        doc = json.load(open(path))
    except Exception:
        return {}, []
    return doc, [r for r in doc.get("results", []) if isinstance(r, dict)]
ours, mine = rows(sys.argv[1])
theirs, ref = rows(sys.argv[2])
ref = ref + rows(sys.argv[3])[1]
batch = sys.argv[4]
print(f"batch {batch}: augment on {ours.get('device', '?')}, PyTorch {theirs.get('torch_version', '?')} eager on "
      f"{theirs.get('device_name', theirs.get('device', '?'))}; parameters {ours.get('parameters')} vs {theirs.get('parameters')}")
for precision in ("fp32", "bf16"):
    for key in ("train_images_per_s", "denoise_images_per_s"):
        def best(rs):
            vals = [(r.get(key) or 0, r.get("memory_format", "?")) for r in rs if r.get("precision") == precision and "error" not in r]
            return max(vals, default=(0, "-"))
        (a, fa), (b, fb) = best(mine), best(ref)
        ratio = f"{a / b:.2f}x" if b else "n/a"
        print(f"  {precision} {key}: augment {a:.1f} ({fa}), PyTorch eager {b:.1f} ({fb}) -> {ratio}")
EOF
  done
}

example_phase() {
  section "example (examples/fashion_mnist.ini, $minutes min of training)"
  [ -x "$build/augment" ] || { record "example: no build"; return 1; }
  local input="$root/build-gpu-carry/example-input" work="$build/example/work" out="$build/example/augmented"
  if [ ! -d "$input" ]; then
    input="$build/example/input"
    if [ ! -d "$input" ]; then
      local counts=2000,1000,500,250,125
      [ "$device" = cpu ] && counts=200,100,50,25,12
      "$build/make_fashion_mnist" --out "$input" --counts "$counts" > /dev/null 2>&1 || {
        record "example: no input (no dataset-fashion-mnist here: run 'tools/gpu_check.sh prepare' where it is and carry build-gpu-carry)"
        return 1
      }
    fi
  fi
  rm -rf "$build/example/work" "$out" "${out}_report" "${out}_hdf5"
  local t0=$SECONDS extra=()
  [ "$device" = cpu ] && extra=(--classifier.epochs 2 --sample.policy synthetic=20 --evaluate.seeds 1 --evaluate.downstream_epochs 1)
  "$build/augment" run --config examples/fashion_mnist.ini --device "$device" --input "$input" --work "$work" --output "$out" \
    --train.minutes "$minutes" "${extra[@]}" > "$build/example.log" 2>&1
  local rc=$?
  record "augment run: exit $rc in $((SECONDS - t0)) s (log: $build/example.log)"
  grep -E "precision auto|^train: .*steps|generated [0-9]+ images" "$build/example.log" | head -6 | tee -a "$results"
  "$python" - "$work/evaluate/metrics.json" <<'EOF' | tee -a "$results"
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"metrics: not readable ({e})"); sys.exit(0)
def show(prefix, v, depth=0):
    if isinstance(v, dict) and depth < 2:
        for k, x in v.items():
            show(f"{prefix}.{k}" if prefix else k, x, depth + 1)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        print(f"  {prefix}: {v:.4g}")
show("", m)
EOF
}

for phase in "${phases[@]}"; do
  case "$phase" in
    inventory) inventory ;;
    build) build_phase ;;
    test) test_phase ;;
    bench) bench_phase ;;
    example) example_phase ;;
    *) echo "unknown phase $phase (inventory build test bench example, or prepare)" >&2; exit 64 ;;
  esac
done
echo
echo "---- $results"
cat "$results"
