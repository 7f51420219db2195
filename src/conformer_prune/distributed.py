"""Where the end-of-training work runs: global rank zero alone, on the evaluation device.

After ``trainer.fit`` every DDP rank returns to :func:`conformer_prune.cli.train.train`. The evaluation,
the export and ``results.json`` belong to the run, not to a rank: :func:`run_on_global_zero` runs them
on global rank zero while the other ranks wait at a barrier (on a gloo group of its own, whose timeout
covers a long evaluation, not the training group's) and then return ``None`` and exit cleanly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")


def resolve_eval_device(setting: str | None, trainer: Any = None, key: str = "eval_device") -> torch.device:
    """The device an evaluation runs on (config key ``eval_device`` of training, ``device`` of evaluate.yaml).

    Args:
        setting: ``auto`` (or ``None``): the device this process trained on (``trainer.strategy.root_device``:
            ``cuda:<local rank>`` on GPUs, the CPU otherwise), or without a trainer the first GPU if there is
            one; ``cpu``; ``cuda`` or ``cuda:N``.
        trainer: the Lightning trainer that ran ``fit`` (``None``: none ran).
        key: the config key, for error messages.

    Raises:
        ValueError: an unknown device name, or a CUDA device where CUDA is unavailable.
    """
    if setting in (None, "auto"):
        if trainer is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(trainer.strategy.root_device)
        return device if device.type in ("cpu", "cuda") else torch.device("cpu")
    try:
        device = torch.device(str(setting))
    except RuntimeError as err:
        raise ValueError(f"{key}={setting!r} is not a device name: use auto, cpu, cuda or cuda:N") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{key}={setting!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{key}={setting!r} but CUDA is not available: use {key}=cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{key}={setting!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def run_on_global_zero(trainer: Any, work: Callable[[], T], timeout_s: float = 6 * 3600.0) -> T | None:
    """Run ``work()`` on global rank zero only; the other ranks wait until it has finished.

    Args:
        trainer: the trainer whose ranks take part (a single process just runs ``work``).
        work: what rank zero does (evaluate, export, write results).
        timeout_s: how long the other ranks wait at the barrier.

    Returns:
        ``work()``'s value on rank zero, ``None`` on the other ranks. If ``work`` raises, rank zero
        still releases the others (they return ``None``) and then re-raises.
    """
    if int(getattr(trainer, "world_size", 1)) <= 1 or not (dist.is_available() and dist.is_initialized()):
        return work()
    # A gloo group with its own timeout: the training group's (30 min by default, NCCL on GPUs) would
    # time out while rank zero decodes dev/test with beam search.
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    if trainer.global_rank != 0:
        log.info("rank %d: training done; global rank 0 evaluates and exports", trainer.global_rank)
        dist.barrier(group=group)
        return None
    try:
        return work()
    finally:
        dist.barrier(group=group)
