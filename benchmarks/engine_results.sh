#!/usr/bin/env bash
# The runs behind docs/RESULTS.md (engine section): SVM_grid, nn and hu on real Indian Pines,
# 10% random and 10% spatially disjoint (blocks + guard band) splits, seeds 0-4, plus SVM_grid
# with 30% random training (the published SVM protocol). Then the tables are collected.
# Usage: benchmarks/engine_results.sh DATA_FOLDER [OUT]   (e.g. ../shared/data outputs/results)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/}"
out="${2:-outputs/results}"
python="${PYTHON:-python}"
for model in SVM_grid hu nn; do
  "$python" main.py --model "$model" --dataset IndianPines --folder "$data" --training_sample 0.1 \
      --runs 5 --seed 0 --n_jobs 2 --out "$out"
  "$python" main.py --model "$model" --dataset IndianPines --folder "$data" --training_sample 0.1 \
      --sampling_mode blocks --runs 5 --seed 0 --n_jobs 2 --out "$out"
done
"$python" main.py --model SVM_grid --dataset IndianPines --folder "$data" --training_sample 0.3 \
    --runs 5 --seed 0 --n_jobs 2 --out "$out"
"$python" benchmarks/collect_results.py "$out"
