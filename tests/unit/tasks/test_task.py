"""ASRTask: penalty weighting, non-finite guard, schedule callbacks restored exactly on resume."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from conformer_prune.callbacks import GumbelTemperature, RetentionTarget, SparsityMonitor
from conformer_prune.dropout import AdaptiveDropout, RetentionTargetSchedule, TemperatureSchedule
from conformer_prune.models import ConformerEncoder
from conformer_prune.models.ctc import CTCModel
from conformer_prune.tasks import CTCTask
from conformer_prune.tasks.base import NonFiniteLossError


class CharTokenizer:
    """Stand-in tokenizer: blank 0, letters 1..26, space 27."""

    vocab_size = 28
    model_bytes = b"stand-in"

    def decode(self, ids: list[int]) -> str:
        return "".join(" " if i == 27 else chr(64 + i) for i in ids if i)


def make_batch(n: int = 2, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 27, (n, 4), generator=gen)
    return {
        "features": torch.randn(n, 60, 20, generator=gen),
        "feature_lens": torch.tensor([60, 48][:n]),
        "tokens": tokens,
        "token_lens": torch.tensor([4, 3][:n]),
        "texts": [CharTokenizer().decode(t.tolist()) for t in tokens],
        "ids": [f"u{i}" for i in range(n)],
    }


def make_task(alpha: float = 1e-3, reduction: str = "sum") -> CTCTask:
    adaptive = functools.partial(AdaptiveDropout, init_keep_prob=0.9)
    encoder = ConformerEncoder(
        input_dim=20,
        d_model=16,
        num_layers=1,
        num_heads=2,
        d_ff=24,
        kernel_size=3,
        subsampling_channels=4,
        ffn_dropout=adaptive,
        query_dropout=adaptive,
        value_dropout=adaptive,
        conv_dropout=adaptive,
    )
    task = CTCTask(
        net=CTCModel(encoder, vocab_size=28),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
        alpha=alpha,
        penalty_reduction=reduction,
        max_nonfinite=2,
    )
    task.tokenizer = CharTokenizer()
    return task


def test_penalty_sums_every_site_and_mean_divides_by_units() -> None:
    task = make_task()
    for site in task.sites():
        site.set_target(0.0)
    units = sum(s.num_units for s in task.sites())
    beta = task.sites()[0].keep_logits.detach()[0].item()
    assert task.penalty().item() == pytest.approx(units * beta**2, rel=1e-5)
    task.penalty_reduction = "mean"
    assert task.penalty().item() == pytest.approx(beta**2, rel=1e-5)


def test_strategy_logits_get_no_weight_decay() -> None:
    task = make_task()
    task.trainer = None
    task.scheduler_factory = None
    optimizer = task.configure_optimizers()
    logits = {id(s.keep_logits) for s in task.sites()}
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert {id(p) for p in optimizer.param_groups[2]["params"]} == logits
    assert not logits & decayed
    assert all(p.dim() >= 2 for p in optimizer.param_groups[0]["params"])


def test_nonfinite_losses_are_skipped_then_stop_the_run() -> None:
    task = make_task()
    task.compute_loss = lambda batch: torch.tensor(float("nan"))
    task.log = lambda *a, **k: None
    assert task.training_step(make_batch(), 0) is None
    assert task.training_step(make_batch(), 1) is None
    with pytest.raises(NonFiniteLossError, match="max_nonfinite"):
        task.training_step(make_batch(), 2)
    assert task.nonfinite_total == 3


class Recorder(L.Callback):
    def __init__(self) -> None:
        self.seen: dict[int, tuple[float, float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        site = pl_module.sites()[0]
        self.seen[trainer.global_step] = (float(site.temperature), float(site.target))


def fit(task: CTCTask, tmp_path, max_steps: int, ckpt_path=None) -> Recorder:
    recorder = Recorder()
    loader = DataLoader([make_batch(seed=i) for i in range(4)], batch_size=None)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[
            GumbelTemperature(TemperatureSchedule(1.0, 0.2, "linear")),
            RetentionTarget(RetentionTargetSchedule(0.9, -4.0, "linear", 0.0, 1.0)),
            SparsityMonitor(every_n_steps=1),
            recorder,  # after the schedule callbacks: sees the values they set
        ],
    )
    trainer.fit(task, train_dataloaders=loader, ckpt_path=ckpt_path)
    if ckpt_path is None:
        trainer.save_checkpoint(tmp_path / f"step{max_steps}.ckpt")
    return recorder


def test_resume_restores_temperature_and_target_exactly(tmp_path) -> None:
    torch.manual_seed(0)
    full = fit(make_task(), tmp_path / "full", max_steps=8)
    torch.manual_seed(0)
    fit(make_task(), tmp_path / "part", max_steps=8 // 2)
    resumed = fit(make_task(), tmp_path / "resumed", max_steps=8, ckpt_path=tmp_path / "part" / "step4.ckpt")
    assert set(resumed.seen) == {4, 5, 6, 7}
    for step, values in resumed.seen.items():
        assert values == pytest.approx(full.seen[step])
    assert full.seen[0][0] == pytest.approx(1.0) and full.seen[7][0] < full.seen[1][0]
