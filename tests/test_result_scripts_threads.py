"""The result scripts that run JOBS processes at once divide the machine's cores among them
(benchmarks/threads_per_job.sh): every Python process they start sees OMP_NUM_THREADS = cores / JOBS,
unless the caller set it. The scripts run for real under bash; ``PYTHON`` names a recorder that
writes the thread count each call received instead of training, so the test takes a second."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("ip_5pc", "ip_10px", "sa_5pc", "sa_10px")


def recorder(folder: Path) -> tuple[Path, Path]:
    """An executable that appends 'OMP_NUM_THREADS first-argument' to a log, and that log."""
    log = folder / "calls.log"
    script = folder / "record-python"
    script.write_text(f'#!/bin/sh\necho "${{OMP_NUM_THREADS:-unset}} $1 $2" >> "{log}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def run(script: str, tmp_path: Path, jobs: str, omp: str | None = None) -> list[str]:
    """Run benchmarks/SCRIPT with JOBS and the recorder; the recorded calls, one line each."""
    python, log = recorder(tmp_path)
    out = tmp_path / "out"
    for tag in SETTINGS:  # generator_results.sh writes augment.yaml where `generate` would have made the folder
        (out / tag / "cgan").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    env.update({"PYTHON": str(python), "JOBS": jobs, **({"OMP_NUM_THREADS": omp} if omp else {})})
    args = ["data-not-read", str(out)] + (["cgan:2"] if script == "generator_results.sh" else [])
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return log.read_text().splitlines()


CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("script", ["generator_results.sh", "zoo_results.sh"])
@pytest.mark.parametrize("jobs, omp, expected", [
    ("2", None, str(max(1, CORES // 2))),  # two jobs: half the cores each
    (str(CORES + 1), None, "1"),  # more jobs than cores: one thread each, never zero
    ("1", None, "unset"),  # one job: torch's own default
    ("2", "3", "3"),  # the caller's choice wins
])
def test_parallel_jobs_share_the_cores(script, jobs, omp, expected, tmp_path):
    calls = run(script, tmp_path, jobs, omp)
    assert len(calls) > 4 and {line.split()[0] for line in calls} == {expected}
    if script == "generator_results.sh":
        generated = [line for line in calls if line.split()[1:] == ["main.py", "generate"]]
        assert len(generated) == 2 * len(SETTINGS)  # seeds 0 and 1 of cgan in each setting
