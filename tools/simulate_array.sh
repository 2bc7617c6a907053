#!/usr/bin/env bash
# What a SLURM sampling array does, on one machine: the stages before `sample` once, then N
# `augment sample --sample.shard K/N` processes at the same time in the same work directory (as
# the N array tasks would run), then `augment emit` to merge them into the output. Use it to try
# an array job's configuration before submitting it, or to check that sharding changes nothing.
#
#   tools/simulate_array.sh N [augment options...]      e.g.  tools/simulate_array.sh 4 --config job.ini
#
# AUGMENT (default: `augment` on PATH) names the binary; LOG_DIR (default: a new temporary
# folder) receives one log per shard. Exits with the first failing shard's code (75 if a shard
# was stopped by SIGTERM/SIGUSR1: rerun the same command to continue).
set -uo pipefail

if [ $# -lt 1 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N [augment options...]   (N: number of shards, >= 1)" >&2
  exit 64
fi
n=$1
shift
augment=${AUGMENT:-augment}
log_dir=${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/augment-array.XXXXXX")}
mkdir -p "$log_dir"

# The array's dependency: everything before sampling, in one process (a no-op when up to date).
"$augment" train "$@" || exit $?

pids=()
for ((k = 0; k < n; k++)); do
  # Launcher variables of an enclosing job must not make the shards look like ranks.
  env -u RANK -u WORLD_SIZE -u SLURM_PROCID -u SLURM_NTASKS -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT \
    "$augment" sample --sample.shard "$k/$n" "$@" >"$log_dir/shard-$k.log" 2>&1 &
  pids+=($!)
done
# Forward a stop request to every shard, as SLURM's --signal does to every array task.
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
trap 'kill -USR1 "${pids[@]}" 2>/dev/null' USR1

status=0
for ((k = 0; k < n; k++)); do
  while true; do
    wait "${pids[$k]}"
    rc=$?
    # wait returns > 128 when a trapped signal interrupts it; the shard is still running.
    if [ "$rc" -gt 128 ] && kill -0 "${pids[$k]}" 2>/dev/null; then continue; fi
    break
  done
  if [ "$rc" -ne 0 ]; then
    echo "shard $k/$n failed with exit code $rc; its log: $log_dir/shard-$k.log" >&2
    tail -n 5 "$log_dir/shard-$k.log" >&2
    [ "$status" -eq 0 ] && status=$rc
  fi
done
[ "$status" -eq 0 ] || exit "$status"
echo "all $n shards done (logs in $log_dir); merging" >&2

"$augment" emit "$@"
