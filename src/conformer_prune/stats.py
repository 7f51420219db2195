"""Paired comparisons of two models on the same utterances: the paired bootstrap over utterances.

Two evaluations of the same subset give, per utterance ``i``, edit counts ``a_i`` and ``b_i`` over a
reference of length ``n_i``. The corpus error rates are ``A = Σa/Σn`` and ``B = Σb/Σn``. Resampling
utterances with replacement (the same resample for both models) gives the distribution of ``B − A``
whose 2.5 % and 97.5 % quantiles are the 95 % confidence interval (Koehn 2004; Bisani & Ney 2004).
A difference whose interval excludes 0 is a win or a loss; otherwise a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """``b − a`` in corpus error rate with its bootstrap interval (both in rate units, not %)."""

    a: float
    b: float
    diff: float
    low: float
    high: float

    def verdict(self, lower_is_better: bool = True) -> str:
        """``better`` / ``worse`` / ``tie`` for ``b`` against ``a``, by the interval."""
        if self.low > 0:
            return "worse" if lower_is_better else "better"
        if self.high < 0:
            return "better" if lower_is_better else "worse"
        return "tie"


def paired_bootstrap(
    errors_a: Sequence[int],
    errors_b: Sequence[int],
    lengths: Sequence[int],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap over utterances of ``B − A`` (see the module docstring).

    Raises:
        ValueError: the three sequences differ in length or are empty.
    """
    a, b, n = (np.asarray(x, dtype=np.float64) for x in (errors_a, errors_b, lengths))
    if not (len(a) == len(b) == len(n)) or len(a) == 0:
        raise ValueError(f"a paired bootstrap needs equal, non-empty utterance lists, got {len(a)}, {len(b)}, {len(n)}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(resamples, len(a)))  # (R, N)
    total = n[idx].sum(1)
    diffs = (b[idx].sum(1) - a[idx].sum(1)) / np.maximum(total, 1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    rate_a, rate_b = a.sum() / n.sum(), b.sum() / n.sum()
    return PairedDifference(float(rate_a), float(rate_b), float(rate_b - rate_a), float(low), float(high))


def pooled_paired_bootstrap(
    pairs: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """One interval for several seeds: ``pairs`` holds ``(errors_a, errors_b, lengths)`` per seed pair (the
    same utterances each time). Each resample draws the same utterances for every pair and pools the counts,
    so the interval covers utterance sampling with the seeds' average model."""
    if not pairs:
        raise ValueError("pooled_paired_bootstrap needs at least one pair")
    a = np.stack([np.asarray(p[0], dtype=np.float64) for p in pairs])  # (S, N)
    b = np.stack([np.asarray(p[1], dtype=np.float64) for p in pairs])
    n = np.stack([np.asarray(p[2], dtype=np.float64) for p in pairs])
    if not (a.shape == b.shape == n.shape):
        raise ValueError("every pair must cover the same utterances")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.shape[1], size=(resamples, a.shape[1]))  # (R, N)
    total = n[:, idx].sum((0, 2))
    diffs = (b[:, idx].sum((0, 2)) - a[:, idx].sum((0, 2))) / np.maximum(total, 1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    rate_a, rate_b = a.sum() / n.sum(), b.sum() / n.sum()
    return PairedDifference(float(rate_a), float(rate_b), float(rate_b - rate_a), float(low), float(high))
