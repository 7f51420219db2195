"""A batch skipped for a non-finite loss counts as a step (documented choice, logged and in results.json):
``trainer.max_steps``, the LR schedule and the pruning schedules all advance, the weights do not."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from conformer_prune.models.ctc import CTCModel
from conformer_prune.tasks import CTCTask
from conformer_prune.tasks.lr import warmup_cosine
from tests.helpers import StrideEncoder, single_thread  # noqa: F401  (autouse)


class Snapshots(L.Callback):
    """Weights after every step and the lr the step used."""

    def __init__(self) -> None:
        self.weights: dict[int, torch.Tensor] = {}
        self.lrs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.weights[trainer.global_step] = pl_module.net.head.weight.detach().clone()


def test_a_skipped_batch_is_a_step_without_an_update(tmp_path) -> None:
    task = CTCTask(
        net=CTCModel(StrideEncoder(input_dim=8, d_model=16), vocab_size=5),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-2),
        scheduler=functools.partial(warmup_cosine, warmup_steps=2),
    )
    real_loss = task.compute_loss
    task.compute_loss = lambda batch: torch.tensor(float("nan")) if batch["skip"] else real_loss(batch)
    gen = torch.Generator().manual_seed(0)
    batches = [
        {
            "features": torch.randn(2, 40, 8, generator=gen),
            "feature_lens": torch.tensor([40, 30]),
            "tokens": torch.randint(1, 5, (2, 3), generator=gen),
            "token_lens": torch.tensor([3, 2]),
            "skip": i == 2,
        }
        for i in range(4)
    ]
    snapshots = Snapshots()
    trainer = L.Trainer(
        max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=tmp_path, limit_val_batches=0, callbacks=[snapshots],
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == 4 and task.nonfinite_total == 1  # the skipped batch used up step 3 of 4
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 4  # ... and advanced the LR schedule
    # step 3 runs at the schedule's lr for step 3 (0.525 x 1e-2), not step 2's (1e-2): the skip moved it on
    assert snapshots.lrs == pytest.approx({0: 0.5e-2, 1: 1e-2, 2: 1e-2, 3: 0.525e-2})
    torch.testing.assert_close(snapshots.weights[3], snapshots.weights[2], rtol=0, atol=0)  # no update at step 3
    assert not torch.equal(snapshots.weights[2], snapshots.weights[1])
