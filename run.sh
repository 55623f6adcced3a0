#!/usr/bin/env bash
# Set up (first time) and run the main job: `./run.sh` trains and evaluates the 1D CNN `hu` on
# Indian Pines if its files are in $DEEPHYPERX_DATA (default ./Datasets), else on the embedded
# synthetic scene. Any arguments replace the defaults: ./run.sh --model SVM_grid --dataset IndianPines --folder DIR
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh requirements.txt
if [ "$#" -eq 0 ]; then
  set -- --model hu --runs 1
fi
exec .venv/bin/python main.py "$@"
