"""The site registry: every kind of prunable site, described once.

A *site kind* is a place in every Conformer block whose last tensor dimension holds ``U`` prunable
units and whose strategy (a :class:`~conformer_prune.dropout.UnitDropout`) comes from one config key.
:class:`SiteKind` says everything the rest of the code needs to know about it:

* ``kind`` (``ffn1``): its name in site names (``layers.3.ffn1``), ``report.json`` ``kept`` and
  ``prune/kept/<kind>``; ``config_key`` (``ffn``): the ``dropout.<config_key>`` node, passed to the
  encoder as ``<config_key>_dropout`` (two kinds may share one);
* ``host`` / ``strategy``: the block attribute holding the module that applies it, and that module's
  attribute holding the strategy (``attn`` / ``query_dropout``);
* ``width_key``, ``width`` and ``dense_width``: its entry in a compacted model's ``layer_widths``
  (a per-head list when ``per_head``), read from a host and before pruning from the encoder geometry;
* ``unit_cost``: parameters compaction removes with one unit; ``owned``: the parameters counted as the
  site's in an export's ``site_params_*``; ``surviving``: the units compaction keeps given every kind's
  keep mask in the block (a head left without value dims takes its query dims along);
* ``score``: the magnitude importance of its units (the magnitude-pruning baseline);
* its compaction is its host's ``compact_()``, which removes the pruned units and folds the eval gates.

From the registry the encoder builds, names and compacts its sites (:mod:`conformer_prune.models.conformer`);
compaction counts parameters (:mod:`conformer_prune.pruning.compact`); the exporter writes a compacted
config; validation instantiates every strategy; the baselines score, count and scale widths; the report
and the benchmark name the config keys. A new site kind is its host module, one :func:`register_site`
call and one line per config that gives it a strategy; one that is not on an existing module gives a
``build`` function and its host is a residual branch of the block (applied after the last FFN, before
the final LayerNorm). ``tests/unit/test_site_registry.py`` adds such a kind from the test tree alone.

Plain PyTorch; no import of :mod:`conformer_prune.models` (the models import this module).
Shapes: ``U`` units of a site, ``D`` model dim.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

Geometry = Mapping[str, int]
"""Encoder settings a dense width derives from: ``d_model``, ``num_heads``, ``d_ff``, ``kernel_size``."""


@dataclass(frozen=True)
class SiteKind:
    """One kind of prunable site (see the module docstring for each field).

    ``build(d_model=, width=, dropout_rate=, dropout=)`` (an extension kind only) makes the host: a
    module ``(B, T, D) -> (B, T, D)`` added to the block's residual stream, with a ``compact_()``.
    """

    kind: str
    config_key: str
    host: str
    strategy: str
    width_key: str
    group: str
    width: Callable[[nn.Module], int | list[int]]
    dense_width: Callable[[Geometry], int]
    unit_cost: Callable[[nn.Module], int]
    owned: Callable[[nn.Module], Iterable[Tensor]]
    score: Callable[[nn.Module], Tensor]
    per_head: bool = False
    surviving: Callable[[nn.Module, Mapping[str, Tensor]], Tensor] | None = None
    build: Callable[..., nn.Module] | None = None

    @property
    def dropout_arg(self) -> str:
        """The encoder argument (and ``model.net.encoder`` key) of its strategy factory."""
        return f"{self.config_key}_dropout"

    def kept_by_compaction(self, host: nn.Module, keep: Mapping[str, Tensor]) -> Tensor:
        """``(U,)`` bool: the units compaction keeps, given every kind's keep mask in the block."""
        return keep[self.kind] if self.surviving is None else self.surviving(host, keep)


@dataclass(frozen=True)
class Site:
    """One prunable site of an encoder: ``layer`` index, its :class:`SiteKind` name, its strategy module."""

    layer: int
    kind: str
    module: nn.Module
    unit_cost: int
    """Parameters compaction removes with one unit of this site."""

    @property
    def name(self) -> str:
        return f"layers.{self.layer}.{self.kind}"


def _attention_surviving(attn: nn.Module, keep: Mapping[str, Tensor]) -> Tensor:
    return attn.surviving(keep["query"], keep["value"])[0]


def _conv_score(conv: nn.Module) -> Tensor:
    glu = conv.pointwise_in.weight.view(2, conv.depthwise.out_channels, -1)  # (value|gate, C, D)
    return glu.pow(2).sum(dim=(0, 2)).sqrt() * conv.pointwise_out.weight.norm(dim=0)


def _ffn(kind: str) -> SiteKind:
    return SiteKind(
        kind=kind,
        config_key="ffn",
        host=kind,
        strategy="unit_dropout",
        width_key=kind,
        group="FFN",
        width=lambda ffn: ffn.linear1.out_features,
        dense_width=lambda g: int(g["d_ff"]),
        unit_cost=lambda ffn: ffn.unit_cost(),
        owned=lambda ffn: list(ffn.parameters()),
        # in-row times out-column
        score=lambda ffn: ffn.linear1.weight.norm(dim=1) * ffn.linear2.weight.norm(dim=0),
    )


def _attention(kind: str, width_key: str, cost_index: int, **described: Any) -> SiteKind:
    """A per-head attention site: its widths are ``attn.<width_key>`` (one per head), its dense width a
    head's share of ``d_model``, its unit cost ``attn.unit_costs()[cost_index]``."""
    return SiteKind(
        kind=kind,
        config_key=kind,
        host="attn",
        strategy=f"{kind}_dropout",
        width_key=width_key,
        group="attention",
        per_head=True,
        width=lambda attn: list(getattr(attn, width_key)),
        dense_width=lambda g: int(g["d_model"]) // int(g["num_heads"]),
        unit_cost=lambda attn: attn.unit_costs()[cost_index],
        **described,
    )


BUILT_IN: tuple[SiteKind, ...] = (
    _ffn("ffn1"),
    _attention(
        "query",
        "qk_dims",
        0,
        owned=lambda attn: [
            *attn.linear_q.parameters(),
            *attn.linear_k.parameters(),
            *attn.linear_pos.parameters(),
            attn.pos_bias_u,
            attn.pos_bias_v,
        ],
        # the q and k rows that dot
        score=lambda attn: attn.linear_q.weight.norm(dim=1) * attn.linear_k.weight.norm(dim=1),
        surviving=_attention_surviving,
    ),
    _attention(
        "value",
        "v_dims",
        1,
        owned=lambda attn: [*attn.linear_v.parameters(), *attn.linear_out.parameters()],
        score=lambda attn: attn.linear_v.weight.norm(dim=1) * attn.linear_out.weight.norm(dim=0),
    ),
    SiteKind(
        kind="conv",
        config_key="conv",
        host="conv",
        strategy="unit_dropout",
        width_key="conv",
        group="conv",
        width=lambda conv: conv.depthwise.out_channels,
        dense_width=lambda g: int(g["d_model"]),
        unit_cost=lambda conv: conv.unit_cost(),
        owned=lambda conv: list(conv.parameters()),
        score=_conv_score,  # both GLU rows of the channel, times its output column
    ),
    _ffn("ffn2"),
)
"""The five sites of every Conformer block (``../shared/DESIGN.md`` §4)."""

_REGISTRY: dict[str, SiteKind] = {spec.kind: spec for spec in BUILT_IN}


def register_site(spec: SiteKind) -> SiteKind:
    """Add a site kind (after the registered ones). Raises ``ValueError`` on a kind or width key in use."""
    taken = {s.width_key for s in _REGISTRY.values()}
    if spec.kind in _REGISTRY or spec.width_key in taken:
        raise ValueError(f"site kind {spec.kind!r} (width key {spec.width_key!r}) is already registered")
    _REGISTRY[spec.kind] = spec
    return spec


def unregister_site(kind: str) -> None:
    """Remove a site kind (for tests that register their own)."""
    _REGISTRY.pop(kind)


@contextlib.contextmanager
def registered(spec: SiteKind) -> Iterator[SiteKind]:
    """``spec`` registered inside the ``with`` block only."""
    register_site(spec)
    try:
        yield spec
    finally:
        unregister_site(spec.kind)


def site_kinds() -> tuple[SiteKind, ...]:
    """Every registered site kind, in block order."""
    return tuple(_REGISTRY.values())


def site_kind(kind: str) -> SiteKind:
    return _REGISTRY[kind]


def kinds() -> tuple[str, ...]:
    """The registered kind names, in block order (``ffn1``, ``query``, ``value``, ``conv``, ``ffn2``)."""
    return tuple(_REGISTRY)


def config_keys() -> tuple[str, ...]:
    """The strategy config keys (``dropout.<key>``), in block order, each once."""
    return tuple(dict.fromkeys(s.config_key for s in _REGISTRY.values()))


def kinds_of(config_key: str) -> tuple[str, ...]:
    """The kinds whose strategy comes from ``config_key`` (``ffn`` -> ``ffn1``, ``ffn2``)."""
    return tuple(s.kind for s in _REGISTRY.values() if s.config_key == config_key)


def group_of(config_key: str) -> str:
    """How reports name the sites of ``config_key`` (``FFN``, ``attention``, ``conv``)."""
    return next(s.group for s in _REGISTRY.values() if s.config_key == config_key)


def dense_layer_widths(geometry: Geometry, scale: Callable[[int], int] = int) -> dict[str, int | list[int]]:
    """One block's ``layer_widths`` entry before pruning, each width passed through ``scale``."""
    return {
        s.width_key: [scale(s.dense_width(geometry))] * int(geometry["num_heads"])
        if s.per_head
        else scale(s.dense_width(geometry))
        for s in _REGISTRY.values()
    }


def total_width(width: int | list[int]) -> int:
    """Units of a ``layer_widths`` entry (a per-head list sums)."""
    return sum(width) if isinstance(width, list) else int(width)
