"""The environment record kept in each run folder: a fresh start begins it, a resume appends to
it, and a resume with another torch thread count warns that the numbers will differ."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from deephyperx.run_environment import ENVIRONMENT_FILE, describe_environment, read_environment, record_environment


@pytest.fixture
def threads():
    """Restore torch's thread count after a test changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_description_names_this_process_libraries_and_threads():
    described = describe_environment(cuda=-1)
    assert described["torch"] == torch.__version__ and described["numpy"] == np.__version__
    assert described["torch_threads"] == torch.get_num_threads()
    assert described["device"] == "cpu" and described["world_size"] == 1
    assert described["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert described["cpu"] and described["cpu"] != "unknown"  # Linux names its CPU in /proc/cpuinfo
    json.dumps(described)  # every value is JSON-ready


def test_a_gpu_asked_where_none_is_present_is_recorded_as_the_cpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert describe_environment(cuda=0)["device"] == "cpu"


def test_a_fresh_start_replaces_the_record_and_a_resume_appends(tmp_path, capsys):
    record_environment(tmp_path, None, -1)
    record_environment(tmp_path, None, -1)  # a second fresh start: the old record goes
    assert [r["resumed_from_epoch"] for r in read_environment(tmp_path)] == [None]
    record_environment(tmp_path, 3, -1)
    records = read_environment(tmp_path)
    assert [r["resumed_from_epoch"] for r in records] == [None, 3]
    assert records[0]["torch_threads"] == records[1]["torch_threads"]
    assert "warning" not in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name != ENVIRONMENT_FILE]  # no temporary file left


def test_a_resume_with_another_thread_count_warns_and_records_both(tmp_path, capsys, threads):
    torch.set_num_threads(2)
    record_environment(tmp_path, None, -1)
    torch.set_num_threads(1)
    record_environment(tmp_path, 5, -1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: this run went on with 2 torch threads and resumes with 1; its numbers will differ "
                   f"from an uninterrupted run's (see {ENVIRONMENT_FILE} in its folder)"]
    assert [r["torch_threads"] for r in read_environment(tmp_path)] == [2, 1]


def test_a_folder_without_a_record_reads_as_none(tmp_path):
    assert read_environment(tmp_path) == []


def test_a_resume_on_another_cpu_instruction_set_warns(tmp_path, capsys):
    record_environment(tmp_path, None, -1)
    records = read_environment(tmp_path)
    records[0]["cpu_capability"] = "AVX2" if records[0]["cpu_capability"] != "AVX2" else "AVX512"
    (tmp_path / ENVIRONMENT_FILE).write_text(json.dumps(records[0]) + "\n")
    record_environment(tmp_path, 4, -1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: this run went on with the {records[0]['cpu_capability']} CPU instruction set and "
                   f"resumes with {torch.backends.cpu.get_cpu_capability()}; its numbers will differ from an "
                   f"uninterrupted run's (see {ENVIRONMENT_FILE} in its folder)"]


def test_a_record_written_before_the_cpu_was_recorded_resumes_without_a_cpu_warning(tmp_path, capsys):
    record_environment(tmp_path, None, -1)
    old = {k: v for k, v in read_environment(tmp_path)[0].items() if k not in ("cpu", "cpu_capability")}
    (tmp_path / ENVIRONMENT_FILE).write_text(json.dumps(old) + "\n")
    record_environment(tmp_path, 2, -1)
    assert "warning" not in capsys.readouterr().err
