"""Lightning callbacks of the baselines (``conformer_prune.baselines``).

* :class:`MagnitudePruneInit`: magnitude structured pruning at fit start (dense weights in, the top-k
  units of every site kept), then the run fine-tunes.
* :class:`RequireSource`: refuses to train a baseline experiment whose source run was not given.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L

from conformer_prune.baselines import counts_from_ratio, kept_counts_from, load_dense_weights_, magnitude_prune_
from conformer_prune.pruning.compact import encoder_of

log = logging.getLogger(__name__)


class MagnitudePruneInit(L.Callback):
    """Load a dense checkpoint and fix every site's mask to its top-``k`` units by weight norms.

    Runs in ``setup`` (before Lightning restores a resumed checkpoint, which then wins: the masks are
    buffers and travel in checkpoints). Needs ``dropout=fixed_mask`` at every site.

    Args:
        init_from: dense training checkpoint (or its run directory) to start from.
        counts_from: export directory (or its run dir / ``report.json``) whose ``kept`` counts to match.
        keep_ratio: instead of ``counts_from``, keep this fraction of every site.
    """

    def __init__(
        self, init_from: str | None = None, counts_from: str | None = None, keep_ratio: float | None = None
    ) -> None:
        if counts_from is not None and keep_ratio is not None:
            raise ValueError("give counts_from or keep_ratio for magnitude pruning, not both")
        self.init_from = init_from
        self.counts_from = counts_from
        self.keep_ratio = keep_ratio
        self.applied: dict[str, list[list[int]]] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.applied is not None:
            return
        if self.init_from is None:
            raise ValueError("magnitude pruning needs init_from=<dense checkpoint or run dir> (it is null)")
        if self.counts_from is None and self.keep_ratio is None:
            raise ValueError("magnitude pruning needs counts_from=<adaptive run export dir> or keep_ratio=<fraction>")
        encoder = encoder_of(pl_module.net)
        file = load_dense_weights_(pl_module.net, self.init_from)
        if self.counts_from is not None:
            counts = kept_counts_from(self.counts_from)
        else:
            counts = counts_from_ratio(encoder, float(self.keep_ratio))
        self.applied = magnitude_prune_(encoder, counts)
        kept = sum(k for pairs in self.applied.values() for k, _ in pairs)
        total = sum(t for pairs in self.applied.values() for _, t in pairs)
        log.info(
            "magnitude pruning: weights from %s, %d of %d units kept (%s)",
            file,
            kept,
            total,
            self.counts_from or f"keep_ratio={self.keep_ratio}",
        )


class RequireSource(L.Callback):
    """Stop before training when none of ``sources`` is set (``experiment=dense_same_size`` without ``widths_from``).

    Args:
        sources: config key -> its value (interpolated in the experiment config); one must be non-null.
        hint: what to pass, appended to the error.
    """

    def __init__(self, sources: Mapping[str, Any], hint: str = "") -> None:
        self.sources = dict(sources)
        self.hint = hint

    def check(self) -> None:
        """Raise a ``ValueError`` naming the keys when none is set."""
        if all(value in (None, "") for value in self.sources.values()):
            keys = " or ".join(f"{key}=..." for key in self.sources)
            raise ValueError(
                f"this experiment needs {keys} on the command line" + (f": {self.hint}" if self.hint else "")
            )

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.check()
