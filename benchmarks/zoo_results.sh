#!/usr/bin/env bash
# The runs behind docs/results/classification.md (zoo tables): every deep model on real Indian Pines with a 10%
# random split and a 10% spatially disjoint split (blocks + guard band), and on Salinas-A with 5%
# random, full paper schedules, seeds 0-4: one `bench` command (one table) per protocol.
#
# Usage: benchmarks/zoo_results.sh DATA_FOLDER [OUT]
# Settings (environment):
#   HEAVY_RUNS=N  seeds of the heavy models (default 1: on a 2-core CPU machine HybridSN and SSRN take
#                 2-3 hours a seed on Indian Pines, so five seeds do not fit; the runs column says so)
#   CUDA=K        train on GPU K (default -1, the CPU). With a GPU, chen joins the zoo: on one CPU core
#                 its 27x27x200 patches train at about 1 sample/s (its 400 epochs: about 100 hours)
#   JOBS=N        run N (protocol, model, seed) bench processes at once (default 1, one after the
#                 other); they share the experiment folders, and the tables are then gathered from
#                 the finished seeds (bench --finished_only). Seed 0 of every pair runs first, so an
#                 interrupted run has one seed of every model in every protocol before more seeds;
#                 each seed's log is $OUT/logs/PROTOCOL-MODEL-seedN.log; each process gets cores / N
#                 threads unless OMP_NUM_THREADS is set (benchmarks/threads_per_job.sh)
#   TABLE_ONLY=1  train nothing: rebuild the three tables from the seeds finished so far
# bench reads finished seeds back, so the script resumes after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/ and SalinasA/}"
out="${2:-outputs/zoo}"
python="${PYTHON:-python}"
cuda="${CUDA:--1}"
jobs="${JOBS:-1}"
heavy_runs="${HEAVY_RUNS:-1}"
# shellcheck source=benchmarks/threads_per_job.sh
source benchmarks/threads_per_job.sh
light=(nn hu hamida he li liu boulch mou lee)
heavy=(HybridSN SSRN luo sharma)
{ [ "$cuda" -ge 0 ] || [ -n "${TABLE_ONLY:-}" ]; } && heavy+=(chen)
protocols=(salinasa_random5 indianpines_random10 indianpines_blocks10)

protocol_args() {  # the scene and split of protocol $1
  case "$1" in
    indianpines_random10) echo --datasets IndianPines --training_sample 0.1 ;;
    indianpines_blocks10) echo --datasets IndianPines --training_sample 0.1 --sampling_mode blocks ;;
    salinasa_random5) echo --datasets SalinasA --training_sample 0.05 ;;
  esac
}

table() {  # table PROTOCOL [bench options]: the zoo's bench command of that protocol
  local name="$1"; shift
  local runs_for=()
  for model in "${heavy[@]}"; do runs_for+=("$model=$heavy_runs"); done
  # shellcheck disable=SC2046
  "$python" main.py bench $(protocol_args "$name") --models "${light[@]}" "${heavy[@]}" --folder "$data" \
      --runs 5 --runs_for "${runs_for[@]}" --seed 0 --cuda "$cuda" --out "$out/$name" "$@"
}

one_seed() {  # one_seed PROTOCOL MODEL SEED: a single run, into the same experiment folder
  mkdir -p "$out/logs"
  # shellcheck disable=SC2046
  "$python" main.py bench $(protocol_args "$1") --models "$2" --folder "$data" --runs 1 --seed "$3" \
      --cuda "$cuda" --out "$out/$1" > "$out/logs/$1-$2-seed$3.log" 2>&1
}

if [ -n "${TABLE_ONLY:-}" ]; then
  for name in "${protocols[@]}"; do table "$name" --finished_only; done
  exit 0
fi
# seed 0 of every pair first (long runs first), then the light models' seeds, then the heavy ones':
# an interrupted run has the one-seed tier of every protocol before any five-seed tier
queue() {
  for name in "${protocols[@]}"; do for model in "${heavy[@]}" "${light[@]}"; do echo "$name $model 0"; done; done
  for seed in 1 2 3 4; do for name in "${protocols[@]}"; do for model in "${light[@]}"; do
    echo "$name $model $seed"; done; done; done
  for seed in $(seq 1 $((heavy_runs - 1))); do for name in "${protocols[@]}"; do for model in "${heavy[@]}"; do
    echo "$name $model $seed"; done; done; done
}
export -f one_seed protocol_args
export python data out cuda
# every job writes into $out/$name (its partial table there is rewritten by the last step)
# shellcheck disable=SC2046
queue | env $(threads_per_job "$jobs") xargs -P "$jobs" -L 1 \
    bash -c 'one_seed "$0" "$1" "$2" || echo "failed: $0 $1 seed $2" >&2'
if [ "$jobs" -gt 1 ]; then
  for name in "${protocols[@]}"; do table "$name" --finished_only; done
else  # one job: the protocol's own command, which also retries any seed that failed above
  for name in "${protocols[@]}"; do table "$name"; done
fi
