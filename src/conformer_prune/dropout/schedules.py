"""Pure schedules of the global step: the Gumbel temperature τ(t) and the retention target c(t).

A schedule maps ``(step, total_steps)`` to a float and holds no state, so a run resumed from a
checkpoint at step ``t`` sees exactly the value an uninterrupted run saw. Progress is measured as a
fraction of ``total_steps`` (the trainer's ``max_steps``) so one config fits any run length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from conformer_prune.dropout.adaptive import logit

Shape = Literal["constant", "linear", "exponential", "cosine"]


def _progress(step: int, total_steps: int, start_frac: float, end_frac: float) -> float:
    """Fraction in ``[0, 1]`` of the way from ``start_frac`` to ``end_frac`` of training."""
    start, end = start_frac * total_steps, end_frac * total_steps
    if step <= start:
        return 0.0
    if step >= end or end <= start:
        return 1.0
    return (step - start) / (end - start)


@dataclass(frozen=True)
class AnnealSchedule:
    """Moves from ``start`` to ``end`` between ``start_frac`` and ``end_frac`` of training.

    ``shape`` is ``constant`` (always ``start``), ``linear``, ``exponential`` (geometric; both ends
    must be > 0) or ``cosine`` (half-cosine ease).
    """

    start: float
    end: float
    shape: Shape = "linear"
    start_frac: float = 0.0
    end_frac: float = 1.0

    def __post_init__(self) -> None:
        if self.shape not in ("constant", "linear", "exponential", "cosine"):
            raise ValueError(f"schedule shape must be constant|linear|exponential|cosine, got {self.shape!r}")
        if not 0.0 <= self.start_frac <= self.end_frac <= 1.0:
            raise ValueError(f"schedule needs 0 <= start_frac <= end_frac <= 1, got {self.start_frac}, {self.end_frac}")
        if self.shape == "exponential" and (self.start <= 0 or self.end <= 0):
            raise ValueError("an exponential schedule needs start > 0 and end > 0")

    def __call__(self, step: int, total_steps: int) -> float:
        if self.shape == "constant":
            return self.start
        frac = _progress(step, total_steps, self.start_frac, self.end_frac)
        if self.shape == "linear":
            return self.start + (self.end - self.start) * frac
        if self.shape == "exponential":
            return self.start * (self.end / self.start) ** frac
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * frac))


def TemperatureSchedule(  # noqa: N802 - a factory that reads like the class it returns
    tau_start: float = 2.0 / 3.0,
    tau_end: float = 2.0 / 3.0,
    shape: Shape = "constant",
    start_frac: float = 0.0,
    end_frac: float = 1.0,
) -> AnnealSchedule:
    """Gumbel temperature τ(t) from ``tau_start`` to ``tau_end`` (both > 0)."""
    if tau_start <= 0 or tau_end <= 0:
        raise ValueError(f"temperatures must be > 0, got tau_start={tau_start}, tau_end={tau_end}")
    return AnnealSchedule(tau_start, tau_end, shape, start_frac, end_frac)


def RetentionTargetSchedule(  # noqa: N802
    init_keep_prob: float = 0.9,
    end_logit: float = -6.0,
    shape: Shape = "linear",
    start_frac: float = 0.1,
    end_frac: float = 0.6,
) -> AnnealSchedule:
    """Target logit c(t): ``logit(init_keep_prob)`` until ``start_frac``, down to ``end_logit`` at ``end_frac``.

    Defaults follow ``reference/paper.md`` §8 (c = 2.197 → −6 between 10 % and 60 % of training).
    """
    if not 0.0 < init_keep_prob < 1.0:
        raise ValueError(f"pruning.target.init_keep_prob must be in (0, 1), got {init_keep_prob}")
    if shape == "exponential":
        raise ValueError("pruning.target.shape cannot be exponential: logits change sign")
    return AnnealSchedule(logit(init_keep_prob), end_logit, shape, start_frac, end_frac)
