"""``scripts/export.py``: :func:`~conformer_prune.export.export_checkpoint` with the keys of ``conf/export.yaml``
(its ``export_options`` are the ones the end-of-training export uses, ``conf/export_options/default.yaml``)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from omegaconf import DictConfig

from conformer_prune.export import export_checkpoint


def export_arguments(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`~conformer_prune.export.export_checkpoint` that ``cfg`` sets."""
    names = [p.name for p in inspect.signature(export_checkpoint).parameters.values() if p.name != "datamodule"]
    return {name: cfg[name] for name in names if name in cfg}


def export(cfg: DictConfig) -> dict:
    """:func:`~conformer_prune.export.export_checkpoint` with the keys of ``conf/export.yaml``; returns the report."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    return export_checkpoint(**export_arguments(cfg))
