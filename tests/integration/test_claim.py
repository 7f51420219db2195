"""scripts/claim.sh end to end on the tiny encoder (two seeds, 12 steps per run: every arm, the dropout-rate
tuning, the LM-weight tuning and the report), then a rerun that redoes nothing. A few minutes on 2 cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRA = " ".join(
    ["model/encoder=tiny", "trainer.max_steps=12", "trainer.val_check_interval=6", "data.monitor_train_utterances=5",
     "eval_max_batches=1"]
)  # fmt: skip

pytestmark = pytest.mark.slow


def claim(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PY": sys.executable, "OUT": str(out), "EXTRA": EXTRA, "STEPS": "12", "SEEDS": "1,2",
           "DROPOUT_RATES": "0.2", "LM_WEIGHTS": "1.0,2.0"}  # fmt: skip
    done = subprocess.run(["bash", "scripts/claim.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_every_arm_then_the_report_and_a_rerun_redoes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "claim"
    claim(out)
    arms = {p.parent.parent.name for p in out.glob("*/seed*/results.json")}
    assert {"dense", "adaptive", "adaptive_strong", "dense_same_size", "dense_uniform", "magnitude", "l0"} <= arms
    assert (out / "dense_drop0.2" / "seed1" / "results.json").is_file()
    for arm in arms - {"dense_drop0.2"}:
        assert sorted(p.parent.name for p in (out / arm).glob("seed*/results.json")) == ["seed1", "seed2"], arm
    magnitude = json.loads((out / "magnitude/seed1/results.json").read_text())
    assert magnitude["global_step"] == 12 - 12 * 2 // 3  # fine-tuned for the last third
    assert (out / "dense/seed1/checkpoints/two_thirds").is_dir()
    weight = (out / "adaptive/lm_weight.txt").read_text().strip()
    assert weight in ("1.0", "2.0") and (out / f"adaptive/seed2/lm{weight}/results.json").is_file()
    tuned = {w: json.loads((out / f"adaptive/seed1/dev_lm{w}/results.json").read_text()) for w in ("1.0", "2.0")}
    assert all(list(r["wer"]) == ["dev-clean"] for r in tuned.values())  # the weight is chosen on dev alone
    assert min(tuned, key=lambda w: tuned[w]["wer"]["dev-clean"]) == weight
    tested = json.loads((out / f"adaptive/seed1/lm{weight}/results.json").read_text())
    assert set(tested["wer"]) == {"test-clean", "test-other"}
    report = (out / "report" / "claim.md").read_text()
    assert "## vs dense: test-clean CER, greedy" in report and "pooled over seeds" in report
    numbers = json.loads((out / "report" / "claim.json").read_text())
    assert set(numbers["arms"]) >= {"dense", "adaptive"}
    assert (out / "report" / "learning_curves.png").stat().st_size > 0

    before = {p: p.stat().st_mtime_ns for p in out.rglob("results.json")}
    rerun = claim(out)
    assert rerun.stderr.count("kept:") >= 2 * 7
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results.json")} == before
