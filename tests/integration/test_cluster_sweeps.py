"""Sweeps with the plugins of the sweep extra (``make install-sweep``): a 2-trial Optuna search
(``+hparams_search=optuna_alpha``) whose objective ``scripts/train.py`` returns, and a 2-job sweep
through the submitit launcher's local executor (what ``hydra/launcher=slurm`` runs on a cluster). Tiny
encoder, 4 steps on the tiny tree; about 15-25 s each on 2 cores. Skipped when the extra is missing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_tree_overrides

ROOT = Path(__file__).resolve().parents[2]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


def needs(module: str):
    return pytest.mark.skipif(
        not installed(module),
        reason=f"{module} is not installed: the sweep extra is missing (make install-sweep)",
    )


def run(args: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def tiny(tree: Path, tmp_path: Path) -> list[str]:
    return [
        *tiny_tree_overrides(tree, tmp_path / "cache"),
        "decoding=ctc_greedy",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "eval_subsets=[test-clean]",
        "export=false",
    ]


@needs("hydra_plugins.hydra_optuna_sweeper")
def test_optuna_search_minimises_the_objective_the_entry_point_returns(tiny_librispeech: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    run(
        [
            "scripts/train.py",
            "+hparams_search=optuna_alpha",
            *tiny(tiny_librispeech, tmp_path),
            "objective=cer/test-clean",
            "optimize.param_budget=10000",  # the tiny model has ~11k: the penalty enters the objective
            "hydra.sweeper.n_trials=2",
            "model.optimizer.lr=0.02",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    trials = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    assert [p.name for p in trials] == ["0", "1"]
    objectives, alphas = [], []
    for trial in trials:
        results = json.loads((trial / "results.json").read_text())
        excess = max(0.0, results["params"]["total"] / 10000 - 1.0)
        assert excess > 0
        objectives.append(results["cer"]["test-clean"] + excess)
        config = yaml.safe_load((trial / ".hydra" / "config.yaml").read_text())
        alphas.append(config["pruning"]["alpha"])
    assert all(3.0e-7 <= a <= 3.0e-5 for a in alphas) and alphas[0] != alphas[1]  # sampled from the search space
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(objectives))
    assert best["best_params"]["pruning.alpha"] == pytest.approx(alphas[objectives.index(min(objectives))])


@needs("hydra_plugins.hydra_submitit_launcher")
def test_submitit_local_launcher_runs_every_job_of_a_sweep(tiny_librispeech: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "submitit"
    run(
        [
            "scripts/train.py",
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "hydra.launcher.cpus_per_task=1",
            *tiny(tiny_librispeech, tmp_path),
            "pruning.alpha=1e-4,1e-3",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    jobs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    assert [p.name for p in jobs] == ["0", "1"]
    alphas = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["pruning"]["alpha"] for j in jobs]
    assert sorted(alphas) == [1e-4, 1e-3]
    for job in jobs:
        assert json.loads((job / "results.json").read_text())["global_step"] == 4
    logs = list((sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 2  # two submitit jobs, each with its own log


@needs("hydra_plugins.hydra_submitit_launcher")
@needs("hydra_plugins.hydra_optuna_sweeper")
def test_slurm_launcher_and_optuna_search_compose_together(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "+hparams_search=optuna_alpha", f"hydra.sweep.dir={tmp_path}"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.submitit_folder.startswith(str(tmp_path))
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.objective == "wer/dev-clean"
