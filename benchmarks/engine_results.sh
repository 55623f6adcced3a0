#!/usr/bin/env bash
# The runs behind docs/results/classification.md (engine table): SVM_grid, hu and nn on real Indian Pines,
# seeds 0-4, with a 10% random split, a 10% spatially disjoint split (blocks + guard band), and
# SVM_grid with 30% random training (the published SVM protocol). Each line is resumable: run
# the script again after an interruption and finished runs are kept.
# Usage: benchmarks/engine_results.sh DATA_FOLDER [OUT]   (e.g. ../shared/data outputs/results)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/}"
out="${2:-outputs/results}"
python="${PYTHON:-python}"
"$python" main.py bench --models SVM_grid hu nn --datasets IndianPines --folder "$data" \
    --training_sample 0.1 --runs 5 --seed 0 --n_jobs 2 --out "$out/random10"
"$python" main.py bench --models SVM_grid hu nn --datasets IndianPines --folder "$data" \
    --training_sample 0.1 --sampling_mode blocks --runs 5 --seed 0 --n_jobs 2 --out "$out/blocks10"
"$python" main.py bench --models SVM_grid --datasets IndianPines --folder "$data" \
    --training_sample 0.3 --runs 5 --seed 0 --n_jobs 2 --out "$out/random30"
