"""An invalid config value stops scripts/train.py with a message naming the key, before any run dir exists."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "override, key",
    [("pruning.alpha=-1", "pruning.alpha"), ("model.net.encoder.num_heads=5", "model.net.encoder")],
)
def test_invalid_value_stops_before_the_run_dir_is_written(override: str, key: str, tmp_path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", override, f"hydra.run.dir={run_dir}", f"paths.data_dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert key in proc.stderr
    assert not run_dir.exists()


def test_unknown_key_is_named(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/train.py", "pruning.alfa=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "pruning.alfa" in proc.stderr
    assert not (tmp_path / "run").exists()
