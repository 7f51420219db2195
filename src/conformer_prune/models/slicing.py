"""Slice ``nn.Linear`` / depthwise ``nn.Conv1d`` / norms by kept unit index (what every site's ``compact_`` uses).

Here, not in ``pruning/``: the models slice their own weights and ``pruning/`` imports ``models/``, so the
helpers live where both can use them without a package cycle.

Each function returns a new module holding copies of the kept rows/columns (optionally scaled), in
the same train/eval mode as the original. ``keep`` is a 1-D bool mask or an index tensor.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


def _index(keep: Tensor) -> Tensor:
    return keep.nonzero().flatten() if keep.dtype == torch.bool else keep.long()


def slice_linear(
    linear: nn.Linear,
    *,
    out_keep: Tensor | None = None,
    in_keep: Tensor | None = None,
    out_scale: Tensor | None = None,
    in_scale: Tensor | None = None,
) -> nn.Linear:
    """Keep output rows ``out_keep`` and input columns ``in_keep`` of ``linear``.

    ``out_scale`` (one value per kept output) multiplies the kept rows and bias; ``in_scale`` (one
    per kept input) multiplies the kept columns — this is how an eval gate is folded in.
    """
    weight = linear.weight.detach()  # (out, in)
    bias = linear.bias.detach() if linear.bias is not None else None
    if out_keep is not None:
        idx = _index(out_keep).to(weight.device)
        weight, bias = weight[idx], (bias[idx] if bias is not None else None)
    if in_keep is not None:
        weight = weight[:, _index(in_keep).to(weight.device)]
    if out_scale is not None:
        weight = weight * out_scale[:, None]
        bias = bias * out_scale if bias is not None else None
    if in_scale is not None:
        weight = weight * in_scale[None, :]
    with warnings.catch_warnings():  # zero-width layers are legal after pruning
        warnings.simplefilter("ignore", UserWarning)
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new.to(dtype=linear.weight.dtype).train(linear.training)


def slice_depthwise_conv(conv: nn.Conv1d, keep: Tensor) -> nn.Conv1d:
    """Keep channels ``keep`` of a depthwise ``Conv1d`` (``groups == in == out channels``)."""
    assert conv.in_channels == conv.out_channels and conv.groups == max(conv.in_channels, 1), "not depthwise"
    idx = _index(keep).to(conv.weight.device)
    channels = int(idx.numel())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        new = nn.Conv1d(
            channels,
            channels,
            conv.kernel_size[0],
            stride=conv.stride[0],
            padding=conv.padding[0],
            groups=max(channels, 1),
            bias=conv.bias is not None,
            device=conv.weight.device,
        )
    with torch.no_grad():
        new.weight.copy_(conv.weight[idx])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[idx])
    return new.to(dtype=conv.weight.dtype).train(conv.training)


def slice_norm(norm: nn.Module, keep: Tensor) -> nn.Module:
    """Keep channels ``keep`` of a ``BatchNorm1d`` (with running statistics) or a ``LayerNorm``."""
    idx = _index(keep).to(next(norm.parameters()).device)
    channels = int(idx.numel())
    if isinstance(norm, nn.BatchNorm1d):
        new = nn.BatchNorm1d(channels, eps=norm.eps, momentum=norm.momentum, device=norm.weight.device)
        with torch.no_grad():
            new.weight.copy_(norm.weight[idx])
            new.bias.copy_(norm.bias[idx])
            new.running_mean.copy_(norm.running_mean[idx])
            new.running_var.copy_(norm.running_var[idx])
            new.num_batches_tracked.copy_(norm.num_batches_tracked)
    elif isinstance(norm, nn.LayerNorm):
        raise ValueError("a LayerNorm over channels normalises across them: its channels cannot be pruned")
    else:
        raise TypeError(f"cannot slice {type(norm).__name__}")
    return new.train(norm.training)
