"""``pareto.png``: compacted parameters against error rate, one panel per subset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from conformer_prune.report.groups import Group, reference_group
from conformer_prune.report.runs import _fmt_alpha

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
