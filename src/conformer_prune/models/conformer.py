"""Conformer encoder (Gulati et al. 2020) whose prunable sites take injected dropout strategies.

Block: ``x + ½·FFN(x)`` → ``x + MHSA(x)`` → ``x + LConv(x)`` → ``x + ½·FFN(x)`` → LayerNorm, with
residual dropout after each module. Prunable sites (one :class:`UnitDropout` each, per block):

=========  ==============================  ===========================================
site       unit                            removed per pruned unit
=========  ==============================  ===========================================
``ffn1``   hidden neuron of the first FFN  ``linear1`` row + bias, ``linear2`` column
``ffn2``   hidden neuron of the last FFN   same
``query``  attention query dim             q/k/pos rows, u/v bias entries
``value``  attention value dim             v row + bias, output-projection column
``conv``   LConv channel (masked after     both GLU rows + biases, depthwise filter,
           BatchNorm + Swish by default)   norm channel, pointwise-out column
=========  ==============================  ===========================================

Each site kind is described once, in the site registry (:mod:`conformer_prune.sites`): the block derives
its sites, widths, unit costs and compaction from it.

Shapes: ``B`` batch, ``T`` frames, ``F`` features, ``D`` model dim, ``U`` units of a site.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from conformer_prune.dropout.base import DropoutFactory, UnitDropout
from conformer_prune.dropout.standard import NoDropout
from conformer_prune.models.attention import RelPositionMultiHeadAttention, relative_positions
from conformer_prune.models.slicing import slice_depthwise_conv, slice_linear, slice_norm
from conformer_prune.models.subsampling import Conv2dSubsampling
from conformer_prune.sites import Site, dense_layer_widths, site_kind, site_kinds


class FeedForward(nn.Module):
    """LayerNorm → Linear(D→U) → Swish → unit dropout (the site) → Linear(U→D) → dropout."""

    def __init__(self, d_model: int, d_ff: int, dropout_rate: float, unit_dropout: DropoutFactory | None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.activation = nn.SiLU()
        self.unit_dropout: UnitDropout = (unit_dropout or NoDropout)(d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, D) -> (B, T, D)``."""
        hidden = self.unit_dropout(self.activation(self.linear1(self.norm(x))))  # (B, T, U)
        return self.dropout(self.linear2(hidden))

    def unit_cost(self) -> int:
        """Parameters removed with one hidden unit: its ``linear1`` row and bias, its ``linear2`` column."""
        return self.linear1.in_features + (self.linear1.bias is not None) + self.linear2.out_features

    @torch.no_grad()
    def compact_(self) -> int:
        """Remove pruned hidden units, folding the eval gate into ``linear2``; returns the kept count."""
        gate = self.unit_dropout.eval_gate().to(self.linear1.weight)
        keep = gate != 0
        self.linear1 = slice_linear(self.linear1, out_keep=keep)
        self.linear2 = slice_linear(self.linear2, in_keep=keep, in_scale=gate[keep])
        self.unit_dropout = NoDropout(int(keep.sum()))
        return self.unit_dropout.num_units


def depthwise_time_major(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """``conv`` (depthwise, ``groups == C``) applied to time-major ``(B, T, C)`` → ``(B, T, C)``, no transposes.

    ``(B, T, C)`` memory is a channels-last ``(B, C, 1, T)`` image, which oneDNN convolves 5-20x faster
    on CPU than ``Conv1d`` on ``(B, C, T)`` (``benchmarks/inference.py``); the output comes back
    channels-last, i.e. ``(B, T, C)`` contiguous. Same weights and result as ``conv(x.transpose(1, 2))``.
    """
    image = x.transpose(1, 2).unsqueeze(2)  # (B, C, 1, T), strides of (B, 1, T, C)
    weight = conv.weight.unsqueeze(2)  # (C, 1, 1, K)
    out = nn.functional.conv2d(image, weight, conv.bias, padding=(0, conv.padding[0]), groups=conv.groups)
    return out.squeeze(2).transpose(1, 2)  # (B, T, C)


MaskPosition = Literal["input", "output"]


class ConvModule(nn.Module):
    """LConv: LayerNorm → pointwise (D→2C) → GLU → depthwise conv → BatchNorm → Swish → pointwise (C→D)
    → dropout, ``C = D`` before pruning. The unit dropout (the site) masks the ``C`` channels at
    ``mask_position``:

    * ``"output"`` (default): after BatchNorm + Swish, at the input of the output pointwise conv. The
      mask's scale reaches the output, so the loss can fade a channel out.
    * ``"input"``: after the GLU, before the depthwise conv (the paper's "input vectors of the LConv").
      Training-mode BatchNorm normalises each channel by its batch statistics and cancels the mask's mean
      scale there, so the loss cannot fade a channel out (measured: the LConv-only ablation pruned nothing).
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int,
        dropout_rate: float,
        unit_dropout: DropoutFactory | None,
        channels: int | None = None,
        mask_position: MaskPosition = "output",
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"encoder.kernel_size must be odd for a centred convolution, got {kernel_size}")
        if mask_position not in ("input", "output"):
            raise ValueError(f"encoder.conv_mask_position must be 'input' or 'output', got {mask_position!r}")
        channels = d_model if channels is None else channels
        self.mask_position = mask_position
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * channels)
        self.unit_dropout: UnitDropout = (unit_dropout or NoDropout)(channels)
        self.depthwise = nn.Conv1d(
            channels, channels, kernel_size, padding=kernel_size // 2, groups=max(channels, 1), bias=False
        )
        self.batch_norm = nn.BatchNorm1d(channels)
        self.activation = nn.SiLU()
        self.pointwise_out = nn.Linear(channels, d_model)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: Tensor, pad_mask: Tensor) -> Tensor:
        """``(B, T, D)``, pad mask ``(B, T)`` (True = padding) → ``(B, T, D)``."""
        if self.depthwise.out_channels == 0:  # every channel pruned: only the output bias is left
            return self.dropout(self.pointwise_out(x.new_zeros(*x.shape[:2], 0)))
        x = nn.functional.glu(self.pointwise_in(self.norm(x)), dim=-1)  # (B, T, C)
        if self.mask_position == "input":
            x = self.unit_dropout(x)
        x = x.masked_fill(pad_mask[..., None], 0.0)  # zeros keep padding out of the conv
        x = depthwise_time_major(self.depthwise, x)  # (B, T, C)
        x = self.activation(self.batch_norm(x.flatten(0, 1)).view_as(x))  # statistics over (B*T, C) = over B, T
        if self.mask_position == "output":
            x = self.unit_dropout(x)
        return self.dropout(self.pointwise_out(x))

    def unit_cost(self) -> int:
        """Parameters removed with one channel: both GLU rows and biases, its depthwise filter, its norm
        weight and bias, its output-pointwise column."""
        pointwise_in = 2 * (self.pointwise_in.in_features + (self.pointwise_in.bias is not None))
        depthwise = self.depthwise.kernel_size[0] + (self.depthwise.bias is not None)
        return pointwise_in + depthwise + 2 + self.pointwise_out.out_features

    @torch.no_grad()
    def compact_(self) -> int:
        """Remove pruned channels (both GLU halves, filter, norm channel, output column), folding the eval
        gate into the next linear map: the GLU value half (``"input"``; the GLU is linear in it) or the
        output pointwise conv's columns (``"output"``). Returns the kept count.

        Exact only with BatchNorm in eval mode (running statistics), which is how a model is exported.
        """
        gate = self.unit_dropout.eval_gate().to(self.pointwise_in.weight)
        keep = gate != 0
        both = torch.cat([keep, keep])
        bn = self.batch_norm
        if self.mask_position == "input":
            scale = torch.cat([gate[keep], torch.ones_like(gate[keep])])
            self.pointwise_in = slice_linear(self.pointwise_in, out_keep=both, out_scale=scale)
            # A pruned channel enters the depthwise conv as 0, but BatchNorm's shift turns it into a
            # constant silu(bias - mean * weight / std) that still reaches the output: fold it into the bias.
            shift = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
            constant = self.pointwise_out.weight[:, ~keep] @ self.activation(shift[~keep])  # (D,)
            self.pointwise_out = slice_linear(self.pointwise_out, in_keep=keep)
            self.pointwise_out.bias += constant
        else:  # a pruned channel is zeroed after the activation: it reaches nothing
            self.pointwise_in = slice_linear(self.pointwise_in, out_keep=both)
            self.pointwise_out = slice_linear(self.pointwise_out, in_keep=keep, in_scale=gate[keep])
        self.depthwise = slice_depthwise_conv(self.depthwise, keep)
        self.batch_norm = slice_norm(bn, keep)
        self.unit_dropout = NoDropout(int(keep.sum()))
        return self.unit_dropout.num_units


class ConformerBlock(nn.Module):
    """½FFN → rel-pos MHSA → LConv → ½FFN → LayerNorm, each with a residual connection.

    Its prunable sites are the registered site kinds (:mod:`conformer_prune.sites`): the five built-in ones
    live in the block's modules; a registered extension kind adds its host as a residual branch after the
    last FFN. ``widths`` (from a compacted model's config) sets the width of every site by its width key,
    ``{"ffn1": int, "qk_dims": [int]*H, "v_dims": [int]*H, "conv": int, "ffn2": int}``; a key left out
    keeps the dense width. ``site_dropout`` maps a config key (``ffn``, ``query``, ...) to its strategy
    factory; a key left out (or ``None``) is no dropout.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        d_ff: int,
        kernel_size: int,
        dropout_rate: float = 0.1,
        attention_dropout: float = 0.1,
        site_dropout: Mapping[str, DropoutFactory | None] | None = None,
        widths: Mapping[str, Any] | None = None,
        conv_mask_position: MaskPosition = "output",
    ) -> None:
        super().__init__()
        geometry = {"d_model": d_model, "num_heads": num_heads, "d_ff": d_ff, "kernel_size": kernel_size}
        widths = {**dense_layer_widths(geometry), **(widths or {})}
        dropout = dict(site_dropout or {})
        self.ffn1 = FeedForward(d_model, widths["ffn1"], dropout_rate, dropout.get("ffn"))
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = RelPositionMultiHeadAttention(
            d_model,
            num_heads,
            attention_dropout,
            dropout.get("query"),
            dropout.get("value"),
            qk_dims=widths["qk_dims"],
            v_dims=widths["v_dims"],
        )
        self.attn_dropout = nn.Dropout(dropout_rate)
        self.conv = ConvModule(
            d_model,
            kernel_size,
            dropout_rate,
            dropout.get("conv"),
            channels=widths["conv"],
            mask_position=conv_mask_position,
        )
        self.ffn2 = FeedForward(d_model, widths["ffn2"], dropout_rate, dropout.get("ffn"))
        self.extensions: list[str] = []  # hosts of registered extension kinds, applied after ffn2
        for spec in site_kinds():
            if spec.build is not None:
                factory = dropout.get(spec.config_key)
                host = spec.build(
                    d_model=d_model, width=widths[spec.width_key], dropout_rate=dropout_rate, dropout=factory
                )
                self.add_module(spec.host, host)
                self.extensions.append(spec.host)
        self.final_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, pos_emb: Tensor, pad_mask: Tensor) -> Tensor:
        """``(B, T, D)`` with ``(2T-1, D)`` position embeddings and a ``(B, T)`` pad mask → ``(B, T, D)``."""
        x = torch.add(x, self.ffn1(x), alpha=0.5)  # x + ½·FFN(x) in one pass
        x = x + self.attn_dropout(self.attn(self.attn_norm(x), pos_emb, pad_mask))
        x = x + self.conv(x, pad_mask)
        x = torch.add(x, self.ffn2(x), alpha=0.5)
        for name in self.extensions:  # residual branches of registered extension kinds
            x = x + getattr(self, name)(x)
        return self.final_norm(x)

    def host(self, kind: str) -> nn.Module:
        """The module that applies site ``kind`` and compacts it."""
        return getattr(self, site_kind(kind).host)

    def sites(self) -> dict[str, UnitDropout]:
        """The block's prunable sites by kind, in registry order."""
        return {spec.kind: getattr(getattr(self, spec.host), spec.strategy) for spec in site_kinds()}

    def unit_costs(self) -> dict[str, int]:
        """Parameters compaction removes with one unit of each site kind (a head left without value dims
        also takes its query dims: :meth:`RelPositionMultiHeadAttention.surviving`)."""
        return {spec.kind: spec.unit_cost(getattr(self, spec.host)) for spec in site_kinds()}

    def widths(self) -> dict:
        """Current width of every site (what a compacted config records)."""
        return {spec.width_key: spec.width(getattr(self, spec.host)) for spec in site_kinds()}

    @torch.no_grad()
    def compact_(self) -> None:
        """Physically remove every pruned unit of the block (each host compacts its own sites); restores
        the block's train/eval mode."""
        mode = self.training
        for name in dict.fromkeys(spec.host for spec in site_kinds()):
            getattr(self, name).compact_()
        self.train(mode)


class ConformerEncoder(nn.Module):
    """Conv2d 4x subsampling + ``num_layers`` Conformer blocks.

    Args:
        input_dim: feature dim ``F``.
        d_model: model dim ``D`` (never pruned).
        num_layers: number of blocks.
        num_heads: attention heads.
        d_ff: FFN hidden width before pruning.
        kernel_size: depthwise convolution width (odd).
        subsampling_channels: Conv2d channels of the front end.
        dropout_rate: residual / FFN-output dropout.
        attention_dropout: dropout on attention probabilities.
        ffn_dropout, query_dropout, value_dropout, conv_dropout: strategy factories of the built-in
            site kinds' config keys (Hydra ``_partial_``); ``None`` → no dropout at that site.
        layer_widths: per-block site widths of a compacted model (see :class:`ConformerBlock`).
        conv_mask_position: where the LConv site masks its channels: ``"output"`` (after BatchNorm +
            Swish) or ``"input"`` (before the depthwise conv); see :class:`ConvModule`.
        **extension_dropout: ``<config_key>_dropout`` of a registered extension site kind
            (:mod:`conformer_prune.sites`); any other keyword is an error.
    """

    def __init__(
        self,
        input_dim: int = 80,
        d_model: int = 144,
        num_layers: int = 4,
        num_heads: int = 4,
        d_ff: int = 576,
        kernel_size: int = 15,
        subsampling_channels: int = 64,
        dropout_rate: float = 0.1,
        attention_dropout: float = 0.1,
        ffn_dropout: DropoutFactory | None = None,
        query_dropout: DropoutFactory | None = None,
        value_dropout: DropoutFactory | None = None,
        conv_dropout: DropoutFactory | None = None,
        layer_widths: list[dict] | None = None,
        conv_mask_position: MaskPosition = "output",
        **extension_dropout: DropoutFactory | None,
    ) -> None:
        super().__init__()
        args = {spec.dropout_arg: spec.config_key for spec in site_kinds()}
        unknown = sorted(set(extension_dropout) - {spec.dropout_arg for spec in site_kinds() if spec.build})
        if unknown:
            raise ValueError(
                f"encoder: unknown argument(s) {unknown}; the site strategies are {sorted(args)} "
                "(registered in conformer_prune.sites)"
            )
        given = {"ffn_dropout": ffn_dropout, "query_dropout": query_dropout, "value_dropout": value_dropout,
                 "conv_dropout": conv_dropout, **extension_dropout}  # fmt: skip
        site_dropout = {args[arg]: factory for arg, factory in given.items()}
        if layer_widths is not None and len(layer_widths) != num_layers:
            raise ValueError(
                f"encoder.layer_widths lists {len(layer_widths)} layers but encoder.num_layers is {num_layers}"
            )
        self.d_model = d_model
        self.subsampling = Conv2dSubsampling(input_dim, d_model, subsampling_channels)
        self.input_dropout = nn.Dropout(dropout_rate)
        self.layers = nn.ModuleList(
            ConformerBlock(
                d_model,
                num_heads,
                d_ff,
                kernel_size,
                dropout_rate,
                attention_dropout,
                site_dropout,
                widths=layer_widths[i] if layer_widths is not None else None,
                conv_mask_position=conv_mask_position,
            )
            for i in range(num_layers)
        )

    def forward(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, F), (B,) -> (B, T', D), (B,)`` with ``T' ≈ T / 4``."""
        x, lens = self.subsampling(features, feature_lens)  # (B, T', D)
        x = self.input_dropout(x)
        t = x.size(1)
        pad_mask = torch.arange(t, device=x.device)[None, :] >= lens[:, None]  # (B, T')
        pos_emb = relative_positions(t, self.d_model, x.device, x.dtype)  # (2T'-1, D)
        for layer in self.layers:
            x = layer(x, pos_emb, pad_mask)
        return x, lens

    def sites(self) -> list[Site]:
        """Every prunable site, layer by layer, in registry order (:func:`conformer_prune.sites.kinds`)."""
        return [
            Site(i, kind, module, layer.unit_costs()[kind])
            for i, layer in enumerate(self.layers)
            for kind, module in layer.sites().items()
        ]

    def layer_widths(self) -> list[dict]:
        return [layer.widths() for layer in self.layers]

    @torch.no_grad()
    def compact_(self) -> list[dict]:
        """Remove pruned units in every block (in place); returns the new ``layer_widths``."""
        for layer in self.layers:
            layer.compact_()
        return self.layer_widths()
