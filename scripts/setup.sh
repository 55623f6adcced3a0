#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv and install deephyperx (editable) with what it needs.
# Usage: scripts/setup.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# A bare `torch` requirement would pull a multi-GB CUDA build here: pin the CPU-friendly release first.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
# visdom 0.2.4 (live monitoring) ships only as a source package whose setup.py imports pkg_resources,
# which setuptools 82 removed; pip's isolated build would fetch the newest setuptools and fail on a
# fresh machine. Build it against setuptools<82, outside isolation (pins as in pyproject.toml).
if ! .venv/bin/python -c "import visdom" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "setuptools>=70.1,<82"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    "visdom==0.2.4" "tornado<6.6"
fi
# deephyperx itself (pyproject.toml, editable) and the extras the requirements file names
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
