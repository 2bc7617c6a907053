#!/bin/bash
# Submits the whole pipeline as four chained jobs; each starts only when the one before it
# succeeded (afterok: for the array, every task). A preempted job requeues itself (exit 75) and
# its dependants keep waiting. Usage, from the folder holding job.ini:
#   bash path/to/examples/slurm/submit.sh [job.ini]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONFIG=${1:-job.ini}
mkdir -p logs

prepare=$(sbatch --parsable --export=ALL "$here/prepare.sbatch")
train=$(sbatch --parsable --export=ALL --dependency=afterok:"$prepare" "$here/train_multi_gpu.sbatch")
sample=$(sbatch --parsable --export=ALL --dependency=afterok:"$train" "$here/sample_array.sbatch")
emit=$(sbatch --parsable --export=ALL --dependency=afterok:"$sample" "$here/emit_export.sbatch")
echo "prepare $prepare -> train $train -> sample array $sample -> emit/export $emit"
