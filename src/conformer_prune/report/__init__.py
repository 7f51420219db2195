"""The params-vs-WER report of a sweep: ``report.csv``, ``report.md``, ``runs.csv`` and ``pareto.png``.

``scripts/report.py sweep_dir=<multirun dir>`` (and/or ``run_dirs=[...]``) collects every training run
below those directories (a directory with ``results.json``), reads its ``.hydra`` files and its export's
``report.json``, and groups runs by *method and setting*:

* the method is the run's ``method`` key (the baseline experiments set it), else its ``dropout`` option
  (``standard`` is the dense reference, ``adaptive*`` are adaptive dropout, ``hard_concrete`` the L0 baseline);
* the setting is ``pruning.alpha`` for the methods it weighs (adaptive dropout, L0), the source a
  baseline was matched to (``widths_from`` / ``params_from`` / ``counts_from``: the method and alpha of
  that run), and every command-line override whose value differs between runs of the same method;
* runs that differ only in ``seed`` (and paths) are replicates: their numbers are given as mean ± std.

"params before" counts the dense architecture (without the strategies' own logits), "params after" the
exported (compacted) model; "% fewer" is relative to the dense reference (``dropout=standard``) when the
report has one. A WER difference no larger than the seed spread (the larger std of the two groups) is
reported as a tie; with a single seed there is no spread and the verdict says so. The MAC ratio comes
from the export's ``report.json``; a measured CPU speed-up is shown when a run holds
``bench_inference.txt`` (the output of ``scripts/bench_inference.py``, last line ``speedup=<x> ...``) or a
``cpu_speedup`` key in ``results.json``.

The package: :mod:`~conformer_prune.report.runs` (one run, its method and setting),
:mod:`~conformer_prune.report.groups` (replicates, reference, ties), :mod:`~conformer_prune.report.tables`
(``report.md``, the CSV rows) and :mod:`~conformer_prune.report.plot` (``pareto.png``); everything public is
importable from ``conformer_prune.report``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from conformer_prune.report.groups import (
    SUBSET_ORDER,
    Group,
    Stat,
    compare,
    group_runs,
    ordered_subsets,
    reference_group,
    removed_fraction,
    verdict,
)
from conformer_prune.report.plot import STYLE, pareto_plot
from conformer_prune.report.runs import (
    EXPERIMENT_METHODS,
    IGNORED_OVERRIDES,
    SOURCE_KEYS,
    Method,
    Run,
    find_runs,
    method_of,
    read_run,
)
from conformer_prune.report.tables import group_rows, markdown, run_rows, write_csv

__all__ = [
    "EXPERIMENT_METHODS",
    "IGNORED_OVERRIDES",
    "SOURCE_KEYS",
    "STYLE",
    "SUBSET_ORDER",
    "Group",
    "Method",
    "Run",
    "Stat",
    "compare",
    "find_runs",
    "group_rows",
    "group_runs",
    "make_report",
    "markdown",
    "method_of",
    "ordered_subsets",
    "pareto_plot",
    "read_run",
    "reference_group",
    "removed_fraction",
    "run_rows",
    "verdict",
    "write_csv",
]

log = logging.getLogger(__name__)


# -- entry point -----------------------------------------------------------------------------------
def make_report(
    dirs: Sequence[str | Path],
    out_dir: str | Path,
    subsets: Sequence[str] | None = None,
    plot_subsets: Sequence[str] | None = None,
    metric: str = "wer",
    command: str = "",
    compare_on: str = "wer",
) -> dict[str, Path]:
    """Collect the runs under ``dirs`` and write ``report.csv``, ``runs.csv``, ``report.md``, ``pareto.png``.

    ``metric`` picks the decoder (``wer``: each run's default, ``wer_greedy``: greedy); ``compare_on`` the
    error rate (``wer`` or ``cer``) of the comparisons, their tie/better/worse verdicts and the plot.

    Returns:
        File kind -> path written.
    """
    if metric not in ("wer", "wer_greedy"):
        raise ValueError(f"metric must be wer or wer_greedy, got {metric!r}")
    if compare_on not in ("wer", "cer"):
        raise ValueError(f"compare_on must be wer or cer, got {compare_on!r}")
    runs = find_runs(dirs, metric)
    groups = group_runs(runs)
    names = ordered_subsets(runs, subsets)
    if plot_subsets:
        plot_names = ordered_subsets(runs, plot_subsets)
    else:
        plot_names = [s for s in names if s.startswith("test")] or names
    out = Path(str(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "report.csv", "runs": out / "runs.csv", "md": out / "report.md", "png": out / "pareto.png"}
    write_csv(files["csv"], group_rows(groups, names, compare_on))
    write_csv(files["runs"], run_rows(groups, names))
    files["md"].write_text(markdown(groups, names, [str(d) for d in dirs], command, metric, compare_on))
    pareto_plot(groups, plot_names[:4], files["png"], metric, compare_on)
    log.info("report of %d runs in %d groups: %s", len(runs), len(groups), out)
    return files
