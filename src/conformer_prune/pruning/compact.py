"""Walk a model's prunable sites: what would be kept, and a compacted copy with parameter counts.

The sites do their own surgery (``compact_``); this module only walks, counts and reports (parameters,
kept units and heads, multiply-accumulates per second of audio).
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from conformer_prune.dropout.base import LearnsRetention, UnitDropout
from conformer_prune.models.conformer import ConformerEncoder
from conformer_prune.sites import kinds, site_kinds


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def encoder_of(net: nn.Module) -> ConformerEncoder:
    encoder = getattr(net, "encoder", net)
    if not isinstance(encoder, ConformerEncoder):
        raise TypeError(f"expected a model with a ConformerEncoder, got {type(encoder).__name__}")
    return encoder


def kept_units(net: nn.Module) -> dict[str, list[list[int]]]:
    """Site kind → per-layer ``[kept, total]`` under the current eval gates."""
    kept: dict[str, list[list[int]]] = defaultdict(list)
    for site in encoder_of(net).sites():
        kept[site.kind].append([int(site.module.keep_mask().sum()), site.module.num_units])
    return dict(kept)


def expected_keep(net: nn.Module) -> dict[str, float]:
    """Site kind → mean retention probability, for strategies that learn one."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for site in encoder_of(net).sites():
        if isinstance(site.module, LearnsRetention):
            probs = site.module.keep_prob().detach()
            sums[site.kind][0] += float(probs.sum())
            sums[site.kind][1] += probs.numel()
    return {kind: total / n for kind, (total, n) in sums.items() if n}


DECIDED_MARGIN = 0.1
"""A retention probability below this or above ``1 − DECIDED_MARGIN`` counts as decided."""


def decided_fraction(probs: torch.Tensor, margin: float = DECIDED_MARGIN) -> float:
    """Fraction of the retention probabilities ``probs`` below ``margin`` or above ``1 − margin``
    (1.0 for a fully bimodal distribution)."""
    return float(((probs < margin) | (probs > 1.0 - margin)).float().mean())


def retention_summary(net: nn.Module, margin: float = DECIDED_MARGIN) -> dict[str, dict[str, float]]:
    """How decided the learned retention probabilities are, per site kind and ``"all"``.

    For the units of strategies that learn ``σ(β)``: ``units`` (count), ``pruned`` (fraction the eval
    gate removes), ``near_zero`` (fraction with ``σ(β) < margin``), ``near_one`` (``σ(β) > 1 − margin``)
    and ``decided`` (their sum: 1.0 for a perfectly bimodal distribution). Empty without such units.
    """
    if not 0.0 < margin < 0.5:
        raise ValueError(f"retention margin must be in (0, 0.5), got {margin}")
    probs: dict[str, list[torch.Tensor]] = defaultdict(list)
    pruned: dict[str, int] = defaultdict(int)
    for site in encoder_of(net).sites():
        if isinstance(site.module, LearnsRetention):
            probs[site.kind].append(site.module.keep_prob().detach().float().cpu())
            pruned[site.kind] += site.module.num_units - int(site.module.keep_mask().sum())
    if not probs:
        return {}
    groups = {kind: torch.cat(p) for kind, p in probs.items()}
    groups["all"] = torch.cat(list(groups.values()))
    pruned["all"] = sum(pruned.values())
    summary = {}
    for kind, p in groups.items():
        near_zero, near_one = float((p < margin).float().mean()), float((p > 1.0 - margin).float().mean())
        summary[kind] = {
            "units": p.numel(),
            "pruned": pruned[kind] / p.numel(),
            "near_zero": near_zero,
            "near_one": near_one,
            "decided": near_zero + near_one,  # = decided_fraction(p, margin), without a third pass
        }
    return summary


def strategy_params(net: nn.Module) -> int:
    """Parameters of the dropout strategies (keep logits): training-only, never exported."""
    return sum(p.numel() for m in net.modules() if isinstance(m, UnitDropout) for p in m.parameters(recurse=False))


@torch.no_grad()
def params_if_compacted(net: nn.Module) -> int:
    """``count_params(compact_copy(net))`` in closed form, without copying: the parameters left after
    removing every pruned unit (each site's unit cost), the query dims of heads left without value
    dims, and the strategies' own parameters."""
    total = count_params(net) - strategy_params(net)
    for layer in encoder_of(net).layers:
        costs, sites = layer.unit_costs(), layer.sites()
        keep = {kind: site.keep_mask() for kind, site in sites.items()}
        for spec in site_kinds():
            kept = spec.kept_by_compaction(getattr(layer, spec.host), keep)
            total -= costs[spec.kind] * (sites[spec.kind].num_units - int(kept.sum()))
    return total


def compact_copy(net: nn.Module) -> nn.Module:
    """A compacted deep copy of ``net`` (eval mode); the original is untouched."""
    compacted = copy.deepcopy(net).eval()
    encoder_of(compacted).compact_()
    return compacted


def param_report(dense: nn.Module, compacted: nn.Module) -> dict:
    """Parameter counts before/after, in total, for the encoder and per site kind."""
    enc_before, enc_after = encoder_of(dense), encoder_of(compacted)

    def per_kind(encoder: ConformerEncoder) -> dict[str, int]:
        counts = dict.fromkeys(kinds(), 0)
        for layer in encoder.layers:
            for spec in site_kinds():
                counts[spec.kind] += sum(p.numel() for p in spec.owned(getattr(layer, spec.host)))
        return counts

    return {
        "params_before": count_params(dense),
        "params_after": count_params(compacted),
        "encoder_params_before": count_params(enc_before),
        "encoder_params_after": count_params(enc_after),
        "site_params_before": per_kind(enc_before),
        "site_params_after": per_kind(enc_after),
    }


def kept_heads(net: nn.Module, num_heads: int) -> list[list[int]]:
    """Per-layer ``[heads left, heads before]``; a head with no value dim left is removed by compaction."""
    return [[layer.attn.num_heads, num_heads] for layer in encoder_of(net).layers]


@torch.no_grad()
def macs_per_second(net: nn.Module, input_dim: int, seconds: float = 10.0, *, frames_per_second: float) -> float:
    """Multiply-accumulates per second of audio of ``net``'s forward pass (encoder, plus the CTC head).

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one ``seconds``-long utterance,
    so it counts exactly the matrix products and convolutions that run (per-head widths, pruned heads,
    the quadratic attention terms at that length); element-wise work is not counted. ``MACs = FLOPs / 2``.

    Args:
        net: ``CTCModel``, ``TransducerModel`` (its forward is the encoder) or a bare encoder.
        input_dim: feature dim ``F``.
        seconds: utterance length the count is made on (attention makes MACs/s grow with length).
        frames_per_second: the features' frame rate (``FeatureSettings.frames_per_second``: 100 for a 10 ms hop).
    """
    mode = net.training
    net.eval()
    frames = max(int(round(seconds * frames_per_second)), 7)
    features = torch.zeros(1, frames, input_dim)  # (B, T, F)
    with FlopCounterMode(display=False) as counter:
        net(features, torch.tensor([frames]))
    net.train(mode)
    return counter.get_total_flops() / 2 / seconds
