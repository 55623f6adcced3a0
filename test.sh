#!/usr/bin/env bash
# Set up (first time) and run the test suite. Real scenes are read from ../shared/data
# (or $DEEPHYPERX_SHARED_DATA); tests that need them skip when they are absent. The tests run on
# every core (pytest-xdist); add -n 0 to run them in one process.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh requirements-dev.txt
exec .venv/bin/python -m pytest -q -n auto "$@"
