"""What a new user tripped over, each fixed and kept so: the top-level help lists every command; long
work says how far it is and how long is left, each line naming its run; a run states its length before
it starts; one run prints no "± 0.00"; ``map`` reads a Fortran-ordered ``.npy``; the catalogue format is
documented by an example the loader reads; and the tests of real data follow ``$DEEPHYPERX_SHARED_DATA``."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import main
from conftest import SHARED_DATA
from deephyperx.metrics import format_stat
from deephyperx.monitor import ConsoleMonitor
from deephyperx.progress import Progress, format_duration, rough_duration
from deephyperx.scene_catalogue import CATALOGUE_KEYS, SCENE_KEYS, SPLIT_KEYS, load_catalogue
from deephyperx.synthetic import make_synthetic_scene

ROOT = Path(__file__).resolve().parents[1]
RUN_LINE = re.compile(r"^\[(\S+) (\S+) seed (\d+)\] ")


def run_main(*args: str, cwd: Path, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """``python main.py ARGS`` as a user runs it, its output going to pipes (as into a log file)."""
    env = {**os.environ, "DEEPHYPERX_DATA": str(cwd / "no-data-here"), "PYTHONHASHSEED": "0", **env}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


# ----- 1. the top-level help lists every command -----------------------------------------------------

def test_top_level_help_lists_every_command_with_a_line_of_its_own(tmp_path):
    result = run_main("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    dispatched = {"bench", "list", *main.MODULE_COMMANDS}
    assert set(main.COMMANDS) == dispatched  # nothing main.py runs is left out of the help
    for name in dispatched:
        line = re.search(rf"^  {name} +(\S.+)$", result.stdout, re.MULTILINE)
        assert line, f"{name} is not listed in main.py --help"
        assert len(line.group(1)) > 20  # a description, not just the name
    for flag in ("--model", "--dataset", "--training_sample", "--runs", "--epoch", "--patch_size", "--cuda"):
        assert flag in result.stdout  # DeepHyperX's flags are still there


def test_the_installed_command_lists_them_too(tmp_path):
    command = Path(sys.executable).with_name("deephyperx")
    if not command.is_file():
        pytest.skip("the deephyperx command is not installed in this environment")
    result = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(re.search(rf"^  {name} ", result.stdout, re.MULTILINE) for name in main.COMMANDS)
    assert "deephyperx COMMAND --help" in result.stdout


def test_a_mistyped_command_names_the_commands(tmp_path):
    result = run_main("bnech", "--models", "hu", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "unknown command 'bnech'" in result.stderr
    assert all(name in result.stderr for name in main.COMMANDS)


# ----- 2-4. the run's plan, its progress and time left, and one run without "± 0.00" ---------------------

def test_deephyperx_flags_run_and_every_log_line_names_its_run(tmp_path):
    result = run_main("--model", "hu", "--dataset", "Synthetic", "--epoch", "2", "--runs", "2", "--out", "o",
                      cwd=tmp_path, DEEPHYPERX_PROGRESS_SECONDS="0")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(RUN_LINE.match(line) for line in lines), [l for l in lines if not RUN_LINE.match(l)]
    assert {RUN_LINE.match(line).groups() for line in lines} == {("hu", "Synthetic", "0"), ("hu", "Synthetic", "1")}
    seed0 = [line for line in lines if line.startswith("[hu Synthetic seed 0]")]
    # the plan, before the first epoch: epochs x batches, and the seeds
    assert re.fullmatch(r"\[hu Synthetic seed 0\] hu on Synthetic: 2 epochs x \d+ batches of 100 a seed, "
                        r"2 seeds \(this is seed 1 of 2\)", seed0[0])
    # once the first epoch is timed: the length of a seed and of every seed
    estimate = next(line for line in seed0 if "took" in line)
    assert re.search(r"epoch 1 took .+: about .+ a seed, about .+ until the last of the 2 seeds ends", estimate)
    # epoch lines with the time left, then the scene's mapping with its own
    epoch1 = next(line for line in seed0 if " epoch 1/2 train_loss=" in line)
    assert re.search(r"\(\d+s\) ETA \d+s$", epoch1)
    assert any(re.search(r"epoch 1/2 batch 1/\d+, ETA of the epoch", line) for line in seed0)
    assert any(re.search(r"mapping the scene [\d,]+/[\d,]+ px \(\d+%\), .* so far, ETA \S+$", line) for line in seed0)
    assert seed0.index(epoch1) < seed0.index(next(line for line in seed0 if "mapping the scene" in line))
    summary = next(line for line in result.stdout.splitlines() if " OA " in line)
    assert "hu on Synthetic, 2 run(s)" in summary and summary.count("±") == 3


def test_one_run_prints_no_standard_deviation(tmp_path):
    result = run_main("--model", "nearest", "--dataset", "Synthetic", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = next(line for line in result.stdout.splitlines() if " OA " in line)
    assert re.fullmatch(r"nearest on Synthetic, 1 run\(s\): OA \d+\.\d\d  AA \d+\.\d\d  kappa -?\d+\.\d\d", summary)
    assert "[nearest Synthetic seed 0] nearest on Synthetic: one fit a seed" in result.stderr
    folder = next((tmp_path / "o").iterdir())
    text = (folder / "results.md").read_text()
    assert "±" not in text.split("## Reproduce")[0] and "One run (seed 0)" in text
    results = json.loads((folder / "results.json").read_text())
    assert results["overall_accuracy"]["std"] == 0.0 and results["overall_accuracy"]["n"] == 1  # the numbers stay


def test_a_statistic_of_one_run_has_no_std():
    assert format_stat({"mean": 0.853, "std": 0.0, "n": 1}) == "85.30"
    assert format_stat({"mean": 0.853, "std": 0.0121, "n": 2}) == "85.30 ± 1.21"
    assert format_stat({"mean": 0.853, "std": 0.0121}) == "85.30 ± 1.21"  # older records without a count
    assert format_stat({"mean": None, "std": None, "n": 0}) == "n/a" and format_stat(None) == "n/a"


def test_bench_says_its_plan_and_progress_and_shows_no_std_for_one_run(tmp_path):
    result = run_main("bench", "--models", "nearest", "hu", "--datasets", "Synthetic", "--runs", "1", "--epoch", "1",
                      "--out", "b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[bench] 2 model(s) x 1 scene(s): 2 experiment(s)" in result.stderr
    assert re.search(r"\[bench\] experiments done 1/2 \(50%\), last: nearest on Synthetic, .* ETA \S+", result.stderr)
    table = (tmp_path / "b" / "bench.md").read_text()
    assert "±" not in table and re.search(r"\| Synthetic \| hu \| random 0.1 \| 1 \| 1 \| .* \| \d+\.\d\d \|", table)


def test_console_estimates_a_run_from_its_first_epoch():
    stream = io.StringIO()
    console = ConsoleMonitor(1500, stream=stream, bar=False, seeds=(1, 5), seconds=3600)
    console.run_started({"model": "hu", "scene": "IndianPines", "seed": 0})
    console.training_started({"epochs": 1500, "start_epoch": 0, "batches": 11, "batch_size": 100})
    console._trained_since -= 1.84  # the first epoch took 1.84 s
    console.epoch_ended(0, {"train_loss": 2.0})
    plan, estimate, epoch = stream.getvalue().splitlines()
    assert plan == "[hu IndianPines seed 0] hu on IndianPines: 1500 epochs x 11 batches of 100 a seed, 5 seeds " \
                   "(this is seed 1 of 5)"
    assert estimate == "[hu IndianPines seed 0] epoch 1 took 2 s: about 46 min a seed, about 3 h 50 min until the " \
                       "last of the 5 seeds ends"
    assert re.fullmatch(r"\[hu IndianPines seed 0\] epoch 1/1500 train_loss=2 \(\d+s\) ETA 4[56]m\d\ds", epoch)


def test_a_resumed_run_says_where_it_resumes():
    stream = io.StringIO()
    console = ConsoleMonitor(100, stream=stream, bar=False, seconds=3600)
    console.run_started({"model": "hamida", "scene": "PaviaU", "seed": 3})
    console.training_started({"epochs": 100, "start_epoch": 40, "batches": 7, "batch_size": 64})
    assert stream.getvalue() == "[hamida PaviaU seed 3] hamida on PaviaU: 100 epochs x 7 batches of 64 a seed, " \
                                "1 seed; resuming after epoch 40, 60 left\n"


def test_progress_lines_in_a_log_and_durations():
    stream = io.StringIO()
    with Progress(400, "mapping the scene", "hu PaviaU seed 0", unit="px", stream=stream, seconds=0) as progress:
        for _ in range(4):
            progress.update(100, "tile")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # none once all is done: the work's own summary follows
    assert re.fullmatch(r"\[hu PaviaU seed 0\] mapping the scene 100/400 px \(25%\), tile, \d+s so far, ETA \S+",
                        lines[0])
    quiet = io.StringIO()
    with Progress(400, "mapping", stream=quiet, seconds=30) as progress:
        progress.update(100)
    assert quiet.getvalue() == ""  # quick work: no line
    assert [format_duration(s) for s in (5, 130, 3900, 90000)] == ["5s", "2m10s", "1h05m", "1d01h"]
    assert [rough_duration(s) for s in (40, 2760, 13800)] == ["40 s", "46 min", "3 h 50 min"]


def test_a_bad_progress_interval_is_one_line(tmp_path):
    result = run_main("--model", "nearest", "--dataset", "Synthetic", "--out", "o", cwd=tmp_path,
                      DEEPHYPERX_PROGRESS_SECONDS="often")
    assert result.returncode == 2 and "DEEPHYPERX_PROGRESS_SECONDS='often'" in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "o").exists()


def test_generator_report_shows_its_steps(tmp_path, monkeypatch, capsys):
    scene = make_synthetic_scene(seed=1, rows=30, cols=30, n_bands=12, n_classes=3)
    np.save(tmp_path / "cube.npy", scene.cube)
    np.save(tmp_path / "gt.npy", (scene.labels + 1).astype(np.int16))
    (tmp_path / "small.yaml").write_text("epoch_samples: 64\nmodel_args:\n  width: 16\n")
    monkeypatch.setenv("DEEPHYPERX_PROGRESS_SECONDS", "0")
    monkeypatch.chdir(tmp_path)
    code = main.main(["generate", "--model", "cvae", "--cube", "cube.npy", "--gt", "gt.npy", "--epoch", "1",
                      "--batch_size", "32", "--config", "small.yaml", "--samples_per_class", "10", "--out", "syn.h5",
                      "--runs_dir", "runs"])
    err = capsys.readouterr().err
    assert code == 0, err
    steps = [line for line in err.splitlines() if "realism report" in line]
    assert steps and all(line.startswith("[cvae cube seed 0] realism report ") for line in steps)
    assert any(re.search(r"realism report 1/11 steps \(9%\), spectral angles done, .* ETA", line) for line in steps)
    assert any("mlp: synthetic -> real test (TSTR) done" in line for line in steps)


def test_segmentation_inference_shows_its_progress(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        labels = np.kron(rng.integers(1, 3, (6, 6)), np.ones((8, 8), int)).astype(np.uint8)
        image = (labels[..., None] * 80 + rng.normal(0, 5, (48, 48, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / f"{name}.png")
        Image.fromarray(labels).save(tmp_path / f"{name}_gt.png")
    result = run_main("segment", "--model", "segnet", "--images", "a.png", "b.png", "--labels", "a_gt.png", "b_gt.png",
                      "--class_names", "road", "tree", "--test_tiles", "b", "--crop", "32", "--stride", "16",
                      "--batch_size", "2", "--model_args", "width=0.125", "--epoch", "1", "--epoch_samples", "4",
                      "--out", "s", cwd=tmp_path, DEEPHYPERX_PROGRESS_SECONDS="0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "predicting the test regions" in line]
    assert lines and all(RUN_LINE.match(line) for line in lines)
    assert re.search(r"predicting the test regions [\d,]+/2,304 px \(\d+%\), region 1 of 1, .* ETA", lines[0])
    assert "segnet on a, 1 run(s): OA" in result.stdout and "±" not in result.stdout


# ----- 5. map reads a Fortran-ordered .npy ------------------------------------------------------------

def test_map_reads_a_fortran_ordered_npy_as_training_does(tmp_path):
    scene = make_synthetic_scene(seed=2, rows=30, cols=26, n_bands=10, n_classes=3)
    cube = np.asfortranarray(scene.cube)
    assert cube.flags.f_contiguous and not cube.flags.c_contiguous
    np.save(tmp_path / "fortran.npy", cube)
    np.save(tmp_path / "c.npy", np.ascontiguousarray(scene.cube))
    np.save(tmp_path / "gt.npy", (scene.labels + 1).astype(np.int16))
    trained = run_main("--model", "hu", "--cube", "fortran.npy", "--gt", "gt.npy", "--epoch", "1", "--out", "o",
                       cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    model = next((tmp_path / "o").glob("*/seed0/model.pt"))
    for cube_file in ("fortran.npy", "c.npy"):
        mapped = run_main("map", "--restore", str(model), "--cube", cube_file, "--out", f"{cube_file}.map.npy",
                          "--memory_budget", "200KB", "--no_progress", cwd=tmp_path)
        assert mapped.returncode == 0, mapped.stderr
        assert re.search(r"map 30x26 written to .*: \d+ tiles", mapped.stderr)  # several tiles, read by window
    fortran_map, c_map = np.load(tmp_path / "fortran.npy.map.npy"), np.load(tmp_path / "c.npy.map.npy")
    np.testing.assert_array_equal(fortran_map, c_map)
    prediction = np.load(model.with_name("prediction.npy"))
    assert (fortran_map == prediction).mean() > 0.99  # the map the training run made of the same scene


# ----- 6. the catalogue format, documented by an example the loader reads ----------------------------------

CATALOGUE_DOC = ROOT / "docs" / "tasks" / "catalogue-format.md"


def test_the_documented_catalogue_example_loads(tmp_path):
    text = CATALOGUE_DOC.read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.DOTALL).group(1)
    data = yaml.safe_load(example)
    folder = tmp_path / data["folder"]
    folder.mkdir()
    _write_example_files(folder)
    (tmp_path / "s2_tiles.yaml").write_text(example)
    catalogue = load_catalogue(tmp_path / "s2_tiles.yaml")
    assert catalogue.name == "s2_tiles" and catalogue.class_names == ["water", "forest", "crop"]
    assert catalogue.label_values == [1, 2, 3] and catalogue.ignored == [0, 255]
    assert [(s.name, s.role) for s in catalogue.scenes] == [("t01", "split"), ("t02", "split"), ("t03", "val"),
                                                           ("t04", "test"), ("t05", "train")]
    assert catalogue.test_fraction == 0.3 and catalogue.val_fraction == 0.1 and catalogue.n_bands == 4
    assert catalogue.palette[1] == (0, 128, 0)
    classes = catalogue.classes(1, 0, 8)  # the PNG labels of t02, values decoded
    assert set(np.unique(classes).tolist()) <= {-1, 0, 1, 2}
    for key in CATALOGUE_KEYS | SPLIT_KEYS | SCENE_KEYS:  # every key the loader knows is documented
        assert f"| `{key}` |" in text, key


def _write_example_files(folder: Path) -> None:
    """The five scenes of the documented example, 8x8 pixels of 4 bands, in the formats it names."""
    import h5py
    import scipy.io
    import tifffile

    rng = np.random.default_rng(0)

    def scene() -> tuple[np.ndarray, np.ndarray]:
        return rng.random((8, 8, 4)).astype(np.float32), rng.choice([0, 1, 2, 3, 255], (8, 8)).astype(np.uint8)

    for name in ("t01", "t03"):
        cube, labels = scene()
        np.save(folder / f"{name}.npy", cube)
        np.save(folder / f"{name}_gt.npy", labels)
    cube, labels = scene()
    with h5py.File(folder / "t02.h5", "w") as handle:
        handle["cube"] = cube
        handle["other"] = cube[..., :1]  # two arrays: cube_key picks one
    Image.fromarray(labels).save(folder / "t02_gt.png")
    cube, labels = scene()
    tifffile.imwrite(folder / "t04.tif", cube, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(folder / "t04_gt.tif", labels)
    cube, labels = scene()
    scipy.io.savemat(folder / "t05.mat", {"X": cube})
    scipy.io.savemat(folder / "t05_gt.mat", {"y": labels})


# ----- 7. the tests of real data follow $DEEPHYPERX_SHARED_DATA ---------------------------------------------

def test_real_data_tests_follow_the_shared_data_variable(tmp_path):
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "DEEPHYPERX_SHARED_DATA": str(empty)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                             "tests/test_objects.py", "tests/test_reports.py", "-k", "real"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert result.returncode == 0 and len(skipped) == 4, result.stdout
    assert all(str(empty) in line for line in skipped)
    if (SHARED_DATA / "IndianPines" / "Indian_pines_gt.mat").is_file():  # and where it points, they run
        link = tmp_path / "linked"
        link.symlink_to(SHARED_DATA)
        env["DEEPHYPERX_SHARED_DATA"] = str(link)
        again = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                "tests/test_reports.py", "-k", "real"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert again.returncode == 0 and "passed" in again.stdout and "skipped" not in again.stdout, again.stdout


def test_a_listing_whose_reader_went_away_stops_without_a_traceback():
    """`deephyperx list | head -1`: the reader closes the pipe before the listing is written."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: every write the command makes meets a broken pipe
    try:
        done = subprocess.run([sys.executable, str(ROOT / "main.py"), "list"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    assert done.returncode in (0, 141)
