#!/usr/bin/env bash
# The runs behind docs/RESULTS.md (zoo section): every deep model on real Indian Pines with a 10%
# random split and a 10% spatially disjoint split (blocks + guard band), and on Salinas-A with 5%
# random, seeds 0-4, full paper schedules. Resumable: run it again after an interruption.
# Usage: benchmarks/zoo_results.sh DATA_FOLDER [OUT] [MODEL ...]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/ and SalinasA/}"
out="${2:-outputs/zoo}"
shift $(( $# >= 2 ? 2 : $# ))
models=("$@")
if [ "${#models[@]}" -eq 0 ]; then
  models=(nn hu hamida lee chen li he luo sharma liu boulch mou SSRN HybridSN)
fi
python="${PYTHON:-python}"
"$python" main.py bench --models "${models[@]}" --datasets IndianPines --folder "$data" \
    --training_sample 0.1 --runs 5 --seed 0 --out "$out/indianpines_random10"
"$python" main.py bench --models "${models[@]}" --datasets IndianPines --folder "$data" \
    --training_sample 0.1 --sampling_mode blocks --runs 5 --seed 0 --out "$out/indianpines_blocks10"
"$python" main.py bench --models "${models[@]}" --datasets SalinasA --folder "$data" \
    --training_sample 0.05 --runs 5 --seed 0 --out "$out/salinasa_random5"
