"""Sparsity monitor: kept-unit statistics while training (TensorBoard + progress bar).

Logs, per site kind and overall: ``prune/expected_keep/<kind>`` (mean σ(β)), ``prune/kept/<kind>``
(fraction of units the eval gate keeps), ``prune/kept_ratio``, ``prune/decided`` (fraction of units with
σ(β) below 0.1 or above 0.9: 1.0 when the retention probabilities are fully bimodal) and
``prune/params_if_compacted`` (parameter count of the model compacted now). At each validation it also
writes histograms of σ(β) per site kind and an image of kept units per layer × site kind to TensorBoard.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from conformer_prune.dropout.base import LearnsRetention
from conformer_prune.pruning.compact import compact_copy, count_params, expected_keep, kept_units, retention_summary
from conformer_prune.sites import kinds as site_kinds

log = logging.getLogger(__name__)


class SparsityMonitor(L.Callback):
    """Logs kept-unit statistics every ``every_n_steps`` steps and figures at every validation."""

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.sparsity_monitor.every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps

    def _stats(self, pl_module: L.LightningModule) -> dict[str, float]:
        kept = kept_units(pl_module.net)
        stats = {f"prune/expected_keep/{k}": v for k, v in expected_keep(pl_module.net).items()}
        total_kept = total = 0
        for kind, pairs in kept.items():
            k, n = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
            stats[f"prune/kept/{kind}"] = k / n if n else 0.0
            total_kept, total = total_kept + k, total + n
        stats["prune/kept_ratio"] = total_kept / total if total else 1.0
        decided = retention_summary(pl_module.net).get("all")
        if decided is not None:
            stats["prune/decided"] = decided["decided"]
        return stats

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            stats = self._stats(pl_module)
            pl_module.log("prune/kept_ratio", stats.pop("prune/kept_ratio"), prog_bar=True, batch_size=1)
            pl_module.log_dict(stats, batch_size=1)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        params = count_params(compact_copy(pl_module.net))
        pl_module.log("prune/params_if_compacted", float(params), batch_size=1)
        experiment = getattr(trainer.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_histogram"):
            return
        step = trainer.global_step
        by_kind: dict[str, list[torch.Tensor]] = {}
        for site in pl_module.net.encoder.sites():
            if isinstance(site.module, LearnsRetention):
                by_kind.setdefault(site.kind, []).append(site.module.keep_prob().detach().cpu())
        for kind, probs in by_kind.items():
            experiment.add_histogram(f"prune/keep_prob/{kind}", torch.cat(probs), step)
        experiment.add_figure("prune/kept_units", kept_units_figure(kept_units(pl_module.net)), step)


def kept_units_figure(kept: dict[str, list[list[int]]]):
    """Heat map of the kept fraction per layer (rows) × site kind (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in site_kinds() if k in kept]
    layers = len(next(iter(kept.values()))) if kept else 0
    grid = torch.tensor([[kept[k][i][0] / max(kept[k][i][1], 1) for k in kinds] for i in range(layers)])
    fig, ax = plt.subplots(figsize=(1.2 * len(kinds) + 1.5, 0.35 * layers + 1.2))
    image = ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_yticks(range(layers), [str(i) for i in range(layers)])
    ax.set_ylabel("layer")
    for i in range(layers):
        for j, kind in enumerate(kinds):
            ax.text(j, i, f"{kept[kind][i][0]}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(image, ax=ax, label="kept fraction")
    fig.tight_layout()
    return fig
