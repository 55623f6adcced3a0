"""Collect the ``results.json`` of finished experiments under a folder into one Markdown table
(printed, and written as ``summary.md`` and ``summary.json`` in that folder)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deephyperx.atomic import atomic_write_text  # noqa: E402
from deephyperx.metrics import format_percent  # noqa: E402


def rows(folder: Path) -> list[dict]:
    found = []
    for path in sorted(folder.glob("*/results.json")):
        result = json.loads(path.read_text())
        config = result["config"]
        found.append({
            "scene": result["scene"], "model": result["model"],
            "split": f"{config['sampling_mode']} {config['training_sample']}",
            "runs": result["n_runs"], "seeds": result.get("seeds"), "epochs": config.get("epoch"),
            **{key: result[key] for key in ("overall_accuracy", "average_accuracy", "kappa")},
            "command": result.get("command"),
        })
    return found


def markdown(found: list[dict]) -> str:
    lines = ["| scene | model | split | runs | epochs | OA (%) | AA (%) | kappa (x100) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in found:
        stats = [format_percent(r[k]["mean"], r[k]["std"]) for k in ("overall_accuracy", "average_accuracy", "kappa")]
        lines.append(f"| {r['scene']} | {r['model']} | {r['split']} | {r['runs']} | {r['epochs']} | " + " | ".join(stats) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "outputs/results")
    found = rows(folder)
    table = markdown(found)
    atomic_write_text(folder / "summary.md", table)
    atomic_write_text(folder / "summary.json", json.dumps(found, indent=2))
    print(table)
