"""Controls that show whether adaptive dropout prunes by importance, read from finished runs.

``scripts/importance_controls.sh`` trains the runs into one directory; :func:`report` reads them:

* **alpha sweep** (``alpha<α>/``): the prior's strength must decide the size: ``α = 0`` removes
  (almost) nothing and the removed fraction rises with ``α``;
* **noise seed** (``noise_seed<k>/`` beside the ``alpha<α>/`` run of the same ``α``): two runs that differ
  only in their dropout noise must prune largely the same units — the Jaccard overlap of the pruned
  sets per site kind, against the overlap of random sets of the same sizes;
* **learned widths** (``dense_same_size/``, ``dense_uniform/``): a dense model with the learned per-layer
  widths, trained from scratch, against one with uniform widths of the same total, and the adaptive
  model against both — paired bootstrap over utterances (:mod:`conformer_prune.stats`).

Shapes: pruned sets hold ``(layer, unit)`` pairs per site kind.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from conformer_prune.evaluate import UTTERANCE_ERRORS_FILE
from conformer_prune.stats import PairedDifference, paired_bootstrap

log = logging.getLogger(__name__)


@dataclass
class ControlRun:
    """One finished run: its settings, sizes, error rates and (lazily) its pruned units."""

    path: Path
    alpha: float | None
    noise_seed: int | None
    results: dict[str, Any]
    pruned: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

    @property
    def params(self) -> int:
        p = self.results["params"]
        return int(p.get("compacted_total", p["total"]))

    def removed(self, dense: int) -> float:
        return 1.0 - self.params / dense

    def unit_fraction(self, kind: str = "all") -> float | None:
        entry = (self.results.get("retention") or {}).get(kind)
        return None if entry is None else float(entry["pruned"])


def read_run(run_dir: Path) -> ControlRun:
    """A finished run directory (``results.json`` and ``.hydra/config.yaml``)."""
    results = json.loads((run_dir / "results.json").read_text())
    config = _config(run_dir)
    pruning = config.get("pruning") or {}
    alpha = pruning.get("alpha") if pruning.get("target_params") is None else None
    return ControlRun(run_dir, alpha, config.get("noise_seed"), results)


@functools.lru_cache(maxsize=8)
def _trained_net(checkpoint: str) -> nn.Module:
    """The network of a training checkpoint, built once per report (both controls below read it)."""
    from conformer_prune.checkpoint import build_dense_net, read_checkpoint

    return build_dense_net(read_checkpoint(checkpoint), checkpoint)


def pruned_units(run: ControlRun) -> dict[str, set[tuple[int, int]]]:
    """Site kind → the ``(layer, unit)`` pairs the run's evaluated checkpoint prunes (its eval gates)."""
    pruned: dict[str, set[tuple[int, int]]] = {}
    for site in _trained_net(str(run.results["checkpoint"])).encoder.sites():
        mask = site.module.keep_mask()
        pruned.setdefault(site.kind, set()).update((site.layer, int(i)) for i in (~mask).nonzero().flatten())
    return pruned


def keep_probs(run: ControlRun) -> dict[str, torch.Tensor]:
    """Site kind → the keep probabilities of the run's evaluated checkpoint, ``(layer, unit)`` order: ``(units,)``."""
    probs: dict[str, list[torch.Tensor]] = {}
    for site in _trained_net(str(run.results["checkpoint"])).encoder.sites():
        probs.setdefault(site.kind, []).append(site.module.keep_prob().detach().float().flatten())
    return {kind: torch.cat(parts) for kind, parts in probs.items()}


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's ρ of two equally long vectors (ranks by sorting; 0 for chance, 1 for the same order)."""
    if a.numel() < 2:
        return float("nan")
    ranks = [torch.empty_like(x).scatter_(0, x.argsort(), torch.arange(x.numel(), dtype=x.dtype)) for x in (a, b)]
    ra, rb = (r - r.mean() for r in ranks)
    denominator = (ra.norm() * rb.norm()).item()
    return float((ra @ rb).item() / denominator) if denominator else float("nan")


PERMUTED_FROM = "permuted_from.json"


def permute_keep_logits(checkpoint: str | Path, out: str | Path, seed: int) -> Path:
    """A copy of a training checkpoint whose sites' retention parameters are permuted within each site.

    Each site keeps its number of pruned units and the same eval scales, on units chosen at random: the
    control for "the pruned units are the unimportant ones" (the trained weights with their own mask
    against the same weights with a random mask of the same shape). Nothing else changes.
    """
    from conformer_prune.checkpoint import build_dense_net, read_checkpoint

    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists():
        raise ValueError(f"{out} exists: give another path (nothing is overwritten)")
    ckpt = read_checkpoint(checkpoint)
    net = build_dense_net(ckpt, checkpoint)
    names = {id(p): name for name, p in net.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    state = ckpt["state_dict"]
    for site in net.encoder.sites():
        for param in site.module.parameters():  # the strategy's own: e.g. the keep logits, (units,)
            key = "net." + names[id(param)]
            order = torch.randperm(state[key].shape[0], generator=generator)
            state[key] = state[key][order].clone()
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    (out.parent / PERMUTED_FROM).write_text(json.dumps({"checkpoint": str(checkpoint.resolve()), "seed": seed}))
    return out


def jaccard(a: set, b: set) -> float:
    """``|a ∩ b| / |a ∪ b|`` (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def chance_jaccard(size_a: int, size_b: int, population: int) -> float:
    """The expected overlap of two random subsets of these sizes (their intersection is hypergeometric)."""
    if population == 0 or size_a + size_b == 0:
        return 1.0
    common = size_a * size_b / population
    return common / (size_a + size_b - common)


def paired(a: ControlRun, b: ControlRun, subset: str, decoder: str = "greedy", unit: str = "chars") -> PairedDifference:
    """``b − a`` on ``subset`` (``decoder``: a key of ``utterance_errors.json``, e.g. ``greedy``/``default``)."""
    ua = json.loads((a.path / UTTERANCE_ERRORS_FILE).read_text())[subset]
    ub = json.loads((b.path / UTTERANCE_ERRORS_FILE).read_text())[subset]
    if ua["ids"] != ub["ids"]:
        raise ValueError(f"{a.path} and {b.path} scored different utterances of {subset}: not a paired comparison")
    return paired_bootstrap(ua[decoder][unit], ub[decoder][unit], ua["lengths"][unit])


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def _interval(d: PairedDifference) -> str:
    return f"{100 * d.diff:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def dense_params_of(run: ControlRun) -> int:
    """The dense model's parameter count after export (nothing pruned): the run's total minus its keep logits."""
    params = run.results["params"]
    if "dense" in params:
        return int(params["dense"])
    logits = (run.results.get("retention") or {}).get("all", {}).get("units", 0)  # results of older runs
    return int(params["total"]) - int(logits)


def report(sweep_dir: Path, dense_params: int | None = None, subset: str = "test-clean") -> tuple[str, dict[str, Any]]:
    """The controls' markdown and their numbers (for ``controls.json``).

    Args:
        sweep_dir: the directory ``scripts/importance_controls.sh`` filled.
        dense_params: the dense model's parameter count after export (nothing pruned); ``None``: from
            the first alpha run (:func:`dense_params_of`).
        subset: the subset of the error-rate comparisons.
    """
    sweep_dir = Path(sweep_dir)
    alpha_runs = sorted(
        (read_run(d) for d in sweep_dir.glob("alpha*") if (d / "results.json").is_file()), key=lambda r: r.alpha
    )
    if dense_params is None:
        if not alpha_runs:
            raise ValueError(f"{sweep_dir}: no finished alpha<value>/ run to read the dense size from")
        dense_params = dense_params_of(alpha_runs[0])
    lines = [f"# Importance controls: `{sweep_dir}`", ""]
    numbers: dict[str, Any] = {"subset": subset, "dense_params": dense_params}
    lines += [f"Dense model after export: {dense_params:,} parameters. Error rates on {subset}.", ""]

    # -- alpha sweep ------------------------------------------------------------------------------------
    kinds = [k for k in (alpha_runs[0].results.get("retention") or {}) if k != "all"] if alpha_runs else []
    lines += ["## The prior decides the size: alpha sweep", ""]
    header = ["α", "params after export", "removed", "units pruned", *[f"{k} pruned" for k in kinds]]
    header += [f"{subset} CER (greedy)", f"{subset} WER (beam+LM)"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sweep = []
    for run in alpha_runs:
        row = {
            "alpha": run.alpha,
            "params": run.params,
            "removed": run.removed(dense_params),
            "units_pruned": run.unit_fraction(),
            "cer_greedy": run.results["cer_greedy"][subset],
            "wer": run.results["wer"][subset],
            "per_kind": {k: run.unit_fraction(k) for k in kinds},
        }
        sweep.append(row)
        cells = [f"{run.alpha:g}", f"{run.params:,}", f"{_pct(row['removed'])} %", f"{_pct(row['units_pruned'])} %"]
        cells += [f"{_pct(row['per_kind'][k])} %" for k in kinds]
        cells += [f"{100 * row['cer_greedy']:.1f}", f"{100 * row['wer']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    removed = [row["removed"] for row in sweep]
    monotonic = all(b > a for a, b in zip(removed, removed[1:], strict=False))
    zero = next((row for row in sweep if row["alpha"] == 0), None)
    numbers["alpha_sweep"] = sweep
    numbers["monotonic"] = monotonic
    numbers["alpha0_units_pruned"] = None if zero is None else zero["units_pruned"]
    lines += [
        "",
        f"- removed fraction rises with α: **{'yes' if monotonic else 'no'}** "
        f"({', '.join(f'{100 * r:.1f} %' for r in removed)})",
    ]
    if zero is not None:
        verdict = "holds" if (zero["units_pruned"] or 0) <= 0.05 else "fails"
        lines.append(f"- α = 0 prunes {_pct(zero['units_pruned'])} % of the units (control: ≤ 5 %): **{verdict}**")

    # -- noise seed -------------------------------------------------------------------------------------
    twins = [read_run(d) for d in sorted(sweep_dir.glob("noise_seed*")) if (d / "results.json").is_file()]
    for twin in twins:
        base = next((r for r in alpha_runs if r.alpha == twin.alpha), None)
        if base is None:
            continue
        a, b = pruned_units(base), pruned_units(twin)
        lines += ["", f"## Noise seed: `{base.path.name}` vs `{twin.path.name}` (noise_seed={twin.noise_seed})", ""]
        lines += ["| site kind | pruned (a) | pruned (b) | Jaccard | chance | rank correlation of σ(β) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        overlap = {}
        pa, pb = keep_probs(base), keep_probs(twin)
        pa["all"], pb["all"] = torch.cat([pa[k] for k in a]), torch.cat([pb[k] for k in a])
        population = {k: int(base.results["retention"][k]["units"]) for k in a}
        for kind in list(a) + ["all"]:
            sa = a[kind] if kind != "all" else {(k, *u) for k, s in a.items() for u in s}
            sb = b[kind] if kind != "all" else {(k, *u) for k, s in b.items() for u in s}
            n = population[kind] if kind != "all" else sum(population.values())
            j, c = jaccard(sa, sb), chance_jaccard(len(sa), len(sb), n)
            rho = rank_correlation(pa[kind], pb[kind])
            overlap[kind] = {"a": len(sa), "b": len(sb), "units": n, "jaccard": j, "chance": c, "rank_correlation": rho}
            lines.append(f"| {kind} | {len(sa)} | {len(sb)} | {j:.3f} | {c:.3f} | {rho:.3f} |")
        numbers.setdefault("noise_seed", []).append({"a": str(base.path), "b": str(twin.path), "overlap": overlap})
        diff = paired(base, twin, subset)
        lines += ["", f"- CER {subset}, b − a: {_interval(diff)} points: **{diff.verdict()}**"]

    # -- random units -----------------------------------------------------------------------------------
    draws: dict[Path, list[Path]] = {}  # source checkpoint -> its permuted draws
    for d in sorted(sweep_dir.glob("random_units*")):
        if (d / "results.json").is_file():
            draws.setdefault(Path(json.loads((d / PERMUTED_FROM).read_text())["checkpoint"]), []).append(d)
    by_checkpoint = {Path(r.results["checkpoint"]).resolve(): r for r in alpha_runs}
    for source, mine in draws.items():
        base = by_checkpoint.get(source)
        if base is None:
            continue
        lines += [
            "",
            f"## The pruned units are the unimportant ones: `{base.path.name}`'s mask against random units",
            "",
        ]
        lines += ["The same trained weights, scored greedily on "
                  f"{subset}, with the run's own keep logits and with them permuted within each site (the same "
                  "number of pruned units and the same eval scales per site, on random units). The weights have "
                  "adapted to their own mask, so this cannot tell units pruned because they were unimportant "
                  "from units unimportant because they were pruned early: the noise-seed and width controls "
                  "speak to that.", ""]  # fmt: skip
        lines += [f"| mask | {subset} CER (greedy) | random − own, points [95 % CI] |", "|---|---|---|"]
        own = base.results["cer_greedy"][subset]
        lines.append(f"| own (`{base.path.name}`) | {100 * own:.1f} | |")
        rows = []
        for draw in mine:
            run = ControlRun(draw, None, None, json.loads((draw / "results.json").read_text()))
            diff = paired(base, run, subset)
            rows.append({"run": str(draw), "cer": run.results["cer_greedy"][subset], "diff": diff.diff,
                         "low": diff.low, "high": diff.high, "verdict": diff.verdict()})  # fmt: skip
            lines.append(f"| random (`{draw.name}`) | {100 * rows[-1]['cer']:.1f} | {_interval(diff)} |")
        holds = all(r["verdict"] == "worse" for r in rows)
        numbers.setdefault("random_units", []).append({"own": str(base.path), "own_cer": own, "draws": rows})
        lines += [
            "",
            f"- every random mask of the same counts is worse than the learned one: **{'yes' if holds else 'no'}**",
        ]

    # -- learned widths ---------------------------------------------------------------------------------
    same, uniform = (sweep_dir / "dense_same_size", sweep_dir / "dense_uniform")
    if (same / "results.json").is_file() and (uniform / "results.json").is_file():
        same_run, uniform_run = read_run(same), read_run(uniform)
        source = _width_source(same)
        adaptive = next((r for r in alpha_runs if source and r.path.resolve() == source.resolve()), None)
        lines += ["", "## The learned widths are worth something", ""]
        lines += ["| model | params | CER (greedy) | WER (beam+LM) |", "|---|---|---|---|"]
        models = [("dense, learned widths, from scratch", same_run), ("dense, uniform widths", uniform_run)]
        if adaptive is not None:
            models.insert(0, (f"adaptive dropout (`{adaptive.path.name}`)", adaptive))
        for name, run in models:
            cer, wer = run.results["cer_greedy"][subset], run.results["wer"][subset]
            lines.append(f"| {name} | {run.params:,} | {100 * cer:.1f} | {100 * wer:.1f} |")
        # (name, reference a, model b): the verdict is b's against a
        comparisons = [("learned widths vs uniform widths", uniform_run, same_run)]
        if adaptive is not None:
            comparisons += [
                ("adaptive dropout vs learned widths from scratch", same_run, adaptive),
                ("adaptive dropout vs uniform widths", uniform_run, adaptive),
            ]
        lines += ["", "Paired bootstrap over utterances (CER points, b − a, 95 % interval):", ""]
        numbers["widths"] = {}
        for name, a, b in comparisons:
            diff = paired(a, b, subset)
            verdict = diff.verdict()
            numbers["widths"][name] = {"diff": diff.diff, "low": diff.low, "high": diff.high, "verdict": verdict}
            lines.append(f"- {name}: {_interval(diff)}: **{verdict}**")
    # -- size target ----------------------------------------------------------------------------------
    targets = [read_run(d) for d in sorted(sweep_dir.glob("target*")) if (d / "results.json").is_file()]
    if targets:
        lines += ["", "## Size target without tuning alpha (`pruning.target_params`)", ""]
        lines += ["| requested | requested params | params after export | error | units pruned | CER (greedy) |"]
        lines += ["|---|---|---|---|---|---|"]
        numbers["targets"] = []
        for run in targets:
            requested = _target_of(run.path)
            wanted = int(round(requested * dense_params)) if requested <= 1 else int(requested)
            error = run.params / wanted - 1.0
            numbers["targets"].append({"requested": requested, "wanted": wanted, "params": run.params, "error": error})
            lines.append(
                f"| {requested:g} | {wanted:,} | {run.params:,} | {100 * error:+.1f} % | {_pct(run.unit_fraction())} % "
                f"| {100 * run.results['cer_greedy'][subset]:.1f} |"
            )

    # -- LConv mask position ----------------------------------------------------------------------------
    conv_runs = [read_run(d) for d in sorted(sweep_dir.glob("conv_*")) if (d / "results.json").is_file()]
    if conv_runs:
        lines += ["", "## LConv-only ablation: where the mask sits", ""]
        lines += ["| run | mask position | α | conv channels pruned | params after export | CER (greedy) |"]
        lines += ["|---|---|---|---|---|---|"]
        numbers["conv"] = []
        for run in conv_runs:
            position = _conv_position(run.path)
            conv_pruned = run.unit_fraction("conv")
            numbers["conv"].append(
                {
                    "run": run.path.name,
                    "position": position,
                    "alpha": run.alpha,
                    "conv_pruned": conv_pruned,
                    "params": run.params,
                }  # fmt: skip
            )
            lines.append(
                f"| `{run.path.name}` | {position} | {run.alpha:g} | {_pct(conv_pruned)} % | {run.params:,} "
                f"| {100 * run.results['cer_greedy'][subset]:.1f} |"
            )
    return "\n".join(lines) + "\n", numbers


def _config(run_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())


def _target_of(run_dir: Path) -> float:
    return float(_config(run_dir)["pruning"]["target_params"])


def _conv_position(run_dir: Path) -> str:
    return str(_config(run_dir)["model"]["net"]["encoder"].get("conv_mask_position", "input"))


def _width_source(run_dir: Path) -> Path | None:
    """The run whose export a ``dense_same_size`` run took its widths from."""
    source = _config(run_dir).get("widths_from")
    if not source:
        return None
    source = Path(source)
    return source.parent if source.name == "export" else source


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None, subset: str = "test-clean") -> Path:
    """Write ``controls.md`` and ``controls.json`` of ``sweep_dir`` into ``out_dir`` (default: ``sweep_dir``)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ValueError(f"sweep_dir={sweep_dir}: no such directory (run scripts/importance_controls.sh first)")
    text, numbers = report(sweep_dir, subset=subset)
    out = Path(out_dir) if out_dir else sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "controls.md").write_text(text)
    (out / "controls.json").write_text(json.dumps(numbers, indent=2))
    log.info("wrote %s", out / "controls.md")
    return out / "controls.md"
