"""Read one training run for the report (:class:`Run`), and the :class:`Method` of a run.

:func:`read_run` reads a run directory (``results.json``, ``.hydra/*``, ``export/report.json``);
:func:`method_of` names its method from its strategies' metadata (:class:`~conformer_prune.dropout.UnitDropout`:
``label``, ``role``, ``uses_alpha``, ``learns_retention``) or a baseline experiment's ``method`` key;
:func:`find_runs` collects every run below some directories and assigns each its setting.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformer_prune.rundir import RUN_CONFIG, run_dir_of
from conformer_prune.sites import config_keys, group_of

log = logging.getLogger(__name__)


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
