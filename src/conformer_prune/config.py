"""Config checks that run before Hydra creates an output directory.

Hydra already rejects unknown keys (struct mode) and unknown group options while composing. This
callback instantiates the cheap parts of the config — dropout strategies, schedules, the encoder on
the ``meta`` device, the data module, the optimiser — so an invalid *value* fails with a message
naming its key before anything is written.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """An invalid value in the composed config; the message names the key."""


def _check(key: str, build: Any) -> Any:
    try:
        return build()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised with the key that caused it
        raise ConfigError(f"invalid config at `{key}`: {err}") from err


def validate(cfg: DictConfig) -> None:
    """Instantiate the cheap parts of a training config; raise :class:`ConfigError` naming the bad key."""
    for site in ("ffn", "query", "value", "conv"):
        if OmegaConf.select(cfg, f"dropout.{site}") is not None:
            _check(f"dropout.{site}", lambda site=site: instantiate(cfg.dropout[site])(4))
    for key in ("pruning.target", "pruning.temperature"):
        if OmegaConf.select(cfg, key) is not None:
            schedule = _check(key, lambda key=key: instantiate(OmegaConf.select(cfg, key)))
            _check(key, lambda schedule=schedule: schedule(0, 10))
    if OmegaConf.select(cfg, "model.net.encoder") is not None:
        with torch.device("meta"):
            _check("model.net.encoder", lambda: instantiate(cfg.model.net.encoder))
    if OmegaConf.select(cfg, "model.optimizer") is not None:
        _check("model.optimizer", lambda: instantiate(cfg.model.optimizer)([torch.nn.Parameter(torch.zeros(1))]))
    if OmegaConf.select(cfg, "pruning.alpha") is not None and cfg.pruning.alpha < 0:
        raise ConfigError(f"pruning.alpha must be >= 0, got {cfg.pruning.alpha}")
    trainer = OmegaConf.select(cfg, "trainer")
    if trainer is not None and (trainer.get("max_steps") or 0) <= 0:
        raise ConfigError("trainer.max_steps must be > 0: training budgets are given in steps")
    if OmegaConf.select(cfg, "data") is not None:
        _check("data", lambda: instantiate(cfg.data))
    _check_objective(cfg)
    if OmegaConf.select(cfg, "eval_device") not in (None, "auto"):
        from conformer_prune.distributed import resolve_eval_device

        _check("eval_device", lambda: resolve_eval_device(str(cfg.eval_device)))


PER_SUBSET_RESULTS = ("wer", "cer", "wer_greedy", "cer_greedy", "rtf")


def _check_objective(cfg: DictConfig) -> None:
    """``objective`` (what scripts/train.py returns to a sweeper) must name a number results.json will hold."""
    objective = OmegaConf.select(cfg, "objective")
    if objective is None:
        return
    parts = str(objective).split("/")
    if parts[0] in PER_SUBSET_RESULTS:
        subsets = OmegaConf.select(cfg, "eval_subsets") or OmegaConf.select(cfg, "data.eval_subsets")
        if subsets is None:
            subsets = [
                *(OmegaConf.select(cfg, "data.dev_subsets") or []),
                *(OmegaConf.select(cfg, "data.test_subsets") or []),
            ]
        if len(parts) != 2 or parts[1] not in list(subsets):
            raise ConfigError(
                f"objective={objective}: use <metric>/<subset> with a subset the run evaluates ({list(subsets)}), "
                "e.g. cer/test-clean (or change eval_subsets)"
            )
    elif parts[0] != "params" or len(parts) != 2:
        raise ConfigError(
            f"objective={objective}: use <metric>/<subset> with metric one of {list(PER_SUBSET_RESULTS)}, "
            "or params/<total|encoder|compacted_total|compacted_encoder>"
        )


class ValidateConfig(Callback):
    """Hydra callback: :func:`validate` the config before the run (or sweep) directory exists.

    Hydra turns exceptions raised in callbacks into warnings, so an invalid config ends the process
    with ``SystemExit`` (exit status 1, the message on stderr) instead.
    """

    def _validate(self, config: DictConfig) -> None:
        if not HydraConfig.initialized():
            HydraConfig.instance().set_config(config)
        try:
            validate(config)
        except ConfigError as err:
            raise SystemExit(f"Error in the config: {err}") from err

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._validate(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._validate(config)
