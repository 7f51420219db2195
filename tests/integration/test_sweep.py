"""A tiny pruning-strength multirun + a matched baseline through scripts/train.py, then scripts/report.py.

About 20 s on a quiet 2-core machine (three 4-step tiny runs); mark it slow if it grows past a minute.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "debug=fast",
    "model/encoder=tiny",
    "eval_subsets=[test-clean]",
    "eval_max_batches=1",
    "logger=csv",
    "threads=1",
]


def run(args: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_alpha_sweep_baseline_and_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run(
        [
            "scripts/train.py",
            "-m",
            "experiment=sweep_small",
            *TINY,
            "pruning.alpha=1e-4,1e-3",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:  # each job trained, evaluated and exported
        results = json.loads((job / "results.json").read_text())
        assert set(results["wer"]) == {"test-clean"} and results["params"]["compacted_total"] > 0
        assert (job / "export" / "report.json").is_file()

    baseline = tmp_path / "same"
    run(
        [
            "scripts/train.py",
            "experiment=[sweep_small,dense_same_size]",
            *TINY,
            f"widths_from={jobs[0] / 'export'}",
            f"hydra.run.dir={baseline}",
        ]
    )
    report_dir = tmp_path / "report"
    run(["scripts/report.py", f"sweep_dir={sweep}", f"run_dirs=[{baseline}]", f"out_dir={report_dir}"])

    rows = {r["group"]: r for r in csv.DictReader((report_dir / "report.csv").open())}
    assert set(rows) == {
        "adaptive dropout α=0.0001",
        "adaptive dropout α=0.001",
        "dense, same size ← adaptive dropout α=0.0001",
    }
    same = rows["dense, same size ← adaptive dropout α=0.0001"]
    assert float(same["params_after_mean"]) == float(rows["adaptive dropout α=0.0001"]["params_after_mean"])
    md = (report_dir / "report.md").read_text()
    assert "## Pruned model vs the baselines matched to it" in md and "WER test-clean" in md
    assert (report_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
