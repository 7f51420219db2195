"""Every entry point takes Hydra ``key=value`` overrides, and ``summarize.py`` counts what an experiment trains."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import run_scripts

ROOT = Path(__file__).resolve().parents[2]


def test_summarize_counts_the_model_the_experiment_trains(tmp_path) -> None:
    """transducer_s: Conformer-S of Gulati et al. 2020, Table 1 (10.3 M) with its 1024-token vocabulary."""
    argv = ["scripts/summarize.py", "experiment=transducer_s", f"hydra.run.dir={tmp_path / 'run'}"]
    (done,) = run_scripts(ROOT, [(argv, {})], tmp_path / "out")
    assert done["rc"] == 0, done["stderr"][-2000:]
    assert "(1024 output tokens)" in done["stdout"]
    total = int(re.search(r"^total_params=(\d+)$", done["stdout"], re.M).group(1))
    assert abs(total - 10.3e6) / 10.3e6 < 0.03, total


def test_bench_inference_takes_key_value_overrides_and_writes_nothing(tmp_path) -> None:
    before = sorted(p.name for p in ROOT.iterdir())
    argv = ["scripts/bench_inference.py", "synthetic=true", "preset=tiny", "seconds=1", "runs=1", "warmup=0",
            "threads=1", "keep={ffn: 0.5, query: 0.5}"]  # fmt: skip
    old_style = ["scripts/bench_inference.py", "--synthetic", "--preset", "tiny"]
    done, old = run_scripts(ROOT, [(argv, {}), (old_style, {})], tmp_path / "out")
    assert done["rc"] == 0, done["stderr"][-2000:]
    assert re.search(r"^speedup=[\d.]+ flop_bound=[\d.]+$", done["stdout"].strip().splitlines()[-1])
    assert "keep ffn1=0.5, ffn2=0.5, query=0.5, value=1, conv=1" in done["stdout"]
    assert old["rc"] != 0  # argparse flags are gone
    assert sorted(p.name for p in ROOT.iterdir()) == before
