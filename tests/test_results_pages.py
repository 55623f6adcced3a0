"""The results pages (docs/results/*.md) are generated from the results data (docs/results/*.csv and
commands.yaml) by benchmarks/results_pages.py: the committed pages equal what the data gives, every row
names the command that makes it, numbers parse, means over several seeds carry their spread and a
single seed shows none; and README.md and docs/ speak of the product, not of how it was made."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results_pages import SCHEMAS, load_commands, seed_list

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
SCRIPT = ROOT / "benchmarks" / "results_pages.py"
PAGES = ("index.md", "classification.md", "generators.md", "segmentation.md")
#: The columns the model reference pages read from classification.csv.
CLASSIFICATION_COLUMNS = ("model", "scene", "protocol", "training_sample", "epochs", "seeds", "oa_mean", "oa_std",
                          "aa_mean", "aa_std", "kappa_mean", "kappa_std", "published_oa", "published_source",
                          "train_time_s", "device", "command")


def generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def rows(name: str) -> list[dict[str, str]]:
    with open(RESULTS / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def edit_row(path: Path, match: dict[str, str], changes: dict[str, str]) -> None:
    """Rewrite the CSV file ``path`` with ``changes`` applied to the one row matching ``match``."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, table = reader.fieldnames, list(reader)
    hits = [row for row in table if all(row[k] == v for k, v in match.items())]
    assert len(hits) == 1, f"{match} matches {len(hits)} rows"
    hits[0].update(changes)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every table of a Markdown page, as rows keyed by the header's cells."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("| ") and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split(" | ")]
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("| "):
                    break
                body.append(dict(zip(header, (c.strip() for c in row[2:-2].split(" | ")))))
            tables.append(body)
    return tables


def test_the_pages_are_up_to_date_with_the_data():
    done = generate("--check")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for page in PAGES:
        assert (RESULTS / page).is_file()


def test_check_names_a_page_the_data_no_longer_gives_and_the_generator_rewrites_it(tmp_path):
    data = shutil.copytree(RESULTS, tmp_path / "results")
    edit_row(data / "classification.csv", {"group": "zoo_ip_random10", "model": "hamida"}, {"oa_mean": "84.22"})
    before = {page: (data / page).read_text() for page in PAGES}

    done = generate("--check", "--data", str(data))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"{data / name} differs from its data; run python benchmarks/results_pages.py"
                                        for name in ("classification.md", "oa_vs_cpu_time.csv")]  # hamida's point too
    assert {page: (data / page).read_text() for page in PAGES} == before  # --check writes nothing

    done = generate("--data", str(data))
    assert done.returncode == 0, done.stderr
    assert "| `hamida` | 0-4 | 100 | 84.22 ± 2.55 |" in (data / "classification.md").read_text()
    assert (data / "generators.md").read_text() == before["generators.md"]
    assert generate("--check", "--data", str(data)).returncode == 0
    assert not list(data.glob(".*.tmp"))  # written atomically: no temporary file left


def test_every_row_has_a_command_and_its_table_a_command_on_the_page():
    commands = load_commands(RESULTS)
    groups = set()
    for name in SCHEMAS:
        for row in rows(name):
            assert row["command"].strip(), f"{name}: a {row['group']} row has no command"
            assert re.match(r"(python |benchmarks/|printf |for |[A-Z_]+=)", row["command"]), row["command"]
            groups.add(row["group"])
    assert set(commands) <= groups
    pages = "\n".join((RESULTS / page).read_text() for page in PAGES)
    for name in SCHEMAS:
        for row in rows(name):  # the table's command, or the row's own, is on the page
            command = commands.get(row["group"], row["command"].strip())
            assert f"{command}\n```" in pages or f"{command}\n\n#" in pages, command


def test_classification_has_the_columns_the_model_pages_read():
    with open(RESULTS / "classification.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert [c for c in CLASSIFICATION_COLUMNS if c not in header] == []
    protocols = {row["protocol"] for row in rows("classification.csv")}
    assert protocols <= {"random", "disjoint-blocks", "fixed-maps"}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_numeric_columns_parse(name):
    schema = SCHEMAS[name]
    assert tuple(rows(name)[0]) == schema.columns
    for row in rows(name):
        for column in schema.numeric:
            if row[column]:
                float(row[column])
        assert seed_list(row["seeds"])


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_a_mean_over_several_seeds_has_its_spread_and_a_single_seed_none(name):
    schema = SCHEMAS[name]
    for row in rows(name):
        several = len(seed_list(row["seeds"])) > 1
        for metric in schema.spread:
            if row[f"{metric}_mean"]:
                assert bool(row[f"{metric}_std"]) == several, (name, row["group"], row.get("model"), metric)
        for metric in schema.optional_spread:
            assert not (row[f"{metric}_std"] and not several), (name, row["group"], metric)


def test_a_single_seed_row_prints_no_spread_on_the_pages():
    single = several = 0
    for page in PAGES:
        for table in markdown_tables((RESULTS / page).read_text()):
            for row in table:
                if "seeds" not in row:
                    continue
                if len(seed_list(row["seeds"])) == 1:
                    single += 1
                    assert "±" not in " ".join(row.values()), (page, row)
                else:
                    several += 1
                    assert "±" in row.get("OA (%)", row.get("SVM TSTR/TRTR", row.get("OA real only (%)", "±")))
    assert single > 20 and several > 20


def test_a_made_up_spread_for_a_single_seed_is_one_line_and_writes_nothing(tmp_path):
    data = shutil.copytree(RESULTS, tmp_path / "results")
    edit_row(data / "classification.csv", {"group": "zoo_ip_random10", "model": "SSRN"}, {"oa_std": "0.00"})
    (data / "classification.md").unlink()

    done = generate("--data", str(data))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert re.match(r"error: classification\.csv line \d+: oa_std '0\.00' for the single seed 0", done.stderr)
    assert not (data / "classification.md").exists()


def test_a_row_without_a_command_is_refused(tmp_path):
    data = shutil.copytree(RESULTS, tmp_path / "results")
    edit_row(data / "segmentation.csv", {"group": "seg_synthetic", "model": "fusenet"}, {"command": ""})
    done = generate("--check", "--data", str(data))
    assert done.returncode == 2
    assert "the command column is empty" in done.stderr and done.stderr.count("\n") == 1


def test_readme_and_docs_use_product_wording():
    """No work items, sessions or machines of the past in the documentation: a device is a table column."""
    done = subprocess.run(["grep", "-rniE", "issue [0-9]|session|this machine|second machine|lent",
                           "README.md", "docs/"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, f"grep found:\n{done.stdout}{done.stderr}"
    assert done.stdout == ""


def test_nothing_links_to_the_removed_results_log():
    assert not (ROOT / "docs" / "RESULTS.md").exists()
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    assert [str(p) for p in texts if "RESULTS.md" in p.read_text(encoding="utf-8")] == []
