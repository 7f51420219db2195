"""SparsityMonitor on a tiny model fitted with a TensorBoard logger: the scalars, the σ(β) histograms and
the kept-units image it writes, read back from the event file."""

from __future__ import annotations

import io

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from conformer_prune.callbacks import SparsityMonitor
from conformer_prune.callbacks.sparsity import kept_units_figure
from conformer_prune.pruning.compact import compact_copy, count_params, encoder_of, kept_units
from tests.helpers import single_thread  # noqa: F401 - autouse fixture
from tests.unit.tasks.test_task import make_batch, make_task

MAX_STEPS = 2


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A 2-step fit, one validation at the end; some units of every site start (and stay) pruned."""
    torch.manual_seed(0)
    task = make_task()
    with torch.no_grad():
        for index, site in enumerate(encoder_of(task.net).sites()):
            n = site.module.num_units
            pruned = torch.arange(n) < (index + 1) * n // 8  # a different share per site, far below 0.5
            site.module.keep_logits.copy_(torch.where(pruned, torch.tensor(-4.0), torch.tensor(4.0)))
    root = tmp_path_factory.mktemp("sparsity")
    logger = TensorBoardLogger(root, name="tb", version="")
    loader = DataLoader([make_batch(seed=i) for i in range(2)], batch_size=None)
    trainer = L.Trainer(
        max_steps=MAX_STEPS,
        accelerator="cpu",
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        val_check_interval=MAX_STEPS,
        limit_val_batches=1,
        log_every_n_steps=1,
        callbacks=[SparsityMonitor(every_n_steps=1)],
    )
    trainer.fit(task, train_dataloaders=loader, val_dataloaders=loader)
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir, size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    events.Reload()
    return task, events


def test_histograms_of_keep_prob_per_site_kind(fitted) -> None:
    task, events = fitted
    probs: dict[str, list[torch.Tensor]] = {}
    for site in encoder_of(task.net).sites():
        probs.setdefault(site.kind, []).append(site.module.keep_prob().detach())
    assert set(events.Tags()["histograms"]) == {f"prune/keep_prob/{kind}" for kind in probs}
    for kind, values in probs.items():
        (event,) = events.Histograms(f"prune/keep_prob/{kind}")  # one validation, after the last step
        expected = torch.cat(values).double()
        assert event.step == MAX_STEPS
        assert event.histogram_value.num == expected.numel()
        assert event.histogram_value.sum == pytest.approx(float(expected.sum()), rel=1e-5)
        assert event.histogram_value.min == pytest.approx(float(expected.min()), rel=1e-5)
        assert event.histogram_value.max == pytest.approx(float(expected.max()), rel=1e-5)


def test_kept_units_image_and_scalars(fitted) -> None:
    task, events = fitted
    (image,) = events.Images("prune/kept_units")
    assert image.step == MAX_STEPS
    png = Image.open(io.BytesIO(image.encoded_image_string))
    assert png.size == (image.width, image.height) and min(png.size) > 50
    scalars = events.Tags()["scalars"]
    (params,) = events.Scalars("prune/params_if_compacted")
    assert params.value == count_params(compact_copy(task.net))
    kept = kept_units(task.net)
    for kind, pairs in kept.items():
        assert f"prune/kept/{kind}" in scalars
        last = events.Scalars(f"prune/kept/{kind}")[-1].value
        assert last == pytest.approx(sum(k for k, _ in pairs) / sum(n for _, n in pairs))
    total = [sum(k for pairs in kept.values() for k, _ in pairs), sum(n for pairs in kept.values() for _, n in pairs)]
    assert events.Scalars("prune/kept_ratio")[-1].value == pytest.approx(total[0] / total[1])
    assert "prune/decided" in scalars and len(events.Scalars("prune/kept_ratio")) == MAX_STEPS


def test_kept_units_figure_shows_the_kept_fraction_and_count_per_layer_and_kind() -> None:
    kept = {"conv": [[2, 2], [1, 2]], "ffn1": [[3, 4], [0, 4]]}
    fig = kept_units_figure(kept)
    (ax,) = [a for a in fig.axes if a.images]
    grid = np.asarray(ax.images[0].get_array())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ffn1", "conv"]  # registry order
    np.testing.assert_allclose(grid, [[0.75, 1.0], [0.0, 0.5]])
    assert [t.get_text() for t in ax.texts] == ["3", "2", "0", "1"]
