#!/bin/bash
# One task of a SLURM job array: runs the experiment command given as arguments with
# --task ID/COUNT added, so that array task ID trains the runs whose index i has
# i % COUNT == ID. Each run writes OUT/runs/<key>.json as it finishes; a task that is
# requeued, or the whole array submitted again, skips the runs already there.
#
# Edit the #SBATCH lines below for your cluster (partition, GPU, time, CPUs, log files).
#
# The recipe (the same flags in every step: they define the grid):
#
#   1. size the array: --list prints one line per run; N runs -> --array=0-(N-1)
#        python experiments/sparsity_sweep.py --data-dir DATA --device gpu --list | wc -l
#   2. submit, one task per run (here N = 64) ...
#        sbatch --array=0-63 experiments/slurm-array.sh experiments/sparsity_sweep.py --data-dir DATA --device gpu
#      ... or fewer tasks, each taking every COUNT-th run (16 tasks of 4 runs; %4: at most 4 at once)
#        sbatch --array=0-15%4 experiments/slurm-array.sh experiments/sparsity_sweep.py --data-dir DATA --device gpu
#   3. when the array is done, build the CSV, summary.json and figures from the result files
#        python experiments/sparsity_sweep.py --data-dir DATA --device gpu --collect
#      (it names any missing run and exits with status 1; submit the array again to run them:
#      finished runs are skipped)
#
# The array must count from 0 in steps of 1 (--array=0-N or 0-N%M). Run it from the
# project's folder (the results go to --out, by default results/<experiment>/ there).
# PYTHON names the interpreter (default: python3); activate your environment below.
#
#SBATCH --job-name=snip-grid
#SBATCH --partition=gpu
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out

set -euo pipefail

# source ~/venvs/snip-min/bin/activate     # your environment, if any

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" || -z "${SLURM_ARRAY_TASK_COUNT:-}" ]]; then
    echo "slurm-array.sh: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set: submit it as a job array (sbatch --array=0-N experiments/slurm-array.sh EXPERIMENT.py FLAGS)" >&2
    exit 2
fi
if [[ "${SLURM_ARRAY_TASK_STEP:-1}" != 1 || "${SLURM_ARRAY_TASK_MIN:-0}" != 0 ]]; then
    echo "slurm-array.sh: the array must count from 0 in steps of 1 (--array=0-N), not from ${SLURM_ARRAY_TASK_MIN:-0} in steps of ${SLURM_ARRAY_TASK_STEP:-1}" >&2
    exit 2
fi
if [[ $# -lt 1 ]]; then
    echo "slurm-array.sh: give the experiment command, e.g. experiments/sparsity_sweep.py --data-dir DATA --device gpu" >&2
    exit 2
fi

# The BLAS threads of this task: the CPUs SLURM gave it (NumPy reads these when it starts).
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-${OMP_NUM_THREADS:-1}}"
export OPENBLAS_NUM_THREADS="$OMP_NUM_THREADS" MKL_NUM_THREADS="$OMP_NUM_THREADS"

# The last --task on a command line wins, so this one holds.
exec "${PYTHON:-python3}" "$@" --task "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT"
