"""Per-module parameter table of the configured model, built without data (``scripts/summarize.py``)."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table
from torch import nn

from conformer_prune.pruning.compact import count_params

log = logging.getLogger(__name__)


def parameter_table(net: nn.Module, max_depth: int = 2) -> list[tuple[str, str, int]]:
    """``(name, type, params)`` for every module down to ``max_depth`` dots (layers collapse to one row each)."""
    rows = []
    for name, module in net.named_modules():
        depth = name.count(".") + 1 if name else 0
        if 0 < depth <= max_depth:
            rows.append((name, type(module).__name__, count_params(module)))
    return rows


def vocab_size_of(cfg: DictConfig) -> int:
    """``cfg.vocab_size``, else the vocabulary the configured tokenizer (``data.tokenizer``) will have."""
    if cfg.get("vocab_size") is not None:
        return int(cfg.vocab_size)
    from dataclasses import asdict

    from conformer_prune.data.tokenizer import TokenizerSettings, planned_vocab_size

    given = OmegaConf.select(cfg, "data.tokenizer") or {}
    settings = {**asdict(TokenizerSettings()), **OmegaConf.to_container(given, resolve=True)}
    return planned_vocab_size(settings["model_type"], int(settings["vocab_size"]), settings["alphabet"])


def summarize(cfg: DictConfig, console: Console | None = None) -> int:
    """Build ``cfg.model.net`` with the configured vocabulary (:func:`vocab_size_of`), print its table;
    returns the total."""
    vocab_size = vocab_size_of(cfg)
    with open_dict(cfg):
        cfg.model.net.vocab_size = vocab_size
    net = instantiate(cfg.model.net)
    table = Table(title=f"{type(net).__name__} ({vocab_size} output tokens)")
    for column in ("module", "type", "params"):
        table.add_column(column, justify="right" if column == "params" else "left")
    for name, kind, params in parameter_table(net, int(cfg.max_depth)):
        table.add_row(name, kind, f"{params:,}")
    console = console or Console()
    console.print(table)
    total = count_params(net)
    console.print(f"total_params={total}", highlight=False)
    return total
