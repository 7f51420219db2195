"""scripts/reproduce.sh end to end on the tiny encoder (one seed, 2 steps per run), then a rerun that
keeps every finished run. About 2-3 min on 2 cores (11 runs), hence slow."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRA = " ".join(
    ["model/encoder=tiny", "eval_subsets=[test-clean]", "eval_max_batches=1", "logger=csv", "threads=1",
     "trainer.val_check_interval=2"]
)  # fmt: skip

pytestmark = pytest.mark.slow


def reproduce(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "SEEDS": "1", "STEPS": "2", "OUT": str(out), "EXTRA": EXTRA}
    done = subprocess.run(["bash", "scripts/reproduce.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_every_arm_runs_once_and_a_rerun_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    reproduce(out)
    runs = sorted(str(p.parent.relative_to(out)) for p in out.rglob("results.json"))
    assert runs == [
        "ablations/attention_seed1",
        "ablations/conv_seed1",
        "ablations/ffn_seed1",
        "adaptive/alpha1e-6_seed1",
        "adaptive/alpha2e-6_seed1",
        "adaptive/alpha4e-6_seed1",
        "baselines/dense_same_size_seed1",
        "baselines/dense_uniform_seed1",
        "baselines/magnitude_seed1",
        "dense/seed1",
        "l0/alpha3e-4_seed1",
    ]
    magnitude = json.loads((out / "baselines/magnitude_seed1/results.json").read_text())
    assert magnitude["global_step"] == 1  # FINETUNE_STEPS = STEPS / 2
    rows = list(csv.DictReader((out / "report" / "report.csv").open()))
    assert len(rows) == 11 and all(r["seeds"] == "1" for r in rows)

    before = {p: p.stat().st_mtime_ns for p in out.rglob("results.json")}
    rerun = reproduce(out)
    assert rerun.stderr.count("kept (already finished)") >= 11
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results.json")} == before
