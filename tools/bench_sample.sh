#!/usr/bin/env bash
# End-to-end sampling throughput of `augment sample` (denoiser, sampler, guidance, PNG files and
# journal) on the reference U-Net (32x32x3, channels 64, multipliers 1,2,2, 2 blocks, attention
# at 16; the weights after one training step: speed does not depend on them).
#
#   tools/bench_sample.sh [augment options...]     e.g.  --sample.sampler dpmpp2m --sample.steps 20
#
# Defaults: DDIM 50 steps, cfg with guidance 2 (two denoiser passes per step, in one batch), 8
# images per class for 10 classes, all cores. BUILD (default: build) holds the binaries; WORK
# (default: a new temporary folder) the run. Prints the measured images/s as JSON.
set -euo pipefail
build=${BUILD:-build}
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/augment-bench-sample.XXXXXX")}
mkdir -p "$work"
# 10 classes of 28x28 Fashion-MNIST images (Debian's dataset-fashion-mnist), cached at 32x32 RGB.
"$build/make_fashion_mnist" --out "$work/data" --counts 64,64,64,64,64,64,64,64,64,64 >/dev/null
# The defaults as a config file: options given on the command line win over it.
cat > "$work/bench.ini" <<'INI'
[cache]
resolution = 32
channels = 3
[classifier]
epochs = 1
[train]
steps = 1
batch_size = 8
channels = 64
channel_mult = 1,2,2
blocks = 2
attention = 16
conditioning = cfg
[sample]
policy = synthetic=8
sampler = ddim
steps = 50
guidance = 2
INI
common=(--config "$work/bench.ini" --input "$work/data" --work "$work/run" --quiet)
"$build/augment" train "${common[@]}" "$@"
start=$(date +%s.%N)
"$build/augment" sample --only sample "${common[@]}" "$@"
end=$(date +%s.%N)
images=$(find "$work/run/sample/images" -name '*.png' | wc -l)
awk -v n="$images" -v s="$start" -v e="$end" -v c="$(nproc)" \
  'BEGIN { printf "{\"images\": %d, \"seconds\": %.1f, \"images_per_second\": %.3f, \"cores\": %d}\n", n, e - s, n / (e - s), c }'
