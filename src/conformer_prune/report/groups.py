"""Groups of replicate runs (one method and setting, several seeds): mean ± std, the dense reference, ties."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from conformer_prune.report.runs import Run

SUBSET_ORDER = ("dev-clean", "dev-other", "test-clean", "test-other")


# -- groups ----------------------------------------------------------------------------------------
@dataclass
class Stat:
    """Mean and sample standard deviation (``None`` with fewer than 2 values)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | int | None]) -> Stat:
        xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not xs:
            return cls(None, None, 0)
        return cls(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


@dataclass
class Group:
    """Runs of one method and setting (replicates over seeds)."""

    label: str
    core: str
    method: str
    kind: str
    alpha: float | None
    matched_to: str | None
    runs: list[Run]

    def stat(self, attr: str, subset: str | None = None) -> Stat:
        if subset is None:
            return Stat.of(getattr(run, attr) for run in self.runs)
        return Stat.of(getattr(run, attr).get(subset) for run in self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [run.seed for run in self.runs]


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Group replicates; order: dense reference, adaptive (by alpha), ablations, baselines, others."""

    def label(run: Run, full: bool) -> str:
        # the keys this run set itself (all varying keys where that alone would not tell groups apart)
        shown = {k: v for k, v in run.setting.items() if full or k in run.overrides}
        setting = ", ".join(f"{k}={v}" for k, v in shown.items())
        return run.core + (f" ← {run.matched_to}" if run.matched_to else "") + (f" [{setting}]" if setting else "")

    groups: dict[tuple, Group] = {}
    for run in runs:
        key = (run.method, run.alpha, run.matched_to, tuple(run.setting.items()))
        if key not in groups:
            groups[key] = Group(label(run, False), run.core, run.method, run.kind, run.alpha, run.matched_to, [])
        groups[key].runs.append(run)
    labels = Counter(g.label for g in groups.values())
    for g in groups.values():
        if labels[g.label] > 1:
            g.label = label(g.runs[0], True)
    rank = {"dense": 0, "adaptive": 1, "ablation": 2, "baseline": 3}
    return sorted(groups.values(), key=lambda g: (rank.get(g.kind, 4), g.method, g.alpha or 0.0, g.label))


def reference_group(groups: Sequence[Group]) -> Group | None:
    """The dense reference: the ``dense`` group with the most runs (``None`` if there is none)."""
    dense = [g for g in groups if g.kind == "dense"]
    return max(dense, key=lambda g: len(g.runs)) if dense else None


def verdict(diff: float | None, spread: float | None, lower_is_better: bool = True) -> str:
    """``better`` / ``worse`` / ``tie`` (|diff| ≤ spread) / ``n/a (1 seed)`` (no spread to compare with)."""
    if diff is None:
        return "n/a"
    if spread is None:
        return "n/a (1 seed)"
    if abs(diff) <= spread:
        return "tie"
    return "better" if (diff < 0) == lower_is_better else "worse"


def compare(a: Stat, b: Stat) -> tuple[float | None, float | None, str]:
    """``a - b``, the seed spread (the larger std) and the verdict for ``a`` (lower is better)."""
    if a.mean is None or b.mean is None:
        return None, None, "n/a"
    spreads = [s for s in (a.std, b.std) if s is not None]
    spread = max(spreads) if spreads else None
    diff = a.mean - b.mean
    return diff, spread, verdict(diff, spread)


def ordered_subsets(runs: Sequence[Run], only: Sequence[str] | None = None) -> list[str]:
    names = {s for run in runs for s in run.wer}
    if only:
        missing = [s for s in only if s not in names]
        if missing:
            raise ValueError(f"subsets: {missing} are in no results.json; the runs have {sorted(names)}")
        return list(only)
    return [s for s in SUBSET_ORDER if s in names] + sorted(names - set(SUBSET_ORDER))


def removed_fraction(group: Group, ref_params: float | None) -> float | None:
    """``1 - params_after / reference params`` (the group's own dense size without a reference)."""
    after = group.stat("params_after").mean
    base = ref_params if ref_params else group.stat("params_before").mean
    if after is None or not base:
        return None
    return 1.0 - after / base
