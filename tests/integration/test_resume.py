"""A run resumed from a mid-training checkpoint (as after a process kill) continues at the same step and
ends with exactly the weights of an uninterrupted run: schedules, sampler position, SpecAugment masks,
dropout and Gumbel noise are all functions of (seed, step)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
COMMON = [
    "debug=fast",  # 4 steps, validation (and a checkpoint) every 2
    "model/encoder=tiny",
    "callbacks.model_checkpoint.save_top_k=-1",
    "callbacks.progress_bar=null",
    "export=false",
    "eval_subsets=[dev-clean]",
    "eval_max_batches=1",
    "logger=csv",
    "threads=1",
]


def train(run_dir: Path, *extra: str) -> None:
    command = [sys.executable, "scripts/train.py", *COMMON, f"hydra.run.dir={run_dir}", *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_resume_matches_an_uninterrupted_run(tmp_path) -> None:
    train(tmp_path / "full")
    (mid,) = (tmp_path / "full" / "checkpoints").glob("step000002-*.ckpt")
    train(tmp_path / "resumed", f"ckpt_path={mid}")
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["global_step"] == full["global_step"] == 4
    assert full["state_dict"].keys() == resumed["state_dict"].keys()
    for name, value in full["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=0, msg=name)
