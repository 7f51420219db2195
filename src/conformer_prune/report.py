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
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformer_prune.rundir import RUN_CONFIG, run_dir_of
from conformer_prune.sites import config_keys, group_of

log = logging.getLogger(__name__)

SUBSET_ORDER = ("dev-clean", "dev-other", "test-clean", "test-other")

EXPERIMENT_METHODS: dict[str, str] = {
    # the `method` key of the baseline experiments (conf/experiment/*.yaml) -> label: what they do is not their
    # strategy's (a dense or fixed-mask one), so their label is theirs
    "dense_same_size": "dense, same size",
    "dense_uniform": "dense, uniform small",
    "magnitude_finetune": "magnitude pruning + fine-tune",
}
SOURCE_KEYS = ("widths_from", "params_from", "counts_from", "target_params", "keep_ratio")
"""Keys that say which run (or budget) a baseline was matched to."""
IGNORED_OVERRIDES = (
    "seed",
    "hydra.",
    "paths.",
    "method",
    "dropout",
    "pruning.alpha",
    "init_from",
    "ckpt_path",
    "threads",
    "data.corpus.jobs",
    "data.corpus.progress",
    "data.num_workers",
    "logger",
    *SOURCE_KEYS,
)
"""Overrides that never make a different setting (replicates, paths, or keys handled on their own)."""
KIND_OF_ROLE = {"method": "adaptive", "baseline": "baseline", "dense": "dense"}
"""Report kind of a run whose pruning strategy (``UnitDropout.role``) is used at every site; a ``method`` used at
some sites only (the others dense) is an ``ablation``."""


@dataclass(frozen=True)
class Method:
    """What a run's method is, from its strategies' metadata (:class:`~conformer_prune.dropout.UnitDropout`) or
    a baseline experiment's ``method`` key: the ``key`` its runs are grouped by, its ``label``, its ``kind``
    (``dense`` | ``adaptive`` | ``ablation`` | ``baseline``), whether ``pruning.alpha`` is part of its setting
    (``uses_alpha``) and whether it learns retention probabilities (``learns_retention``)."""

    key: str
    label: str
    kind: str = "baseline"
    uses_alpha: bool = False
    learns_retention: bool = False


# -- one run ---------------------------------------------------------------------------------------
@dataclass
class Run:
    """One training run directory, read for the report."""

    path: Path
    method_info: Method
    seed: int | None
    alpha: float | None
    matched_to: str | None
    overrides: dict[str, str]
    wer: dict[str, float]
    cer: dict[str, float]
    params_before: int | None
    params_after: int | None
    encoder_before: int | None
    encoder_after: int | None
    train_seconds: float | None
    mac_ratio: float | None
    cpu_speedup: float | None
    corpus_id: str | None = None
    decided: float | None = None
    setting: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict, repr=False)

    @property
    def method(self) -> str:
        return self.method_info.key

    @property
    def label(self) -> str:
        return self.method_info.label

    @property
    def kind(self) -> str:
        return self.method_info.kind

    @property
    def core(self) -> str:
        """Method and alpha: what a matched baseline refers to."""
        return self.label + (f" α={_fmt_alpha(self.alpha)}" if self.alpha is not None else "")


def _fmt_alpha(alpha: float) -> str:
    return f"{alpha:g}"


def _load_yaml(file: Path) -> Any:
    try:
        return yaml.safe_load(file.read_text()) if file.is_file() else None
    except yaml.YAMLError as err:
        log.warning("%s: not readable YAML (%s); ignored", file, err)
        return None


def _select(node: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _overrides(items: Iterable[str] | None) -> dict[str, str]:
    """``["a.b=1", "+c=x", "~d"]`` -> ``{"a.b": "1", "c": "x"}`` (deletions dropped)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = str(item).partition("=")
        if sep and not key.startswith("~"):
            out[key.lstrip("+")] = value
    return out


def _strategies(config: Mapping | None) -> dict[str, type | None]:
    """Site config key -> the strategy class its run configured (``None``: not resolvable here)."""
    from omegaconf import OmegaConf

    from conformer_prune.checkpoint import resolve_target

    try:  # a run's .hydra/config.yaml keeps its interpolations (`ffn: ${.strategy}`)
        node = OmegaConf.create(dict(config or {}))
    except Exception:  # noqa: BLE001 - not a config: no strategies known
        return {}
    found: dict[str, type | None] = {}
    for key in config_keys():
        try:
            target = OmegaConf.select(node, f"dropout.{key}._target_")
        except Exception:  # noqa: BLE001 - an interpolation this process cannot resolve
            target = None
        if target is None:
            continue
        try:
            found[key] = resolve_target(str(target), allowed_prefixes=None)
        except ValueError:
            found[key] = None
    return found


def method_of(config: Mapping | None, choices: Mapping | None) -> Method:
    """The :class:`Method` of a run: its strategies' metadata, or the baseline experiment its ``method`` names.

    The key is the run's ``method`` (the baseline experiments set it), else its ``dropout`` option. The label
    and kind come from the strategy classes at its sites: one pruning strategy (``role`` ``method`` or
    ``baseline``) at every site is that strategy (``adaptive dropout``), at some sites only (dense elsewhere)
    an ablation (``adaptive dropout (FFN only)``), none a dense run.
    """
    strategies = _strategies(config)
    classes = [c for c in strategies.values() if c is not None]
    uses_alpha = any(getattr(c, "uses_alpha", False) for c in classes)
    learns = any(getattr(c, "learns_retention", False) for c in classes)
    explicit = _select(config, "method")
    choice = (choices or {}).get("dropout")
    key = str(explicit or choice or "+".join(dict.fromkeys(c.__name__ for c in classes)) or "unknown")
    if explicit or not classes or len(classes) < len(strategies):
        return Method(key, EXPERIMENT_METHODS.get(key, key), "baseline", uses_alpha, learns)
    pruning = {k: c for k, c in strategies.items() if getattr(c, "role", "dense") != "dense"}
    if not pruning:
        main = max(classes, key=classes.count)
        return Method(key, getattr(main, "label", main.__name__), "dense", uses_alpha, learns)
    if len(set(pruning.values())) > 1:
        label = " + ".join(dict.fromkeys(getattr(c, "label", c.__name__) for c in pruning.values()))
        return Method(key, label, "baseline", uses_alpha, learns)
    main = next(iter(pruning.values()))
    label, kind = getattr(main, "label", main.__name__), KIND_OF_ROLE[main.role]
    if len(pruning) < len(strategies):
        label += f" ({' + '.join(dict.fromkeys(group_of(k) for k in pruning))} only)"
        kind = "ablation" if main.role == "method" else kind
    return Method(key, label, kind, uses_alpha, learns)


def _matched_to(config: Mapping | None) -> str | None:
    """The method and alpha of the run a baseline was matched to (or the budget it was given)."""
    for key in ("widths_from", "params_from", "counts_from"):
        source = _select(config, key)
        if source:
            run_dir = run_dir_of(source)
            if run_dir is None:
                return Path(str(source)).name
            src_config = _load_yaml(run_dir / RUN_CONFIG)
            src_hydra = _load_yaml(run_dir / ".hydra" / "hydra.yaml")
            method = method_of(src_config, _select(src_hydra, "hydra.runtime.choices"))
            alpha = _select(src_config, "pruning.alpha") if method.uses_alpha else None
            return method.label + (f" α={_fmt_alpha(float(alpha))}" if alpha is not None else "")
    if _select(config, "target_params"):
        return f"{int(_select(config, 'target_params')):,} encoder params"
    if _select(config, "keep_ratio"):
        return f"keep {_select(config, 'keep_ratio')}"
    return None


def _speedup(run_dir: Path, results: Mapping) -> float | None:
    if isinstance(results.get("cpu_speedup"), int | float):
        return float(results["cpu_speedup"])
    for file in (run_dir / "bench_inference.txt", run_dir / "export" / "bench_inference.txt"):
        if file.is_file():
            match = re.search(r"speedup=([0-9.]+)", file.read_text())
            if match:
                return float(match.group(1))
    return None


def read_run(run_dir: str | Path, metric: str = "wer") -> Run:
    """Read one run directory (``results.json``, ``.hydra/*``, ``export/report.json``).

    ``metric`` picks the error rates: ``wer`` (the default decoder; CER beside it) or ``wer_greedy``.

    Raises:
        ValueError: ``results.json`` is missing or unreadable; the message names the file.
    """
    run_dir = Path(run_dir)
    results_file = run_dir / "results.json"
    try:
        results = json.loads(results_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{results_file}: not a readable results.json ({err}); is {run_dir} a finished run?") from err
    config = _load_yaml(run_dir / RUN_CONFIG) or {}
    hydra_cfg = _load_yaml(run_dir / ".hydra" / "hydra.yaml")
    overrides = _overrides(_load_yaml(run_dir / ".hydra" / "overrides.yaml"))
    method = method_of(config, _select(hydra_cfg, "hydra.runtime.choices"))
    alpha = _select(config, "pruning.alpha")
    alpha = float(alpha) if method.uses_alpha and isinstance(alpha, int | float | str) else None

    export_dir = Path(results["export"]) if results.get("export") else run_dir / "export"
    if not export_dir.is_dir():  # a moved run: its export is still next to results.json
        export_dir = run_dir / "export"
    report = {}
    if (export_dir / "report.json").is_file():
        report = json.loads((export_dir / "report.json").read_text())
    params = results.get("params") or {}
    strategy = int(report.get("strategy_params", 0) or 0)
    before = report.get("params_before", params.get("total"))
    enc_before = report.get("encoder_params_before", params.get("encoder"))
    seed = config.get("seed")
    return Run(
        path=run_dir,
        method_info=method,
        seed=int(seed) if isinstance(seed, int) else None,
        alpha=alpha,
        matched_to=_matched_to(config),
        overrides=overrides,
        wer=dict(results.get(metric) or {}),
        cer=dict(results.get(metric.replace("wer", "cer")) or {}),
        params_before=None if before is None else int(before) - strategy,
        params_after=report.get("params_after", params.get("compacted_total", params.get("total"))),
        encoder_before=None if enc_before is None else int(enc_before) - strategy,
        encoder_after=report.get("encoder_params_after", params.get("compacted_encoder", params.get("encoder"))),
        train_seconds=results.get("train_seconds"),
        mac_ratio=report.get("mac_ratio"),
        cpu_speedup=_speedup(run_dir, results),
        corpus_id=(results.get("corpus") or {}).get("corpus_id"),
        decided=_decided(results) if method.learns_retention else None,
        config=config,
    )


def _decided(results: Mapping) -> float | None:
    """Fraction of learned retention probabilities near 0 or 1 (``results.json`` ``retention``; for runs
    written before it existed, recomputed from the evaluated checkpoint's keep logits)."""
    retention = (results.get("retention") or {}).get("all")
    if retention:
        return float(retention["decided"])
    checkpoint = results.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        return None
    import torch

    from conformer_prune.checkpoint import read_checkpoint
    from conformer_prune.pruning.compact import decided_fraction

    logits = [v for k, v in read_checkpoint(Path(checkpoint))["state_dict"].items() if k.endswith(".keep_logits")]
    if not logits:
        return None
    return decided_fraction(torch.sigmoid(torch.cat([v.flatten().float() for v in logits])))


def find_runs(dirs: Sequence[str | Path], metric: str = "wer") -> list[Run]:
    """Every run (a directory with ``results.json``) at or below ``dirs``, in path order.

    Raises:
        ValueError: a directory does not exist, or no run was found.
    """
    found: dict[Path, None] = {}
    for d in dirs:
        root = Path(str(d)).expanduser()
        if not root.is_dir():
            raise ValueError(f"{root}: no such directory (sweep_dir / run_dirs must name run or multirun directories)")
        files = [root / "results.json"] if (root / "results.json").is_file() else sorted(root.rglob("results.json"))
        for file in files:
            if any(part.startswith(".") for part in file.relative_to(root).parts[:-1]) or _is_evaluation(file):
                continue
            found[file.parent.resolve()] = None

    def order(p: Path) -> tuple:
        return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in p.parts)

    if not found:
        raise ValueError(f"no results.json under {[str(d) for d in dirs]}: nothing to report (did the runs finish?)")
    runs = [read_run(p, metric) for p in sorted(found, key=order)]
    _assign_settings(runs)
    return runs


def _is_evaluation(results_file: Path) -> bool:
    """``results.json`` of ``scripts/evaluate.py`` (not a training run): it names the model it evaluated."""
    try:
        return "model_path" in json.loads(results_file.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def _ignored(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in IGNORED_OVERRIDES)


def _setting_value(run: Run, key: str) -> str:
    """The value ``key`` had in ``run``: the resolved config value where the key names one (so ``400`` given
    on the command line equals ``400`` from a preset), else the override as written, else ``<default>``."""
    resolved = _select(run.config, key)
    if resolved is not None and not isinstance(resolved, Mapping | list):
        return str(resolved)
    return run.overrides.get(key, "<default>")


def _assign_settings(runs: list[Run]) -> None:
    """``run.setting``: the overridden keys whose value differs between runs of the same method."""
    by_method: dict[str, list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.method, []).append(run)
    for group in by_method.values():
        keys = sorted({k for run in group for k in run.overrides if not _ignored(k)})
        varying = [k for k in keys if len({_setting_value(run, k) for run in group}) > 1]
        for run in group:
            run.setting = {k: _setting_value(run, k) for k in varying}


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


# -- formatting ------------------------------------------------------------------------------------
def _pct(stat: Stat, digits: int = 2) -> str:
    if stat.mean is None:
        return "–"
    text = f"{100 * stat.mean:.{digits}f}"
    return text + (f" ± {100 * stat.std:.{digits}f}" if stat.std is not None else "")


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 60:.1f} min" if value >= 60 else f"{value:.0f} s"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"×{value:.2f}"


def _signed_pp(value: float | None, spread: float | None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.2f}" + (f" (±{100 * spread:.2f})" if spread is not None else "")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def removed_fraction(group: Group, ref_params: float | None) -> float | None:
    """``1 - params_after / reference params`` (the group's own dense size without a reference)."""
    after = group.stat("params_after").mean
    base = ref_params if ref_params else group.stat("params_before").mean
    if after is None or not base:
        return None
    return 1.0 - after / base


def markdown(
    groups: Sequence[Group],
    subsets: Sequence[str],
    sources: Sequence[str],
    command: str = "",
    metric: str = "wer",
    compare_on: str = "wer",
) -> str:
    """The ``report.md`` text (``metric``: which decoder's error rates the runs were read with;
    ``compare_on``: ``wer`` or ``cer``, the error rate of the comparisons and their verdicts)."""
    name = compare_on.upper()
    ref = reference_group(groups)
    ref_params = ref.stat("params_after").mean if ref else None
    runs = [r for g in groups for r in g.runs]
    lines = ["# Pruning report", ""]
    lines.append(f"{len(runs)} runs in {len(groups)} groups, from {', '.join(f'`{s}`' for s in sources)}.")
    if command:
        lines.append(f"Made with `{command}`.")
    corpora = sorted({r.corpus_id for r in runs if r.corpus_id})
    if corpora:
        lines.append(f"Corpus: {', '.join(corpora)}.")
    shared = _shared_overrides(runs)
    if shared:
        lines.append("Overrides shared by every run: " + ", ".join(f"`{k}={v}`" for k, v in shared.items()) + ".")
    lines.append(
        f"Reference: **{ref.label}** ({_count(ref_params)} parameters)."
        if ref
        else "No dense reference (`dropout=standard`) in these runs: % fewer is relative to each run's own dense size."
    )
    lines += ["", "## Parameters and word error rates", ""]
    decoder = "greedy decoding" if metric == "wer_greedy" else "each run's default decoder (`decoding.name`)"
    lines.append(
        f"WER in %, {decoder}, mean ± std over seeds (± only with 2 or more seeds). *params before*: the dense "
        "architecture the run trained; *params after*: the exported, compacted model; *% fewer*: than the "
        "reference; *MACs ÷*: dense / compacted multiply-accumulates per second of audio (export report)."
    )
    lines.append("")
    header = ["method", "seeds", "params before", "params after", "% fewer"]
    header += [f"WER {s}" for s in subsets] + ["train time", "MACs ÷", "CPU speed-up", "decided σ(β)"]
    rows = []
    for g in groups:
        removed = removed_fraction(g, ref_params)
        rows.append(
            [
                f"**{g.label}**" if g is ref else g.label,
                _seeds(g),
                _count(g.stat("params_before").mean),
                _count(g.stat("params_after").mean),
                "–" if removed is None else f"{100 * removed:.1f}",
            ]
            + [_pct(g.stat("wer", s)) for s in subsets]
            + [
                _seconds(g.stat("train_seconds").mean),
                _ratio(g.stat("mac_ratio").mean),
                _ratio(g.stat("cpu_speedup").mean),
                _pct(g.stat("decided"), digits=0),
            ]
        )
    lines += _table(header, rows)
    if any(g.stat("decided").mean is not None for g in groups):
        lines += [
            "",
            "*decided σ(β)*: % of the learned retention probabilities below 0.1 or above 0.9 at the end "
            "(100 for a fully bimodal distribution).",
        ]
    lines += ["", "## Character error rates", ""]
    lines += _table(
        ["method", "seeds"] + [f"CER {s}" for s in subsets],
        [[g.label, _seeds(g)] + [_pct(g.stat("cer", s)) for s in subsets] for g in groups],
    )
    if ref is not None and len(groups) > 1:
        lines += ["", f"## Against the reference ({ref.label})", ""]
        lines.append(
            f"Δ{name} in percentage points (negative: fewer errors than the reference), with the seed spread (the "
            "larger std of the two groups). A difference no larger than the spread is a **tie**."
        )
        lines.append("")
        header = ["method", "% fewer params"] + [f"Δ{name} {s}" for s in subsets] + [f"vs ref {s}" for s in subsets]
        rows = []
        for g in groups:
            if g is ref:
                continue
            cmp = [compare(g.stat(compare_on, s), ref.stat(compare_on, s)) for s in subsets]
            removed = removed_fraction(g, ref_params)
            rows.append(
                [g.label, "–" if removed is None else f"{100 * removed:.1f}"]
                + [_signed_pp(d, sp) for d, sp, _ in cmp]
                + [v for _, _, v in cmp]
            )
        lines += _table(header, rows)
    pairs = _matched_pairs(groups)
    if pairs:
        lines += ["", "## Pruned model vs the baselines matched to it", ""]
        lines.append(
            f"Δ{name} = pruned − baseline in percentage points (negative: the pruned model makes fewer errors); "
            "verdict for the pruned model; ties as above."
        )
        lines.append("")
        header = ["pruned", "baseline", "params pruned / baseline"]
        header += [f"Δ{name} {s}" for s in subsets] + [f"pruned {s}" for s in subsets]
        rows = []
        for pruned, base in pairs:
            cmp = [compare(pruned.stat(compare_on, s), base.stat(compare_on, s)) for s in subsets]
            rows.append(
                [
                    pruned.label,
                    base.label,
                    f"{_count(pruned.stat('params_after').mean)} / {_count(base.stat('params_after').mean)}",
                ]
                + [_signed_pp(d, sp) for d, sp, _ in cmp]
                + [v for _, _, v in cmp]
            )
        lines += _table(header, rows)
    notes = []
    if any(g.method == "magnitude_finetune" for g in groups):
        notes.append(
            "magnitude pruning + fine-tune: train time is the fine-tuning only; the dense run it starts from "
            "trained separately."
        )
    if any(g.method in ("dense_same_size", "dense_uniform") and not g.matched_to for g in groups):
        notes.append("a dense-small baseline without widths_from/params_from/target_params trained the full size.")
    repeated = [g.label for g in groups if len({r.seed for r in g.runs}) < len(g.runs)]
    if repeated:
        notes.append(
            "some runs share a seed, so their spread is not a seed spread: "
            + "; ".join(repeated)
            + " (sweep seed=...)."
        )
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Runs", ""]
    header = ["run", "group", "seed", "params after"] + [f"WER {s}" for s in subsets] + ["train time"]
    rows = [
        [f"`{_shown(r.path)}`", g.label, "–" if r.seed is None else str(r.seed), _count(r.params_after)]
        + [_pct(Stat.of([r.wer.get(s)])) for s in subsets]
        + [_seconds(r.train_seconds)]
        for g in groups
        for r in g.runs
    ]
    lines += _table(header, rows)
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (reports do not carry machine paths)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _seeds(group: Group) -> str:
    seeds = [str(s) for s in group.seeds if s is not None]
    return f"{len(group.runs)} ({', '.join(seeds)})" if seeds else str(len(group.runs))


def _shared_overrides(runs: Sequence[Run]) -> dict[str, str]:
    if not runs:
        return {}
    keys = set.intersection(*(set(r.overrides) for r in runs))
    return {
        k: runs[0].overrides[k] for k in sorted(keys) if not _ignored(k) and len({r.overrides[k] for r in runs}) == 1
    }


def _matched_pairs(groups: Sequence[Group]) -> list[tuple[Group, Group]]:
    """``(pruned group, baseline group)`` for every baseline matched to a pruned group of the report."""
    pruned = [g for g in groups if g.kind in ("adaptive", "ablation")]
    pairs = []
    for base in groups:
        if base.matched_to is None:
            continue
        for p in pruned:
            if p.core == base.matched_to:
                pairs.append((p, base))
    return pairs


# -- csv -------------------------------------------------------------------------------------------
def group_rows(groups: Sequence[Group], subsets: Sequence[str], compare_on: str = "wer") -> list[dict[str, Any]]:
    """One ``report.csv`` row per group (means, stds, counts; verdicts against the reference on ``compare_on``)."""
    ref = reference_group(groups)
    ref_params = ref.stat("params_after").mean if ref else None
    rows = []
    for g in groups:
        row: dict[str, Any] = {
            "group": g.label,
            "method": g.method,
            "kind": g.kind,
            "alpha": g.alpha,
            "matched_to": g.matched_to,
            "is_reference": g is ref,
            "runs": len(g.runs),
            "seeds": " ".join(str(s) for s in g.seeds if s is not None),
        }
        for attr in ("params_before", "params_after", "encoder_before", "encoder_after"):
            row[f"{attr}_mean"] = g.stat(attr).mean
        removed = removed_fraction(g, ref_params)
        row["removed_pct"] = None if removed is None else 100 * removed
        for metric in ("wer", "cer"):
            for s in subsets:
                stat = g.stat(metric, s)
                row[f"{metric}_{s}_mean"], row[f"{metric}_{s}_std"] = stat.mean, stat.std
                if ref is not None and g is not ref and metric == compare_on:
                    diff, spread, word = compare(stat, ref.stat(metric, s))
                    row[f"{metric}_{s}_vs_ref"], row[f"{metric}_{s}_vs_ref_verdict"] = diff, word
        for attr in ("train_seconds", "mac_ratio", "cpu_speedup", "decided"):
            stat = g.stat(attr)
            row[f"{attr}_mean"], row[f"{attr}_std"] = stat.mean, stat.std
        row["run_dirs"] = " ".join(_shown(r.path) for r in g.runs)
        rows.append(row)
    return rows


def run_rows(groups: Sequence[Group], subsets: Sequence[str]) -> list[dict[str, Any]]:
    """One ``runs.csv`` row per run."""
    rows = []
    for g in groups:
        for r in g.runs:
            row: dict[str, Any] = {
                "run_dir": _shown(r.path),
                "group": g.label,
                "method": r.method,
                "seed": r.seed,
                "alpha": r.alpha,
                "matched_to": r.matched_to,
            }
            for attr in ("params_before", "params_after", "encoder_before", "encoder_after"):
                row[attr] = getattr(r, attr)
            for s in subsets:
                row[f"wer_{s}"], row[f"cer_{s}"] = r.wer.get(s), r.cer.get(s)
            row.update(
                train_seconds=r.train_seconds, mac_ratio=r.mac_ratio, cpu_speedup=r.cpu_speedup, decided=r.decided
            )
            row["overrides"] = " ".join(f"{k}={v}" for k, v in r.overrides.items())
            rows.append(row)
    return rows


def write_csv(file: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with file.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


# -- plot ------------------------------------------------------------------------------------------
STYLE: dict[str, tuple[str, str]] = {
    # method -> (marker, colour)
    "adaptive": ("o", "tab:blue"),
    "adaptive_ffn": ("o", "tab:cyan"),
    "adaptive_attention": ("o", "tab:purple"),
    "adaptive_conv": ("o", "tab:olive"),
    "standard": ("*", "black"),
    "none": ("*", "dimgray"),
    "hard_concrete": ("X", "tab:red"),
    "dense_same_size": ("s", "tab:green"),
    "dense_uniform": ("D", "tab:orange"),
    "magnitude_finetune": ("^", "tab:brown"),
}


def pareto_plot(
    groups: Sequence[Group], subsets: Sequence[str], file: Path, metric: str = "wer", compare_on: str = "wer"
) -> None:
    """Compacted parameters vs error rate (``compare_on``: wer or cer), one panel per subset: learned pruning as
    lines over alpha, baselines marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    ref = reference_group(groups)
    fig, axes = plt.subplots(1, len(subsets), figsize=(6.2 * len(subsets), 4.8), squeeze=False)
    for ax, subset in zip(axes[0], subsets, strict=True):
        by_method: dict[str, list[Group]] = {}
        for g in groups:
            by_method.setdefault(g.method, []).append(g)
        for method, members in by_method.items():
            marker, colour = STYLE.get(method, ("P", "tab:gray"))
            points = []
            for g in members:
                x, y = g.stat("params_after"), g.stat(compare_on, subset)
                if x.mean is None or y.mean is None:
                    continue
                points.append((x.mean, 100 * y.mean, 100 * (y.std or 0.0), x.std or 0.0, g))
            if not points:
                continue
            points.sort(key=lambda p: p[0])
            xs, ys, yerr, xerr = ([p[i] for p in points] for i in range(4))
            size = 16 if marker == "*" else 8
            linestyle = "-" if members[0].runs[0].method_info.uses_alpha and len(points) > 1 else "none"
            ax.errorbar(
                xs,
                ys,
                yerr=yerr,
                xerr=xerr,
                fmt=marker,
                linestyle=linestyle,
                color=colour,
                markersize=size,
                capsize=3,
                label=members[0].runs[0].label,
                zorder=4 if marker == "*" else 3,  # the reference stays visible
            )
            for x, y, *_, g in points:
                if g.alpha is not None:
                    ax.annotate(
                        f"α={_fmt_alpha(g.alpha)}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(5, 5),
                        fontsize=7,
                        color=colour,
                    )
        if ref is not None and ref.stat(compare_on, subset).mean is not None:
            y = 100 * ref.stat(compare_on, subset).mean
            ax.axhline(y, color="black", linestyle="--", linewidth=0.8, alpha=0.6)
            x = ref.stat("params_after").mean
            if x:
                ax.axvline(x, color="black", linestyle=":", linewidth=0.8, alpha=0.4)
        ax.set_title(f"{subset}")
        ax.set_xlabel("parameters after compaction")
        ax.set_ylabel(f"{metric.replace('wer', compare_on).upper().replace('_', ' ')} (%)")
        ax.xaxis.set_major_formatter(EngFormatter(places=1))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    title = "Compacted size vs error rate (mean ± std over seeds"
    fig.suptitle(title + ("; dashed: dense reference)" if ref is not None else ")"), fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(labels) - 1) // 4), 1, 0.96))
    fig.savefig(file, dpi=120)
    plt.close(fig)


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
