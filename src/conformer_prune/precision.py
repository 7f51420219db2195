"""Training precision on CPU: ``bf16-mixed`` where the CPU has bf16 units, fp32 elsewhere.

Measured on this project's machines (Intel Xeon with AMX-BF16, ``benchmarks/bench_train_step.py``):
a quickstart training step runs 1.8x faster under ``bf16-mixed`` than in fp32, with the same accuracy
at 1500 steps (``docs/speed.md``). On a CPU without bf16 units bf16 autocast runs several times slower
than fp32, so :func:`training_precision` falls back to ``32-true`` there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

log = logging.getLogger(__name__)


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16).

    Only then is bf16 autocast faster than fp32 on CPU: on this project's machines (AMX-BF16) a training
    step of the quickstart model runs 1.8x faster in ``bf16-mixed``; without bf16 units it runs several
    times slower.
    """
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu's own CPU-feature probes
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def training_precision(trainer_cfg: Mapping) -> str | int | None:
    """``trainer.precision``, except ``bf16-mixed`` on a CPU without bf16 units, which becomes ``32-true``
    (with a warning): the CPU trainer defaults to ``bf16-mixed`` for the machines that have them."""
    precision = trainer_cfg.get("precision")
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if cpu and str(precision).startswith("bf16") and not native_bf16_cpu():
        log.warning(
            "trainer.precision=%s on a CPU without bf16 units (AMX / AVX512-BF16) would run several times slower "
            "than fp32: training in 32-true instead",
            precision,
        )
        return "32-true"
    return precision
