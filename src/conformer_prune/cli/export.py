"""``scripts/export.py``: :func:`~conformer_prune.export.export_checkpoint` with the keys of ``conf/export.yaml``."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from conformer_prune.export import export_checkpoint


def export(cfg: DictConfig) -> dict:
    """:func:`~conformer_prune.export.export_checkpoint` with the keys of ``conf/export.yaml``; returns the report."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    return export_checkpoint(
        cfg.ckpt_path,
        cfg.out_dir,
        threshold=cfg.get("threshold"),
        atol=float(cfg.get("atol", 1e-4)),
        verify_batches=int(cfg.get("verify_batches", 1)),
        overwrite=bool(cfg.get("overwrite", False)),
        torchscript=bool(cfg.get("torchscript", False)),
        allow_generated=bool(cfg.get("allow_generated", False)),
        onnx=bool(cfg.get("onnx", False)),
    )
