"""The result scripts that run JOBS processes at once divide the machine's cores among them
(benchmarks/threads_per_job.sh): every process of their parallel queue sees OMP_NUM_THREADS =
cores / JOBS, unless the caller set it; generator_results.sh queues all settings' seeds before its
benches. The scripts run for real under bash; ``PYTHON`` names a recorder that writes the thread
count and arguments of each call instead of training, so a case takes a few seconds."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("ip_5pc", "ip_10px", "sa_5pc", "sa_10px")


def recorder(folder: Path) -> tuple[Path, Path]:
    """An executable that appends 'OMP_NUM_THREADS arguments' to a log, and that log."""
    log = folder / "calls.log"
    script = folder / "record-python"
    script.write_text(f'#!/bin/sh\necho "${{OMP_NUM_THREADS:-unset}} $*" >> "{log}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


def run(script: str, tmp_path: Path, jobs: str, omp: str | None = None) -> list[str]:
    """Run benchmarks/SCRIPT with JOBS and the recorder; the recorded calls, one line each."""
    python, log = recorder(tmp_path)
    out = tmp_path / "out"
    for tag in SETTINGS:  # generator_results.sh writes augment.yaml where `generate` would have made the folder
        (out / tag / "cgan").mkdir(parents=True, exist_ok=True)
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
    """Only the parallel queue's processes are given the share: generator_results.sh's generator
    seeds and zoo_results.sh's training runs; the classifiers' benches of generator_results.sh and
    the zoo's table gathering (which trains nothing) run one at a time with the caller's setting."""
    calls = run(script, tmp_path, jobs, omp)
    if script == "generator_results.sh":
        queued = [line for line in calls if line.split()[1:3] == ["main.py", "generate"]]
        assert len(queued) == 2 * len(SETTINGS)  # seeds 0 and 1 of cgan in each setting
    else:
        queued = [line for line in calls if "--runs 1 --seed" in line]  # one (protocol, model, seed) each
        assert len(queued) > 4 and len(queued) < len(calls)
    assert {line.split()[0] for line in queued} == {expected}
    assert {line.split()[0] for line in calls if line not in queued} == {omp or "unset"}


def test_generator_seeds_of_all_settings_form_one_queue(tmp_path):
    """generator_results.sh queues every setting's missing seeds before any bench, so JOBS processes
    keep training across settings; a seed whose spectra file exists is not trained again."""
    (tmp_path / "out" / "ip_5pc" / "cgan").mkdir(parents=True)
    (tmp_path / "out" / "ip_5pc" / "cgan" / "seed0.h5").touch()
    calls = [line.split()[1:] for line in run("generator_results.sh", tmp_path, "2")]
    kinds = [call[1] if call[0] == "main.py" else call[0] for call in calls]
    assert kinds == ["generate"] * 7 + ["bench", "bench", "benchmarks/augmentation_gain.py"] * 4 \
        + ["benchmarks/realism_summary.py"]
    trained = {(call[call.index("--out") + 1].split("/")[-3], call[call.index("--seed") + 1])
               for call in calls[:7]}
    assert trained == {(tag, seed) for tag in SETTINGS for seed in "01"} - {("ip_5pc", "0")}


def test_settings_restrict_the_generator_protocol(tmp_path):
    """SETTINGS="ip_5pc sa_5pc" trains, benches and summarises those two settings only, in that order."""
    python, log = recorder(tmp_path)
    out = tmp_path / "out"
    for tag in ("ip_5pc", "sa_5pc"):
        (out / tag / "cgan").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    env.update({"PYTHON": str(python), "JOBS": "1", "SETTINGS": "ip_5pc sa_5pc"})
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "generator_results.sh"), "data-not-read", str(out),
                           "cgan:2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    calls = [line.split()[1:] for line in log.read_text().splitlines()]
    generated = [(call[call.index("--dataset") + 1], call[call.index("--training_sample") + 1],
                  call[call.index("--seed") + 1]) for call in calls if call[1:2] == ["generate"]]
    assert generated == [("IndianPines", "0.05", "0"), ("IndianPines", "0.05", "1"),
                         ("SalinasA", "0.05", "0"), ("SalinasA", "0.05", "1")]
    benched = [call[call.index("--out") + 1].split("/")[-2:] for call in calls if call[1:2] == ["bench"]]
    assert benched == [["ip_5pc", "real"], ["cgan", "augmented"], ["sa_5pc", "real"], ["cgan", "augmented"]]
    summary = calls[-1]
    assert summary[0] == "benchmarks/realism_summary.py"
    assert [Path(folder).parent.name for folder in summary[1:3]] == ["ip_5pc", "sa_5pc"]
    assert summary[3] == "--out"


def test_an_unknown_setting_is_refused_in_one_line(tmp_path):
    python, log = recorder(tmp_path)
    env = {**os.environ, "PYTHON": str(python), "SETTINGS": "ip_5pc pavia_5pc"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "generator_results.sh"), "data-not-read",
                           str(tmp_path / "out"), "cgan"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: SETTINGS names 'pavia_5pc'; give tags among: ip_5pc ip_10px sa_5pc sa_10px"]
    assert not log.exists() and not (tmp_path / "out").exists()
