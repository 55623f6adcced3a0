#!/usr/bin/env bash
# The runs behind docs/results/generators.md: for each scene and label budget and each
# seed 0-4, a generator is trained on that seed's training pixels only (`main.py generate`, which
# also writes the realism report: TSTR/TRTR, two-sample test, spectral angles); then an MLP (nn)
# and a 1D CNN (hu) are trained on real pixels only and on real + synthetic spectra (ratio 1,
# each seed taking its own generator's file through the {seed} template), and
# benchmarks/augmentation_gain.py writes the gain table; benchmarks/realism_summary.py gathers the
# seeds' realism reports into one table (mean ± std).
# Usage: benchmarks/generator_results.sh DATA_FOLDER [OUT] [GENERATOR[:SEEDS] ...]   (default: cvae cgan)
#   GENERATOR:N runs that generator for seeds 0..N-1 only (default 5): cgan's full schedule takes
#   about 100 minutes a seed on one CPU core here, so `cgan:1` runs its seed 0 in every setting;
#   benchmarks/augmentation_gain.py then compares it with the real-only run of the same seed.
# Resumable: give the same command again (a larger N later adds the missing seeds).
# Settings (environment): CUDA=K trains on GPU K (default -1, the CPU); JOBS=N trains N generator
# seeds at once (default 1), e.g. on a GPU machine with many cores, each with cores / N threads
# unless OMP_NUM_THREADS is set (benchmarks/threads_per_job.sh): on this 2-core machine JOBS=2 trains
# two seeds on one thread each. All settings' missing seeds form one queue, so no core idles while
# a setting's last seed trains; the classifiers' benches follow, one at a time with torch's default.
# SETTINGS="ip_5pc sa_5pc" runs only those settings (default: ip_5pc ip_10px sa_5pc sa_10px).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding IndianPines/ and SalinasA/}"
out="${2:-outputs/generators}"
shift $(( $# >= 2 ? 2 : $# ))
generators=("$@")
[ "${#generators[@]}" -eq 0 ] && generators=(cvae cgan)
python="${PYTHON:-python}"
cuda="${CUDA:--1}"
jobs="${JOBS:-1}"
# shellcheck source=benchmarks/threads_per_job.sh
source benchmarks/threads_per_job.sh
all_settings=("IndianPines 0.05 ip_5pc" "IndianPines 10 ip_10px" "SalinasA 0.05 sa_5pc" "SalinasA 10 sa_10px")
settings=()
for tag in ${SETTINGS:-ip_5pc ip_10px sa_5pc sa_10px}; do
  found=""
  for setting in "${all_settings[@]}"; do [ "${setting##* }" = "$tag" ] && found="$setting"; done
  if [ -z "$found" ]; then
    echo "error: SETTINGS names '$tag'; give tags among: ip_5pc ip_10px sa_5pc sa_10px" >&2
    exit 2
  fi
  settings+=("$found")
done

seed_count() {  # seed_count GENERATOR[:N]: N, or 5
  [ "$1" != "${1%%:*}" ] && echo "${1#*:}" || echo 5
}

generate_seed() {  # generate_seed SCENE BUDGET TAG GENERATOR SEED: train that generator, write its spectra
  "$python" main.py generate --model "$4" --dataset "$1" --folder "$data" --training_sample "$2" --seed "$5" \
      --samples_per_class 1000 --cuda "$cuda" --runs_dir "$out/$3/$4/runs" --out "$out/$3/$4/seed$5.h5"
}
export -f generate_seed
export python data cuda out

# 1. every missing generator seed of every setting, JOBS at a time
for setting in "${settings[@]}"; do
  read -r scene budget tag <<< "$setting"
  for spec in "${generators[@]}"; do
    for seed in $(seq 0 $(( $(seed_count "$spec") - 1 ))); do
      [ -f "$out/$tag/${spec%%:*}/seed$seed.h5" ] || echo "$scene $budget $tag ${spec%%:*} $seed"
    done
  done
done | env $(threads_per_job "$jobs") xargs -r -n 5 -P "$jobs" bash -c 'generate_seed "$@"' generate_seed

# 2. per setting: the classifiers on real pixels only, then on real + each generator's spectra, and the gain
for setting in "${settings[@]}"; do
  read -r scene budget tag <<< "$setting"
  "$python" main.py bench --models nn hu --datasets "$scene" --folder "$data" --training_sample "$budget" \
      --runs 5 --seed 0 --cuda "$cuda" --out "$out/$tag/real"
  for spec in "${generators[@]}"; do
    generator="${spec%%:*}"
    config="$out/$tag/$generator/augment.yaml"
    printf 'synthetic: %s\nsynthetic_ratio: 1.0\n' "$out/$tag/$generator/seed{seed}.h5" > "$config"
    "$python" main.py bench --models nn hu --datasets "$scene" --folder "$data" --training_sample "$budget" \
        --runs "$(seed_count "$spec")" --seed 0 --cuda "$cuda" --config "$config" --out "$out/$tag/$generator/augmented"
    "$python" benchmarks/augmentation_gain.py "$out/$tag/real/bench.json" \
        "$out/$tag/$generator/augmented/bench.json" --out "$out/$tag/$generator"
  done
done

# 3. realism over seeds: one row per setting and generator (TSTR/TRTR, two-sample test, angle ratio)
folders=()
for setting in "${settings[@]}"; do
  read -r _ _ tag <<< "$setting"
  for spec in "${generators[@]}"; do folders+=("$out/$tag/${spec%%:*}"); done
done
"$python" benchmarks/realism_summary.py "${folders[@]}" --out "$out/realism_summary"
