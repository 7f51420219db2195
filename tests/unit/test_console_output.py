"""What a user sees: step progress with budget, rate and ETA; a model summary without empty FLOPs; the
end-of-run summary listing the numbers of results.json (and written to the log file)."""

from __future__ import annotations

import io
import json
import logging
import re

import lightning as L
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from rich.console import Console

from conformer_prune.callbacks import ModelSummary, StepProgressBar
from conformer_prune.run_summary import evaluate_summary, print_summary, render_text, train_summary
from tests.helpers import single_thread  # noqa: F401  (autouse)


class Logged(BoringModel):
    """BoringModel with a progress-bar metric, like val/wer, and 3 batches per epoch."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"], prog_bar=True)
        return out

    def validation_step(self, batch, batch_idx):
        self.log("val/wer", 0.25, prog_bar=True)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(3, 32), batch_size=1)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(1, 32), batch_size=1)


def test_progress_counts_global_steps_against_the_budget_across_epochs(tmp_path, caplog) -> None:
    screen = io.StringIO()
    bar = StepProgressBar(console_kwargs={"file": screen, "force_terminal": True, "width": 160})
    trainer = L.Trainer(
        max_steps=7,  # 3 batches per epoch: the bar must not restart at each epoch
        max_epochs=-1,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    with caplog.at_level(logging.INFO, logger="conformer_prune.callbacks.progress"):
        trainer.fit(Logged())
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen.getvalue())
    assert "step" in text and "7/7" in text and "steps/s" in text
    assert not re.search(r"Epoch \d", text)
    assert not re.search(r"\b[0-3]/3\b", text)  # never the per-epoch count
    assert "val/wer: 0.250" in text
    # one plain line per validation (in the log files when the console is a terminal)
    line = bar.progress_line(trainer, trainer.lightning_module)
    assert re.match(r"step 7/7 \(100%\) \| [\d.]+ steps/s \| ETA 0:00:00 \| .*val/wer: 0\.250", line), line


def test_progress_line_without_a_terminal_goes_to_the_log(tmp_path, caplog) -> None:
    bar = StepProgressBar(console_kwargs={"file": io.StringIO(), "force_terminal": False})
    trainer = L.Trainer(
        max_steps=4,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
    )
    with caplog.at_level(logging.INFO, logger="conformer_prune.callbacks.progress"):
        trainer.fit(Logged())
    lines = [r.getMessage() for r in caplog.records if r.name == "conformer_prune.callbacks.progress"]
    assert [line.split(" |")[0] for line in lines] == ["step 2/4 (50%)", "step 4/4 (100%)"]
    assert all("ETA" in line and "steps/s" in line for line in lines)


def test_model_summary_has_no_empty_flops(capsys) -> None:
    import rich

    rich.reconfigure(file=io.StringIO(), width=120)
    console = rich.get_console()
    data = [(" ", ["0", "1"]), ("Name", ["net", "net.head"]), ("Type", ["CTCModel", "Linear"]),
            ("Params", ["11.4 K", "510"]), ("Mode", ["train", "train"]), ("FLOPs", ["0", "0"])]  # fmt: skip
    ModelSummary.summarize(data, 11370, 11370, 0.045, {"train": 2, "eval": 0}, 0)
    text = console.file.getvalue()
    assert "net.head" in text and "11.4 K" in text
    assert "FLOPs" not in text


RESULTS = {
    "params": {"total": 2240654, "encoder": 2190000, "compacted_total": 950660, "compacted_encoder": 900006},
    "macs_per_second": {"dense": 89_100_000, "compacted": 46_500_000},
    "decoding": "beam_lm",
    "train_seconds": 612.4,
    "global_step": 1500,
    "nonfinite_batches": 2,
    "optimizer_updates": 1498,
    "checkpoint": "/runs/r/checkpoints/last.ckpt",
    "export": "/runs/r/export",
    "corpus": {"root": "/nowhere/LibriSpeech"},
    "retention": {"all": {"units": 4032, "pruned": 0.66, "near_zero": 0.58, "near_one": 0.26, "decided": 0.84}},
    "per_subset": {
        "dev-clean": {"utterances": 49, "words": 677, "audio_seconds": 300.0,
                      "greedy": {"wer": 0.6012, "cer": 0.2214, "rtf": 0.0011},
                      "default": {"wer": 0.3388, "cer": 0.1802, "rtf": 0.0042}},
        "test-clean": {"utterances": 51, "words": 706, "audio_seconds": 310.0,
                       "greedy": {"wer": 0.6141, "cer": 0.2262, "rtf": 0.0012},
                       "default": {"wer": 0.3470, "cer": 0.1851, "rtf": 0.0043}},
    },
}  # fmt: skip


def test_the_dense_count_has_no_keep_logits(tmp_path) -> None:
    """``params.dense`` (every unit, no keep logits) is what the summary calls dense, when recorded."""
    results = {**RESULTS, "params": {**RESULTS["params"], "dense": 2240654 - 4032}}
    text = render_text(train_summary(results, tmp_path))
    assert "2,236,622 dense -> 950,660 compacted (-57.5 %)" in text


def test_train_summary_lists_the_numbers_of_results_json(tmp_path) -> None:
    (tmp_path / "tensorboard").mkdir()
    text = render_text(train_summary(RESULTS, tmp_path))
    assert "2,240,654 dense -> 950,660 compacted (-57.6 %)" in text
    assert "89.1 M dense -> 46.5 M compacted (-47.8 %)" in text
    assert "1,500 steps, 0:10:12 of training (2 non-finite batches skipped: counted as steps" in text
    assert "66.0 %" in text  # units pruned
    for subset, entry in RESULTS["per_subset"].items():
        for decoder, label in (("greedy", "greedy"), ("default", "beam_lm")):
            numbers = entry[decoder]
            row = rf"{subset}\s.*\s{label}\s.*{100 * numbers['wer']:.2f}\s.*{100 * numbers['cer']:.2f}"
            assert re.search(row, text), (subset, decoder)
    assert "/runs/r/export" in text
    assert "scripts/evaluate.py model_path=/runs/r/export" in text
    assert "scripts/transcribe.py model_path=/runs/r/export audio=[" in text
    assert f"tensorboard --logdir {tmp_path / 'tensorboard'}" in text


def test_train_summary_reports_a_failed_export(tmp_path) -> None:
    failed = {**RESULTS, "export": None, "export_error": "ExportVerificationError: max |diff| 4.9e-04 > atol=1e-04"}
    text = render_text(train_summary(failed, tmp_path))
    assert "FAILED: ExportVerificationError: max |diff| 4.9e-04" in text
    assert "scripts/evaluate.py model_path=/runs/r/checkpoints/last.ckpt" not in text or "FAILED" in text


def test_evaluate_summary_and_the_log_file(tmp_path) -> None:
    results = {**RESULTS, "model": "export", "model_path": "/runs/r/export", "data_root": "/data"}
    handler = logging.FileHandler(tmp_path / "evaluate.log")
    logging.getLogger().addHandler(handler)
    screen = io.StringIO()
    try:
        printed = print_summary(evaluate_summary(results, tmp_path), Console(file=screen, width=200))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert "61.41" in printed and "34.70" in printed and str(tmp_path / "results.json") in printed
    assert "scripts/transcribe.py model_path=/runs/r/export" in printed
    assert "34.70" in (tmp_path / "evaluate.log").read_text()  # the same table in the log file
    assert "34.70" in screen.getvalue()
    assert json.loads(json.dumps(results)) == results  # nothing in the summary mutates the results
