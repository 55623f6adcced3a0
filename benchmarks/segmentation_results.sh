#!/usr/bin/env bash
# The runs behind docs/results/segmentation.md, scaled to a 2-core CPU:
# networks at 1/8 of SegNet's width (model_args width=0.125), Adam 1e-3, batch 10, and a few
# thousand random crops in all, instead of the paper's full-width SegNet, SGD and 500,000 crops of
# 256x256 (about 20 hours per epoch here). These are CPU-scaled comparisons under one protocol,
# not reproductions of the published numbers.
# Usage: benchmarks/segmentation_results.sh DATA_FOLDER [OUT] [GROUP ...]
#   groups: synthetic (fusion on the synthetic aerial scene), crops (SegNet on the Vaihingen and
#   Potsdam crops, vehicle extraction), spacenet (distance-transform multitask against SegNet),
#   twosource (fusion on Sentinel-2 + DEM and on Indian Pines as two sensors), vehicles (rare-class
#   crop sampling for Vaihingen's cars; vehicle extraction by the synthetic group's models, which it
#   needs), spacenet_long (segnet against segnet_dt at 60 epochs, seeds 0-2).
#   Default: synthetic crops spacenet twosource.
# Resumable: finished runs are read back (--reuse_finished) when the same command is given again.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:?give the folder holding aerial/ and IndianPines/}"
out="${2:-outputs/segmentation}"
shift $(( $# >= 2 ? 2 : $# ))
groups=("$@")
[ "${#groups[@]}" -eq 0 ] && groups=(synthetic crops spacenet twosource)
python="${PYTHON:-python}"
cpu=(--optimizer adam --lr 0.001 --batch_size 10 --model_args width=0.125 --seed 0 --folder "$data" --reuse_finished)

segment() { "$python" main.py segment "${cpu[@]}" "$@"; }

synthetic_model() {  # synthetic_model MODEL SOURCE... : the synthetic group's seed-0 checkpoint of that model
  local model="$1"; shift
  for config in "$out"/synthetic/SyntheticAerial_"$model"_*/seed0/config.yaml; do
    if "$python" -c 'import sys, yaml; sys.exit(yaml.safe_load(open(sys.argv[1]))["inputs"] != sys.argv[2:])' \
        "$config" "$@"; then echo "${config%config.yaml}model.pt"; return; fi
  done
  echo "no synthetic-group run of $model on $*: run the synthetic group first" >&2; exit 2
}

for group in "${groups[@]}"; do
  case "$group" in
    synthetic)  # 4 tiles of 256x256 (3 train, 1 test); height decides roofs against roads
      for model in "segnet --sources image" "segnet --sources image ndsm" "fusenet --sources image ndsm" \
                   "vfusenet --sources image ndsm" "segnet_rc --sources image ndsm"; do
        # shellcheck disable=SC2086
        segment --dataset SyntheticAerial --model $model --crop 64 --epoch 20 --epoch_samples 500 \
            --out "$out/synthetic"
      done ;;
    crops)  # 512x512 crops: Vaihingen trains on rows 171-512, tests on rows 0-171; Potsdam trains on rows 0-341
      segment --dataset VaihingenCrop --model segnet --crop 128 --epoch 20 --epoch_samples 250 --detect car \
          --out "$out/crops"
      segment --dataset PotsdamCrop --model segnet --crop 128 --epoch 20 --epoch_samples 250 --detect car \
          --out "$out/crops"
      # cars are 1-2% of the pixels: inverse median-frequency class weights, twice the crops
      segment --dataset VaihingenCrop --model segnet --crop 128 --epoch 40 --epoch_samples 250 --class_balancing \
          --detect car --out "$out/crops" ;;
    spacenet)  # 900x900 pan tile: train columns 0-600, test columns 600-900
      for model in segnet segnet_dt; do  # unweighted, then with class weights (buildings are 4% of the pixels)
        segment --dataset SpaceNetAtlanta --model "$model" --crop 128 --epoch 20 --epoch_samples 250 \
            --out "$out/spacenet"
        segment --dataset SpaceNetAtlanta --model "$model" --crop 128 --epoch 20 --epoch_samples 250 \
            --class_balancing --out "$out/spacenet"
      done ;;
    twosource)
      for model in "segnet --sources image" "fusenet --sources image dem" "vfusenet --sources image dem" \
                   "segnet_rc --sources image dem"; do
        # shellcheck disable=SC2086
        segment --dataset Sentinel2Slovenia --model $model --crop 32 --epoch 20 --epoch_samples 500 \
            --out "$out/sentinel2"
      done
      for model in "segnet --sources vnir" "fusenet --sources vnir swir" "vfusenet --sources vnir swir" \
                   "segnet_rc --sources vnir swir"; do
        # shellcheck disable=SC2086
        segment --dataset IndianPinesTwoSensors --model $model --crop 32 --epoch 20 --epoch_samples 500 \
            --out "$out/indianpines_two_sensors"
      done ;;
    vehicles)
      # half the training crops centred on a car pixel (--focus_class), without and with class weights
      segment --dataset VaihingenCrop --model segnet --crop 128 --epoch 40 --epoch_samples 250 --focus_class car \
          --detect car --out "$out/crops_focus"
      segment --dataset VaihingenCrop --model segnet --crop 128 --epoch 40 --epoch_samples 250 --focus_class car \
          --class_balancing --detect car --out "$out/crops_focus"
      # segment-before-detect on the synthetic scene's test tile: the synthetic group's models, evaluated only
      for model in "segnet image" "segnet image ndsm" "fusenet image ndsm" "vfusenet image ndsm" \
                   "segnet_rc image ndsm"; do
        read -r name sources <<< "$model"
        # shellcheck disable=SC2086
        checkpoint=$(synthetic_model $name $sources)
        # shellcheck disable=SC2086
        segment --dataset SyntheticAerial --model "$name" --sources $sources --crop 64 --epoch 0 \
            --restore "$checkpoint" --detect car --out "$out/synthetic_detect"
      done ;;
    spacenet_long)  # three times the crops, class weights, seeds 0-2
      for model in segnet segnet_dt; do
        segment --dataset SpaceNetAtlanta --model "$model" --crop 128 --epoch 60 --epoch_samples 250 \
            --class_balancing --runs 3 --out "$out/spacenet_60ep"
      done ;;
    *) echo "unknown group $group (synthetic, crops, spacenet, twosource, vehicles, spacenet_long)" >&2; exit 2 ;;
  esac
done
