"""Corpus error rates that are right under DDP: edit counts summed over every process.

A corpus WER is ``Σ edits / Σ reference words`` over the whole set. Averaging per-rank WERs (what
``self.log(..., sync_dist=True)`` does with a float) weighs the ranks equally whatever their word counts,
so :class:`CorpusErrorRate` keeps the two sums as torchmetrics states with ``dist_reduce_fx="sum"``:
``compute()`` all-reduces them once and divides. The counts come from :mod:`conformer_prune.wer`, the same
counting :func:`conformer_prune.evaluate.evaluate_net` scores with,
so a validation WER equals the WER of a single-process evaluation of the same weights and utterances.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from conformer_prune.wer import Unit, utterance_edits


def edit_counts(references: list[str], hypotheses: list[str], unit: Unit = "word") -> tuple[int, int]:
    """``(substitutions + deletions + insertions, reference length)`` in words or characters
    (:func:`conformer_prune.wer.utterance_edits`, summed)."""
    errors, lengths = utterance_edits(references, hypotheses, unit)
    return sum(errors), sum(lengths)


class CorpusErrorRate(Metric):
    """WER (``unit="word"``) or CER (``unit="char"``) of everything seen since the last reset, on all ranks.

    ``update(hypotheses, references)`` adds one batch; ``compute()`` is ``errors / words`` of the union of
    the batches of every process (0 for an empty set, as :func:`conformer_prune.evaluate.evaluate_net`).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, unit: Unit = "word") -> None:
        super().__init__()
        if unit not in ("word", "char"):
            raise ValueError(f"CorpusErrorRate: unit must be 'word' or 'char', got {unit!r}")
        self.unit = unit
        self.add_state("errors", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hypotheses: list[str], references: list[str]) -> None:
        errors, total = edit_counts(list(references), list(hypotheses), self.unit)
        self.errors += errors
        self.total += total

    def compute(self) -> Tensor:
        if int(self.total) == 0:
            return torch.tensor(0.0)
        return self.errors.double() / self.total.double()
