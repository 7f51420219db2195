"""The claim protocol's report (``scripts/claim.sh``): every arm against dense, with confidence intervals.

Reads ``<sweep>/<arm>/seed<N>/`` runs (``results.json``, ``utterance_errors.json``, ``metrics.csv`` of the
CSV logger, the evaluated checkpoint) and their ``lm<w>/`` evaluations (the arm's LM weight, tuned on
dev-clean: ``<arm>/lm_weight.txt``), and writes ``claim.md``, ``claim.csv``, ``claim.json``,
``learning_curves.png`` and ``keep_prob.png``:

* per arm: parameters after export, MACs per second of audio, CER and WER on the test subsets with greedy
  decoding and with the lexicon + LM beam search at the arm's LM weight, mean ± std over seeds;
* per arm and seed: the paired difference to the dense run of the same seed, with a paired bootstrap 95 %
  interval over utterances; the verdict (better / worse / tie) is that of the interval pooled over seeds
  (:func:`conformer_prune.stats.pooled_paired_bootstrap`), never the seed spread;
* learning curves (dev and training-sample CER against the step, mean over seeds) and the final σ(β)
  histograms per site kind of the learned-retention arms.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformer_prune.evaluate import UTTERANCE_ERRORS_FILE
from conformer_prune.stats import PairedDifference, paired_bootstrap, pooled_paired_bootstrap

log = logging.getLogger(__name__)

REFERENCE = "dense"
TEST_SUBSETS = ("test-clean", "test-other")
ARM_LABELS = {
    "dense": "dense, standard dropout 0.1",
    "dense_tuned": "dense, standard dropout tuned on dev",
    "adaptive": "adaptive dropout (default)",
    "adaptive_strong": "adaptive dropout (stronger alpha)",
    "dense_same_size": "dense, adaptive's widths, from scratch",
    "dense_uniform": "dense, uniform widths, same total",
    "magnitude": "magnitude pruning (2/3 dense + 1/3 fine-tune)",
    "l0": "L0 hard-concrete, adaptive's size",
}
"""Arm directory → label, in report order (other arms follow, by name)."""


@dataclass
class ClaimRun:
    arm: str
    seed: int
    path: Path
    results: dict[str, Any]
    lm_weight: str | None

    @property
    def params(self) -> int:
        p = self.results["params"]
        return int(p.get("compacted_total", p["total"]))

    @property
    def macs(self) -> float | None:
        macs = self.results.get("macs_per_second") or {}
        return macs.get("compacted", macs.get("dense"))

    def lm_results(self) -> dict[str, Any] | None:
        """The evaluation at the arm's tuned LM weight (``lm<w>/results.json``), if it was run."""
        if self.lm_weight is None:
            return None
        file = self.path / f"lm{self.lm_weight}" / "results.json"
        return json.loads(file.read_text()) if file.is_file() else None

    def errors(self, subset: str, decoder: str) -> dict[str, Any]:
        """Per-utterance counts: ``decoder`` ``greedy`` (end of training) or ``lm`` (the tuned LM weight)."""
        base = self.path / f"lm{self.lm_weight}" if decoder == "lm" else self.path
        data = json.loads((base / UTTERANCE_ERRORS_FILE).read_text())[subset]
        key = "default" if decoder == "lm" else "greedy"
        return {"ids": data["ids"], "lengths": data["lengths"], "errors": data[key]}


def find_runs(sweep_dir: Path) -> dict[str, list[ClaimRun]]:
    """Arm → its finished runs, by seed."""
    arms: dict[str, list[ClaimRun]] = {}
    for results in sorted(sweep_dir.glob("*/seed*/results.json")):
        run = results.parent
        arm = run.parent.name
        weight_file = run.parent / "lm_weight.txt"
        weight = weight_file.read_text().strip() if weight_file.is_file() else None
        seed = int(run.name.removeprefix("seed"))
        arms.setdefault(arm, []).append(ClaimRun(arm, seed, run, json.loads(results.read_text()), weight))
    order = [a for a in ARM_LABELS if a in arms] + sorted(a for a in arms if a not in ARM_LABELS)
    return {arm: sorted(arms[arm], key=lambda r: r.seed) for arm in order}


def _metric(run: ClaimRun, subset: str, kind: str) -> float | None:
    """``kind``: ``cer_greedy`` | ``wer_greedy`` | ``cer_lm`` | ``wer_lm`` (the tuned LM weight)."""
    if kind.endswith("_lm"):
        lm = run.lm_results()
        return None if lm is None else lm[kind.removesuffix("_lm")].get(subset)
    return run.results[kind].get(subset)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    return "–" if mean is None else f"{scale * mean:.2f} ± {scale * std:.2f}"


def _paired(a: ClaimRun, b: ClaimRun, subset: str, decoder: str, unit: str) -> tuple[list, list, list]:
    ea, eb = a.errors(subset, decoder), b.errors(subset, decoder)
    if ea["ids"] != eb["ids"]:
        raise ValueError(f"{a.path} and {b.path} scored different utterances of {subset}: not paired")
    return ea["errors"][unit], eb["errors"][unit], ea["lengths"][unit]


def comparisons(arms: dict[str, list[ClaimRun]], subset: str, decoder: str, unit: str) -> dict[str, dict[str, Any]]:
    """Arm → per-seed and pooled paired differences to the dense run of the same seed."""
    reference = {r.seed: r for r in arms.get(REFERENCE, [])}
    out: dict[str, dict[str, Any]] = {}
    for arm, runs in arms.items():
        if arm == REFERENCE:
            continue
        pairs, per_seed = [], {}
        for run in runs:
            dense = reference.get(run.seed)
            if dense is None:
                continue
            try:
                triple = _paired(dense, run, subset, decoder, unit)
            except FileNotFoundError:
                continue
            pairs.append(triple)
            per_seed[run.seed] = paired_bootstrap(*triple, seed=run.seed)
        if pairs:
            out[arm] = {"per_seed": per_seed, "pooled": pooled_paired_bootstrap(pairs)}
    return out


def _interval(d: PairedDifference) -> str:
    return f"{100 * d.diff:+.2f} [{100 * d.low:+.2f}, {100 * d.high:+.2f}]"


def read_curves(run: ClaimRun) -> dict[str, list[tuple[int, float]]]:
    """``val/cer`` and ``train_monitor/cer`` against the step, from the run's CSV log."""
    curves: dict[str, list[tuple[int, float]]] = {"val/cer": [], "train_monitor/cer": []}
    for file in sorted(run.path.glob("**/metrics.csv")):
        with file.open() as handle:
            for row in csv.DictReader(handle):
                for key in curves:
                    if row.get(key):
                        curves[key].append((int(row["step"]), float(row[key])))
    return {k: sorted(set(v)) for k, v in curves.items()}


def plot_curves(arms: dict[str, list[ClaimRun]], file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for arm, runs in arms.items():
        if arm in ("magnitude",):  # fine-tuning only: its steps are not comparable
            continue
        for ax, key in zip(axes, ("val/cer", "train_monitor/cer"), strict=True):
            per_step: dict[int, list[float]] = {}
            for run in runs:
                for step, value in read_curves(run)[key]:
                    per_step.setdefault(step, []).append(value)
            if per_step:
                steps = sorted(per_step)
                ax.plot(steps, [100 * statistics.fmean(per_step[s]) for s in steps], marker=".", label=arm)
    for ax, title in zip(
        axes, ("dev-clean CER (greedy)", "training-sample CER (greedy, no augmentation)"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("CER %, mean over seeds")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def keep_probs(run: ClaimRun) -> dict[str, list[float]]:
    """Site kind → the final σ(β) of every unit of the run's evaluated checkpoint (learned retention only)."""
    from conformer_prune.dropout.base import LearnsRetention
    from conformer_prune.export import build_dense_net, read_checkpoint

    checkpoint = Path(run.results["checkpoint"])
    net = build_dense_net(read_checkpoint(checkpoint), checkpoint)
    probs: dict[str, list[float]] = {}
    for site in net.encoder.sites():
        if isinstance(site.module, LearnsRetention):
            probs.setdefault(site.kind, []).extend(site.module.keep_prob().detach().flatten().tolist())
    return probs


def plot_keep_probs(arms: dict[str, list[ClaimRun]], file: Path) -> list[str]:
    """σ(β) histograms per site kind (rows: the learned-retention arms, first seed); returns the arms shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {arm: keep_probs(runs[0]) for arm, runs in arms.items() if arm in ("adaptive", "adaptive_strong", "l0")}
    shown = {arm: probs for arm, probs in shown.items() if probs}
    if not shown:
        return []
    kinds = sorted({k for probs in shown.values() for k in probs})
    fig, axes = plt.subplots(len(shown), len(kinds), figsize=(2.6 * len(kinds), 2.2 * len(shown)), squeeze=False)
    for row, (arm, probs) in enumerate(shown.items()):
        for col, kind in enumerate(kinds):
            ax = axes[row][col]
            ax.hist(probs.get(kind, []), bins=40, range=(0, 1))
            ax.set_title(f"{arm}: {kind}", fontsize=8)
            ax.set_yscale("log")
    fig.supxlabel("σ(β) (L0: P(gate ≠ 0))")
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return list(shown)


def report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the report files into ``out_dir`` (default ``<sweep_dir>/report``); returns ``claim.md``."""
    sweep_dir = Path(sweep_dir)
    arms = find_runs(sweep_dir)
    if REFERENCE not in arms:
        raise ValueError(f"sweep_dir={sweep_dir}: no finished {REFERENCE}/seed<N> run (run scripts/claim.sh)")
    out = Path(out_dir) if out_dir else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    dense_params = statistics.fmean(r.params for r in arms[REFERENCE])

    kinds = ("cer_greedy", "wer_greedy", "cer_lm", "wer_lm")
    rows, numbers = [], {"arms": {}, "comparisons": {}}
    for arm, runs in arms.items():
        params = statistics.fmean(r.params for r in runs)
        macs = [r.macs for r in runs if r.macs is not None]
        row = {
            "arm": arm,
            "label": ARM_LABELS.get(arm, arm),
            "seeds": [r.seed for r in runs],
            "params": params,
            "removed": 1.0 - params / dense_params,
            "mmacs_per_second": statistics.fmean(macs) / 1e6 if macs else None,
            "lm_weight": runs[0].lm_weight,
        }
        for subset in TEST_SUBSETS:
            for kind in kinds:
                row[f"{subset}/{kind}"] = _mean_std([_metric(r, subset, kind) for r in runs])
        rows.append(row)
        numbers["arms"][arm] = row

    lines = [f"# The claim protocol: `{sweep_dir}`", ""]
    lines += [
        "Mean ± std over seeds, error rates in %. *beam+LM*: lexicon + word 3-gram beam search at the arm's LM "
        "weight, tuned on dev-clean. Parameters after export; MACs per second of audio.",
        "",
    ]
    header = ["arm", "seeds", "params", "removed", "MMAC/s", "LM w"]
    header += [f"{s} {m}" for s in TEST_SUBSETS for m in ("CER greedy", "WER greedy", "CER beam+LM", "WER beam+LM")]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["label"],
            ",".join(map(str, row["seeds"])),
            f"{row['params']:,.0f}",
            f"{100 * row['removed']:.1f} %",
        ]
        cells += ["–" if row["mmacs_per_second"] is None else f"{row['mmacs_per_second']:.1f}", row["lm_weight"] or "–"]
        cells += [_fmt(*row[f"{s}/{k}"]) for s in TEST_SUBSETS for k in kinds]
        lines.append("| " + " | ".join(cells) + " |")

    for subset in TEST_SUBSETS:
        for decoder, unit, what in (("greedy", "chars", "CER, greedy"), ("lm", "words", "WER, beam+LM")):
            try:
                found = comparisons(arms, subset, decoder, unit)
            except ValueError as err:
                log.warning("%s", err)
                continue
            if not found:
                continue
            key = f"{subset} {what}"
            lines += ["", f"## vs dense: {key} (arm − dense, points, paired bootstrap 95 % interval)", ""]
            lines += ["| arm | per seed | pooled over seeds | verdict |", "|---|---|---|---|"]
            numbers["comparisons"][key] = {}
            for arm, result in found.items():
                per_seed = "; ".join(f"s{s}: {_interval(d)}" for s, d in result["per_seed"].items())
                pooled = result["pooled"]
                lines.append(
                    f"| {ARM_LABELS.get(arm, arm)} | {per_seed} | {_interval(pooled)} | **{pooled.verdict()}** |"
                )
                numbers["comparisons"][key][arm] = {
                    "per_seed": {s: vars(d) for s, d in result["per_seed"].items()},
                    "pooled": vars(pooled),
                    "verdict": pooled.verdict(),
                }

    plot_curves(arms, out / "learning_curves.png")
    lines += ["", "## Learning curves", "", "![learning curves](learning_curves.png)"]
    if plot_keep_probs(arms, out / "keep_prob.png"):
        lines += ["", "## Retention probabilities at the end (first seed)", "", "![keep probabilities](keep_prob.png)"]
    (out / "claim.md").write_text("\n".join(lines) + "\n")
    (out / "claim.json").write_text(json.dumps(numbers, indent=2, default=str))
    with (out / "claim.csv").open("w", newline="") as handle:
        flat = [{k: (v[0] if isinstance(v, tuple) else v) for k, v in row.items()} for row in rows]
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    log.info("wrote %s", out / "claim.md")
    return out / "claim.md"
