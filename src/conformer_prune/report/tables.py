"""The report's text: ``report.md`` (:func:`markdown`) and the rows of ``report.csv`` / ``runs.csv``."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from conformer_prune.report.groups import Group, Stat, compare, reference_group, removed_fraction
from conformer_prune.report.runs import Run, _ignored


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
