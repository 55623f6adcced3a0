#!/usr/bin/env bash
# The runs behind docs/RESULTS.md (zoo section): every deep model on real Indian Pines with a 10%
# random split and a 10% spatially disjoint split (blocks + guard band), and on Salinas-A with 5%
# random, full paper schedules, seeds 0-4: one `bench` command (one table) per protocol.
# On a 2-core CPU machine five seeds of the heavy models' full schedules do not fit (HybridSN and
# SSRN take 2-3 hours a seed on Indian Pines here), so `--runs_for` gives them seed 0 only; the
# table's runs column says so. Light models run first, so their rows fill before the heavy ones.
# bench reads finished seeds back, so the script resumes after an interruption.
# chen is left out: 27x27x200 patches train at about 1 sample/s on one core here (a full
# 400-epoch schedule would take about 100 CPU hours); it needs a GPU.
# Usage: benchmarks/zoo_results.sh DATA_FOLDER [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/ and SalinasA/}"
out="${2:-outputs/zoo}"
python="${PYTHON:-python}"
light=(nn hu hamida he li liu boulch mou lee)
heavy=(HybridSN SSRN luo sharma)
one_seed=(HybridSN=1 SSRN=1 luo=1 sharma=1)

protocol() {  # protocol NAME : the zoo's bench command of protocol NAME
  local name="$1"
  case "$name" in
    indianpines_random10) set -- --datasets IndianPines --training_sample 0.1 ;;
    indianpines_blocks10) set -- --datasets IndianPines --training_sample 0.1 --sampling_mode blocks ;;
    salinasa_random5) set -- --datasets SalinasA --training_sample 0.05 ;;
  esac
  "$python" main.py bench "$@" --models "${light[@]}" "${heavy[@]}" --folder "$data" --runs 5 \
      --runs_for "${one_seed[@]}" --seed 0 --out "$out/$name"
}

for name in salinasa_random5 indianpines_random10 indianpines_blocks10; do
  protocol "$name"
done
