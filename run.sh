#!/usr/bin/env bash
# Set up (first time) and run the main job: `./run.sh` trains and evaluates SVM_grid (kernel and
# C/gamma chosen by cross-validation) with 10% of the labelled pixels, seeds 0-4, on Indian Pines
# if its files are in $DEEPHYPERX_DATA (default ./Datasets), else on the embedded synthetic scene.
# Any arguments replace the defaults: ./run.sh --model hu --dataset IndianPines --folder DIR
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh requirements.txt
if [ "$#" -eq 0 ]; then
  set -- --model SVM_grid --training_sample 0.1 --runs 5 --n_jobs 2
fi
exec .venv/bin/python main.py "$@"
