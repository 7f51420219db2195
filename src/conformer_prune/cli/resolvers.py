"""The ``cp.*`` OmegaConf resolvers of the baseline experiments (:mod:`conformer_prune.baselines`).

* ``${cp.widths_from:<export dir>}``: the per-layer widths of a compacted model (``experiment=dense_same_size``);
* ``${cp.uniform_widths:<target_params>,<params_from>}``: uniform widths to a parameter target
  (``experiment=dense_uniform``).

Nothing registers them on import: :func:`register_resolvers` does, called by the entry points that compose
these experiments (``scripts/train.py``) and by the :class:`RegisterResolvers` Hydra callback the baseline
experiments list under ``hydra.callbacks`` (so they compose from any entry point).
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from conformer_prune.baselines import ENCODER_DEFAULTS, GEOMETRY_KEYS, scale_to_params, target_from, widths_from

log = logging.getLogger(__name__)


def _root_encoder(root: DictConfig | None) -> dict[str, Any]:
    """Plain geometry values of ``model.net.encoder`` (interpolated sites are not touched)."""
    if root is None:
        return dict(ENCODER_DEFAULTS)
    node = OmegaConf.select(root, "model.net.encoder")
    if node is None:
        return dict(ENCODER_DEFAULTS)
    return {k: node[k] for k in (*GEOMETRY_KEYS, "d_ff") if k in node and node[k] is not None}


def _widths_resolver(path: Any, _root_: DictConfig | None = None) -> list | None:
    if path in (None, "", "null", "None"):
        log.warning("widths_from is not set: the full-size architecture is configured")
        return None
    return widths_from(path, _root_encoder(_root_))


def _uniform_resolver(target_params: Any, params_from: Any, _root_: DictConfig | None = None) -> list | None:
    target = target_from(target_params, params_from)
    if target is None:
        log.warning("neither target_params nor params_from is set: the full-size architecture is configured")
        return None
    widths, factor, params = scale_to_params(_root_encoder(_root_), target)
    log.info("dense uniform: width factor %.4f -> %d encoder parameters (target %d)", factor, params, target)
    return widths


def register_resolvers() -> None:
    """Register ``cp.widths_from`` and ``cp.uniform_widths`` with OmegaConf (idempotent)."""
    for name, resolver in (("cp.widths_from", _widths_resolver), ("cp.uniform_widths", _uniform_resolver)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


class RegisterResolvers(Callback):
    """Hydra callback that registers the ``cp.*`` resolvers (:func:`register_resolvers`) when Hydra builds it.

    Hydra instantiates its callbacks before the task resolves its config, so the baseline experiments list
    it under ``hydra.callbacks`` and work from any entry point. (Hydra 1.3 turns exceptions raised in its
    callbacks into warnings, so the baselines check their sources in a Lightning callback instead:
    :class:`conformer_prune.callbacks.magnitude.RequireSource`.)
    """

    def __init__(self) -> None:
        register_resolvers()
