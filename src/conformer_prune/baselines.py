"""Baselines for adaptive-dropout pruning: dense models of the pruned size, and magnitude pruning.

Three configs of ``conf/experiment/`` use this module (each run shows up in ``scripts/report.py``):

* ``dense_same_size``: the exact per-layer widths of a compacted model, trained from scratch. The
  ``${cp.widths_from:<export dir>}`` resolver reads ``net.encoder.layer_widths`` from the export's
  ``config.yaml`` and checks the rest of the encoder (``d_model``, layers, heads, kernel, front end)
  matches the configured one.
* ``dense_uniform``: every site of every layer scaled by the *same* factor ``f`` (FFN ``d_ff``,
  per-head query/key and value dims, conv channels; all heads kept) so the encoder has a target
  parameter count: ``${cp.uniform_widths:<target_params>,<params_from>}``. ``target_params`` counts
  *encoder* parameters (the head does not change with the widths, so matching the encoder matches the
  total); ``params_from`` reads ``encoder_params_after`` from an export's ``report.json``. ``f`` is the
  value whose rounded widths land closest to the target.
* ``magnitude_finetune``: structured magnitude pruning of a dense checkpoint to the per-site,
  per-layer kept counts of an adaptive run (its ``report.json`` ``kept``), then fine-tuning.
  :func:`unit_scores` ranks the units of each site by weight norms:

  * FFN hidden unit ``j``: ``‖linear1.weight[j, :]‖ · ‖linear2.weight[:, j]‖`` (in-row times out-column);
  * query dim ``j``: ``‖linear_q.weight[j, :]‖ · ‖linear_k.weight[j, :]‖`` (the q and k rows that dot);
  * value dim ``j``: ``‖linear_v.weight[j, :]‖ · ‖linear_out.weight[:, j]‖``;
  * conv channel ``j``: ``‖(pointwise_in.weight[j, :], pointwise_in.weight[j + C, :])‖ · ‖pointwise_out.weight[:, j]‖``
    (both GLU rows of the channel, times its output column).

  The top ``k`` units of every site are kept by a
  :class:`~conformer_prune.dropout.fixed_mask.FixedMaskDropout`; the Lightning callback
  :class:`~conformer_prune.callbacks.magnitude.MagnitudePruneInit` loads the dense weights and sets
  the masks before fitting.

The ``${cp.*}`` resolvers around these functions are :mod:`conformer_prune.cli.resolvers` (registered by the
entry points, never by importing this module). A resolver given ``null`` returns ``null`` (the full-size
architecture) so every preset composes on its own; the experiments'
:class:`~conformer_prune.callbacks.magnitude.RequireSource` callback refuses to *train* one without its source.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from conformer_prune.dropout.fixed_mask import FixedMaskDropout
from conformer_prune.models.conformer import ConformerEncoder
from conformer_prune.pruning.compact import count_params
from conformer_prune.rundir import CONFIG_FILE, REPORT_FILE, checkpoint_of, export_dir_of
from conformer_prune.sites import dense_layer_widths, kinds, site_kinds, total_width

log = logging.getLogger(__name__)

GEOMETRY_KEYS = ("input_dim", "d_model", "num_layers", "num_heads", "kernel_size", "subsampling_channels")
"""Encoder settings a per-layer width list only fits if they match."""
ENCODER_DEFAULTS: dict[str, int] = {
    name: p.default
    for name, p in inspect.signature(ConformerEncoder).parameters.items()
    if name in (*GEOMETRY_KEYS, "d_ff")
}
"""``ConformerEncoder``'s own defaults (read from its signature), for configs that leave a key out."""


def read_export(path: str | Path, key: str) -> tuple[dict, dict]:
    """``(config.yaml, report.json)`` of the export behind ``path`` as plain dicts."""
    import yaml

    export = export_dir_of(path, key)
    config = yaml.safe_load((export / CONFIG_FILE).read_text())
    report = json.loads((export / REPORT_FILE).read_text())
    if not isinstance(config, dict) or "encoder" not in (config.get("net") or {}):
        raise ValueError(f"{key}={path}: {export / CONFIG_FILE} has no net.encoder section (re-export the model)")
    return config, report


def geometry(encoder: Mapping[str, Any]) -> dict[str, int]:
    """The encoder settings that do not depend on pruning (missing keys take the encoder's defaults)."""
    return {k: int(ENCODER_DEFAULTS[k] if encoder.get(k) is None else encoder[k]) for k in (*GEOMETRY_KEYS, "d_ff")}


def check_geometry(source: Mapping[str, Any], target: Mapping[str, Any], key: str, path: Any) -> None:
    """Raise a ``ValueError`` naming ``key`` unless the two encoder configs agree on :data:`GEOMETRY_KEYS`."""
    src, dst = geometry(source), geometry(target)
    diffs = [f"{k}: {src[k]} there, {dst[k]} here" for k in GEOMETRY_KEYS if src[k] != dst[k]]
    if diffs:
        raise ValueError(
            f"{key}={path}: the source encoder differs from model.net.encoder ({'; '.join(diffs)}): choose the "
            "model/encoder preset the source was trained with (or override model.net.encoder.<key>)"
        )


# -- dense same size ------------------------------------------------------------------------------
def widths_from(path: str | Path, target_encoder: Mapping[str, Any] | None = None, key: str = "widths_from") -> list:
    """Per-layer widths of the compacted model at ``path`` (checked against ``target_encoder`` if given)."""
    config, _ = read_export(path, key)
    encoder = config["net"]["encoder"]
    widths = encoder.get("layer_widths")
    if not widths:
        raise ValueError(f"{key}={path}: its config.yaml has no net.encoder.layer_widths (re-export the model)")
    if target_encoder is not None:
        check_geometry(encoder, target_encoder, key, path)
    return widths


# -- dense uniform small --------------------------------------------------------------------------
def uniform_widths(encoder: Mapping[str, Any], factor: float) -> list[dict]:
    """Every site of every layer at ``factor`` × its dense width (rounded, at least 1; all heads kept)."""
    if not 0.0 < factor <= 1.0:
        raise ValueError(f"the uniform width factor must be in (0, 1], got {factor}")
    g = geometry(encoder)

    def scaled(width: int) -> int:
        return max(1, int(math.floor(factor * width + 0.5)))

    layer = dense_layer_widths(g, scaled)
    return [copy.deepcopy(layer) for _ in range(g["num_layers"])]


def encoder_params(encoder: Mapping[str, Any], layer_widths: list[dict] | None) -> int:
    """Parameters of a ``ConformerEncoder`` with these widths and no dropout modules (built on ``meta``)."""
    g = geometry(encoder)
    with torch.device("meta"):
        net = ConformerEncoder(**g, layer_widths=layer_widths)
    return count_params(net)


@functools.lru_cache(maxsize=64)
def _linear_cost(geometry_items: tuple[tuple[str, int], ...]) -> tuple[int, dict[str, int]]:
    """Encoder parameters at width 1 everywhere, and the cost of one more unit per width key and layer."""
    g = dict(geometry_items)
    base_layer = dense_layer_widths(g, lambda _: 1)
    base_widths = [copy.deepcopy(base_layer) for _ in range(g["num_layers"])]
    base = encoder_params(g, base_widths)
    costs = {}
    for key, width in base_layer.items():
        bigger = copy.deepcopy(base_widths)
        bigger[0][key] = [2, *width[1:]] if isinstance(width, list) else 2
        costs[key] = encoder_params(g, bigger) - base
    return base, costs


def _count_linear(g: dict[str, int], layer: dict) -> int:
    """Closed-form encoder parameter count of uniform layers (exact: every parameter is linear in the widths)."""
    base, cost = _linear_cost(tuple(sorted(g.items())))
    ones = dense_layer_widths(g, lambda _: 1)
    extra = sum(cost[key] * (total_width(layer[key]) - total_width(ones[key])) for key in cost)
    return base + g["num_layers"] * extra


def scale_to_params(encoder: Mapping[str, Any], target_params: int) -> tuple[list[dict], float, int]:
    """The uniform widths whose encoder parameter count is closest to ``target_params``.

    Returns:
        ``(layer_widths, factor, params)``.

    Raises:
        ValueError: the target is above the dense encoder or below the smallest (width-1) encoder.
    """
    g = geometry(encoder)
    target = int(target_params)
    dense = encoder_params(g, None)
    smallest = _count_linear(g, uniform_widths(g, 1e-9)[0])
    if not smallest <= target <= dense:
        raise ValueError(
            f"target_params={target} is outside what uniform scaling of this encoder reaches "
            f"({smallest} .. {dense} encoder parameters): give a target in that range"
        )
    # the count only changes where a rounded width does: try one factor between each pair of such breakpoints
    dense = {spec.dense_width(g) for spec in site_kinds()}
    breaks = sorted({(n + 0.5) / m for m in dense for n in range(m)} | {1.0})
    factors = [(a + b) / 2 for a, b in zip(breaks, breaks[1:], strict=False)] + [breaks[0] / 2, 1.0]
    best = min((abs(_count_linear(g, uniform_widths(g, f)[0]) - target), f) for f in factors)
    factor = best[1]
    widths = uniform_widths(g, factor)
    params = encoder_params(g, widths)
    return widths, factor, params


def target_from(target_params: Any, params_from: Any) -> int | None:
    """The encoder parameter target: ``target_params``, else ``encoder_params_after`` of ``params_from``."""
    if target_params not in (None, "", "null", "None"):
        if params_from not in (None, "", "null", "None"):
            raise ValueError("give target_params or params_from, not both")
        return int(target_params)
    if params_from in (None, "", "null", "None"):
        return None
    _, report = read_export(params_from, "params_from")
    if "encoder_params_after" not in report:
        raise ValueError(f"params_from={params_from}: its report.json has no encoder_params_after (re-export it)")
    return int(report["encoder_params_after"])


# -- magnitude structured pruning -----------------------------------------------------------------
@torch.no_grad()
def unit_scores(encoder: ConformerEncoder) -> dict[tuple[int, str], Tensor]:
    """``(layer, site kind) -> (U,)`` magnitude scores (see the module docstring for each site)."""
    return {
        (i, spec.kind): spec.score(getattr(layer, spec.host)).detach().float().cpu()
        for i, layer in enumerate(encoder.layers)
        for spec in site_kinds()
    }


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """``(U,)`` bool keeping the ``k`` highest scores (ties: the lower index)."""
    if not 0 <= k <= scores.numel():
        raise ValueError(f"cannot keep {k} of {scores.numel()} units")
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[order[:k]] = True
    return keep


def kept_counts_from(path: str | Path, key: str = "counts_from") -> dict[str, list[list[int]]]:
    """Site kind -> per-layer ``[kept, total]`` of an export's ``report.json``."""
    _, report = read_export(path, key)
    kept = report.get("kept")
    if not isinstance(kept, dict) or not all(k in kept for k in kinds()):
        raise ValueError(f"{key}={path}: report.json has no kept counts for every site kind {list(kinds())}")
    return kept


def counts_from_ratio(encoder: ConformerEncoder, keep_ratio: float) -> dict[str, list[list[int]]]:
    """The same fraction of units kept at every site (rounded, at least 1)."""
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    counts: dict[str, list[list[int]]] = {k: [] for k in kinds()}
    for site in encoder.sites():
        total = site.module.num_units
        counts[site.kind].append([max(1, int(math.floor(keep_ratio * total + 0.5))), total])
    return counts


@torch.no_grad()
def magnitude_prune_(
    encoder: ConformerEncoder, counts: Mapping[str, Sequence[Sequence[int]]], key: str = "counts_from"
) -> dict[str, list[list[int]]]:
    """Set every :class:`FixedMaskDropout` site to keep its top-``k`` units by :func:`unit_scores`.

    Args:
        encoder: its sites must all be :class:`FixedMaskDropout` (``dropout=fixed_mask``).
        counts: site kind -> per-layer ``[kept, total]`` (``report.json`` ``kept``).
        key: config key named in errors.

    Returns:
        The kept counts that were applied (same layout as ``counts``).
    """
    scores = unit_scores(encoder)
    applied: dict[str, list[list[int]]] = {k: [] for k in kinds()}
    for site in encoder.sites():
        if not isinstance(site.module, FixedMaskDropout):
            raise ValueError(
                f"magnitude pruning needs dropout=fixed_mask at every site; {site.name} has "
                f"{type(site.module).__name__}"
            )
        per_layer = counts.get(site.kind)
        if per_layer is None or len(per_layer) <= site.layer:
            raise ValueError(f"{key}: no kept count for {site.name} (the source has fewer layers?)")
        kept, total = (int(v) for v in per_layer[site.layer])
        if total != site.module.num_units:
            raise ValueError(
                f"{key}: {site.name} has {site.module.num_units} units here but {total} in the source: "
                "use the same model/encoder preset"
            )
        keep = top_k_mask(scores[(site.layer, site.kind)], kept)
        site.module.set_mask(keep)
        applied[site.kind].append([kept, total])
    return applied


# -- dense weights for magnitude pruning ----------------------------------------------------------
def load_dense_weights_(net: torch.nn.Module, path: str | Path, key: str = "init_from") -> Path:
    """Copy a training checkpoint's ``net.*`` weights into ``net`` in place (strategy state excepted).

    Keys of dropout-strategy modules may be missing on either side (a dense run has no masks, an
    adaptive run has keep logits); everything else must match name for name and shape for shape.

    Returns:
        The checkpoint file that was read.

    Raises:
        ValueError: unreadable checkpoint or weights that do not fit ``net``; the message names ``key``.
    """
    from conformer_prune.checkpoint import net_state, read_checkpoint
    from conformer_prune.dropout.base import UnitDropout

    file = checkpoint_of(path, key)
    ckpt = read_checkpoint(file)
    state = net_state(ckpt)
    if not state:
        raise ValueError(f"{key}={file}: the checkpoint has no net.* weights")
    sites = {name for name, module in net.named_modules() if isinstance(module, UnitDropout)}

    def is_strategy(name: str) -> bool:
        return name.rsplit(".", 1)[0] in sites

    foreign = sorted(k for k in state if is_strategy(k))
    try:
        missing, unexpected = net.load_state_dict({k: v for k, v in state.items() if not is_strategy(k)}, strict=False)
    except RuntimeError as err:
        raise ValueError(
            f"{key}={file}: its weights do not fit this model (train the dense model with the same model and "
            f"model/encoder preset): {err}"
        ) from err
    bad = [k for k in missing if not is_strategy(k)] + list(unexpected)
    if bad:
        raise ValueError(
            f"{key}={file}: the checkpoint and this model differ in {len(bad)} weights (e.g. {bad[:3]}): train the "
            "dense model with the same model and model/encoder preset"
        )
    if foreign:
        log.warning(
            "%s=%s holds dropout-strategy state (%s, ...): it was not trained with standard dropout, so the "
            "magnitudes come from a model that already pruned itself",
            key,
            file,
            foreign[0],
        )
    return file
