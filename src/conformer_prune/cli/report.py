"""``scripts/report.py``: :func:`~conformer_prune.report.make_report` with the keys of ``conf/report.yaml``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conformer_prune.report import make_report


def report(cfg: Any) -> dict[str, Path]:
    """:func:`~conformer_prune.report.make_report` with the keys of ``conf/report.yaml``."""
    dirs: list[str] = []
    sweep = cfg.get("sweep_dir")
    if sweep:
        dirs += [str(sweep)] if isinstance(sweep, str) else [str(s) for s in sweep]
    dirs += [str(d) for d in (cfg.get("run_dirs") or [])]
    if not dirs:
        raise ValueError("give sweep_dir=<multirun dir> and/or run_dirs=[<run dir>,...]")
    out_dir = cfg.get("out_dir")
    if not out_dir:
        out_dir = dirs[0] if sweep and len(dirs) == 1 else f"outputs/report/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    return make_report(
        dirs,
        out_dir,
        subsets=list(cfg.subsets) if cfg.get("subsets") else None,
        plot_subsets=list(cfg.plot_subsets) if cfg.get("plot_subsets") else None,
        metric=str(cfg.get("metric") or "wer"),
        command=_command(),
        compare_on=str(cfg.get("compare_on") or "wer"),
    )


def _command() -> str:
    """``python scripts/report.py <overrides>`` of the running Hydra job ("" outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    return " ".join(["python scripts/report.py", *HydraConfig.get().overrides.task])
