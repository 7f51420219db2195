"""A run directory never mixes artefacts of different steps, and an evaluation is never thrown away:

* a finished run continued in its own directory (``ckpt_path=<run>/checkpoints/last.ckpt``, a larger
  ``trainer.max_steps``) trains, evaluates and exports again end to end; its earlier results and export
  move to ``previous/step<N>/``;
* an export that fails at the end of training leaves ``results.json`` (with ``export_error``), no
  partial export, and a one-paragraph error with exit status 1;
* what a training run prints: steps against the budget, no known third-party noise, the summary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from tests.helpers import TINY_TRAIN, run_scripts

ROOT = Path(__file__).resolve().parents[2]


def test_continuing_a_finished_run_in_its_directory_works_end_to_end(tmp_path) -> None:
    run_dir = tmp_path / "run"
    first = [*TINY_TRAIN, "eval_subsets=[dev-clean]", "eval_max_batches=1", f"hydra.run.dir={run_dir}"]
    more = [*first, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "trainer.max_steps=6"]
    (done,) = run_scripts(ROOT, [(first, {})], tmp_path / "out1")
    assert done["rc"] == 0, done["stderr"][-3000:]
    (done,) = run_scripts(ROOT, [(more, {})], tmp_path / "out2")
    assert done["rc"] == 0, done["stderr"][-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    report = json.loads((run_dir / "export" / "report.json").read_text())
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert results["global_step"] == last["global_step"] == 6
    assert report["checkpoint"] == results["checkpoint"] == str(run_dir / "checkpoints" / "last.ckpt")
    previous = run_dir / "previous" / "step000004"
    assert json.loads((previous / "results.json").read_text())["global_step"] == 4
    assert (previous / "export" / "model.safetensors").is_file()
    assert "previous/step000004" in done["stdout"] + done["stderr"]


def test_a_failed_export_keeps_the_evaluation(tmp_path, monkeypatch) -> None:
    import conformer_prune.export
    from conformer_prune.cli.entry import UserErrorReport, exit_on_user_error
    from conformer_prune.cli.train import train
    from conformer_prune.export import ExportVerificationError

    def diverged(*args, **kwargs):
        raise ExportVerificationError("max |compacted - masked| = 0.00049 > atol=0.0001: nothing was written")

    monkeypatch.setattr(conformer_prune.export, "export_checkpoint", diverged)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    overrides = [*TINY_TRAIN[1:], "callbacks.progress_bar=null", "eval_subsets=[dev-clean]", "eval_max_batches=1",
                 f"hydra.run.dir={tmp_path}", f"paths.output_dir={tmp_path}"]  # fmt: skip
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(UserErrorReport) as done, exit_on_user_error():  # Hydra prints it alone and exits 1
        train(cfg)
    message = str(done.value)
    assert "\n\n" not in message
    assert "the export failed" in message and "0.00049" in message and str(tmp_path / "results.json") in message
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["export"] is None and results["export_error"].startswith("ExportVerificationError: max")
    assert set(results["wer"]) == {"dev-clean"} and results["global_step"] == 4
    assert not (tmp_path / "export").exists()


def test_a_training_run_prints_steps_the_summary_and_no_known_noise(finished_tiny_run) -> None:
    out = finished_tiny_run.stdout + finished_tiny_run.stderr
    for noise in ("LeafSpec", "Total FLOPs", "Loading the LM will be faster", "*" * 20, "💡 Tip", "Epoch 0/-2",
                  "is not supported by the model summary", "so 100% of the batches will be used"):  # fmt: skip
        assert noise not in out, noise
    assert re.search(r"step .*4/4", out)  # the progress bar (its last frame without a terminal)
    assert re.search(r"step 4/4 \(100%\) \| [\d.]+ steps/s \| ETA", out)  # the progress line, logged
    results = json.loads((finished_tiny_run.run_dir / "results.json").read_text())
    for subset in ("dev-clean", "test-clean"):
        for key in ("wer", "cer", "wer_greedy", "cer_greedy"):
            assert f"{100 * results[key][subset]:.2f}" in out, (subset, key)
    params = results["params"]
    assert params["dense"] == params["total"] - results["retention"]["all"]["units"]  # one keep logit a unit
    assert f"{params['dense']:,} dense -> {params['compacted_total']:,} compacted" in out
    assert f"scripts/evaluate.py model_path={results['export']}" in out
    assert "tensorboard --logdir" in out
    log = (finished_tiny_run.run_dir / "train.log").read_text()
    assert "Run summary" in log and f"{100 * results['wer']['test-clean']:.2f}" in log
