#!/usr/bin/env bash
# The runs behind docs/RESULTS.md (zoo section): every deep model on real Indian Pines with a 10%
# random split and a 10% spatially disjoint split (blocks + guard band), and on Salinas-A with 5%
# random, full paper schedules. On a 2-core CPU machine five seeds of every model do not fit, so
# the protocol runs in two tiers, each one `bench` command per protocol:
#   tier 1: every model, seed 0 (heavy models: this is their only run here);
#   tier 2: the light models, seeds 0-4 (seed 0 is read back from tier 1, not run again).
# Each bench command rewrites its protocol's bench.md/.csv/.json; give a command again to get its
# table back (finished runs are read back, not repeated).
# Both tiers write into the same folders; bench reads finished seeds back, so the script resumes
# after an interruption and a later tier never repeats an earlier one's work.
# chen is left out: 27x27x200 patches train at about 1 sample/s on one core here (a full
# 400-epoch schedule would take about 100 CPU hours); it needs a GPU.
# Usage: benchmarks/zoo_results.sh DATA_FOLDER [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/ and SalinasA/}"
out="${2:-outputs/zoo}"
python="${PYTHON:-python}"
heavy=(HybridSN SSRN luo sharma)
light=(nn hu hamida he li liu boulch mou lee)

protocol() {  # protocol NAME RUNS MODEL... : one bench command of the zoo protocol NAME
  local name="$1" runs="$2"; shift 2
  case "$name" in
    indianpines_random10) set -- --datasets IndianPines --training_sample 0.1 --models "$@" ;;
    indianpines_blocks10) set -- --datasets IndianPines --training_sample 0.1 --sampling_mode blocks --models "$@" ;;
    salinasa_random5) set -- --datasets SalinasA --training_sample 0.05 --models "$@" ;;
  esac
  "$python" main.py bench "$@" --folder "$data" --runs "$runs" --seed 0 --out "$out/$name"
}

# Light models first (tier 1, then their five seeds), heavy models last: the hours that HybridSN
# and SSRN take on one core come after every table that the light models fill.
for name in indianpines_random10 salinasa_random5 indianpines_blocks10; do
  protocol "$name" 1 "${light[@]}"
done
for name in salinasa_random5 indianpines_random10 indianpines_blocks10; do
  protocol "$name" 5 "${light[@]}"
done
for name in indianpines_random10 salinasa_random5 indianpines_blocks10; do
  protocol "$name" 1 "${light[@]}" "${heavy[@]}"
done
