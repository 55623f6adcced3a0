"""What a neural run keeps resident: libraries it does not use stay unimported (scikit-learn costs a
process about 90 MB, h5py 11 MB), checked on a real Indian Pines run (MATLAB v5 files) in a fresh
interpreter. Peak memory itself is measured by benchmarks/peak_memory.py, not asserted here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PROBE = """
import json, sys
from deephyperx_app import main
status = main.main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted(m for m in ("sklearn", "h5py") if m in sys.modules)}))
"""


def test_a_neural_run_on_matlab_v5_files_imports_neither_sklearn_nor_h5py(shared_data: Path, tmp_path: Path):
    args = ["--model", "hamida", "--dataset", "IndianPines", "--folder", str(shared_data), "--training_sample",
            "0.05", "--epoch", "1", "--out", str(tmp_path)]
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe == {"status": 0, "modules": []}
    environment = json.loads(next(tmp_path.rglob("environment.jsonl")).read_text().splitlines()[-1])
    assert environment["scikit_learn"]  # its version, read from the installed metadata
