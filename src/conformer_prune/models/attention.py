"""Relative-position multi-head self-attention (Transformer-XL style) with prunable query/value dims.

For head ``h`` with content bias ``u`` and position bias ``v`` (Dai et al. 2019, Gulati et al. 2020)::

    score_ij = ((q_i + u) · k_j + (q_i + v) · p_{i-j}) * scale,   scale = 1 / sqrt(d_head)

Two prunable sites, each a :class:`~conformer_prune.dropout.UnitDropout` over ``Sq`` / ``Sv`` dims:

* ``query_dropout`` masks ``q + u`` and ``q + v`` with **one** mask, applied *after* the biases, so a
  pruned dim ``j`` leaves ``k_j``, ``p_j``, ``u_j`` and ``v_j`` unused (all removed by compaction);
* ``value_dropout`` masks ``v``; a pruned dim removes its ``v`` row and the output projection column.

After compaction heads may have different widths (``qk_dims``/``v_dims`` per head); the original
``1/sqrt(d_head)`` scale is kept. A head with no value dim left is removed; a head with no query dim
left attends uniformly. Heads of one width run in batched matmuls; heads of different widths run one
at a time on strided slices of the projections, so a compacted model does exactly its own
multiply-accumulates (no zero-padded slots) and copies nothing. On CPU every model runs one head at a
time (measured 1.3-1.5x faster than batching heads, inference and training: no head-major copies, and
each head's ``(B, T, T)`` scores stay in cache); on an accelerator heads of one width are batched.

Fewer passes over the ``T x T`` scores: the relative shift of the position scores is a strided view
(:func:`rel_shift_view`; a copy only while tracing), the content scores are added to it inside the
matmul (``baddbmm`` with the scale folded in), the padding mask is added (its gradient is free) and
skipped when nothing is padded.

Shapes: ``B`` batch, ``T`` frames, ``D`` model dim, ``H`` heads, ``Sq``/``Sv`` total query/value dims.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conformer_prune.dropout.base import DropoutFactory, UnitDropout
from conformer_prune.dropout.standard import NoDropout
from conformer_prune.models.slicing import slice_linear


def relative_positions(length: int, d_model: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Sinusoidal embeddings of relative offsets ``T-1, ..., 0, ..., -(T-1)``: ``(2T-1, D)``."""
    offsets = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / d_model))
    angles = offsets[:, None] * inv_freq[None, :]  # (2T-1, D/2)
    emb = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :d_model]  # (2T-1, D)
    return emb.to(dtype)


def rel_shift(scores: Tensor) -> Tensor:
    """Turn ``(..., T, 2T-1)`` scores indexed by offset column into ``(..., T, T)`` indexed by key.

    Column ``c`` of the input holds offset ``T-1-c``; output ``[i, j]`` is input ``[i, T-1-i+j]``
    (offset ``i - j``). A copy; traceable with a symbolic ``T`` (TorchScript, ONNX).
    """
    *lead, t, n = scores.shape
    padded = F.pad(scores, (1, 0))  # (..., T, 2T)
    padded = padded.reshape(*lead, n + 1, t)  # (..., 2T, T)
    return padded[..., 1:, :].reshape(*lead, t, n)[..., :t]


def rel_shift_view(scores: Tensor) -> Tensor:
    """:func:`rel_shift` of a contiguous ``(N, T, 2T-1)`` tensor as a strided view, without a copy.

    Output ``[n, i, j]`` is input ``[n, i, T-1-i+j]``, at storage offset ``(T-1) + i(2T-2) + j`` of the
    slice ``n``: rows ``2T-2`` apart, so the view never overlaps itself (its backward is a plain copy).
    The strides are Python ints, so a trace would bake ``T`` in: tracing uses :func:`rel_shift`.
    """
    n, t, width = scores.shape
    assert scores.is_contiguous() and width == 2 * t - 1
    return scores.as_strided((n, t, t), (t * width, width - 1, 1), scores.storage_offset() + t - 1)


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class RelPositionMultiHeadAttention(nn.Module):
    """Multi-head self-attention with relative positions and separate, sliceable projections.

    Args:
        d_model: model dim ``D``.
        num_heads: number of heads ``H``; ``d_head = D // H`` sets the logit scale.
        attention_dropout: dropout on the attention probabilities.
        query_dropout: strategy factory for the query site (``Sq`` units); ``None`` → no dropout.
        value_dropout: strategy factory for the value site (``Sv`` units); ``None`` → no dropout.
        qk_dims: per-head query/key widths after compaction (default ``[d_head] * H``).
        v_dims: per-head value widths after compaction (default ``[d_head] * H``).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        attention_dropout: float = 0.1,
        query_dropout: DropoutFactory | None = None,
        value_dropout: DropoutFactory | None = None,
        qk_dims: list[int] | None = None,
        v_dims: list[int] | None = None,
    ) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"encoder.d_model ({d_model}) must be divisible by encoder.num_heads ({num_heads})")
        d_head = d_model // num_heads
        self.d_model = d_model
        self.scale = d_head**-0.5  # kept through pruning
        self.qk_dims = list(qk_dims) if qk_dims is not None else [d_head] * num_heads
        self.v_dims = list(v_dims) if v_dims is not None else [d_head] * num_heads
        if len(self.qk_dims) != len(self.v_dims):
            raise ValueError(f"qk_dims {self.qk_dims} and v_dims {self.v_dims} must list the same heads")
        sq, sv = sum(self.qk_dims), sum(self.v_dims)
        self.linear_q = nn.Linear(d_model, sq)
        self.linear_k = nn.Linear(d_model, sq)
        self.linear_v = nn.Linear(d_model, sv)
        self.linear_pos = nn.Linear(d_model, sq, bias=False)
        self.linear_out = nn.Linear(sv, d_model)
        self.pos_bias_u = nn.Parameter(torch.zeros(sq))
        self.pos_bias_v = nn.Parameter(torch.zeros(sq))
        nn.init.normal_(self.pos_bias_u, std=0.02)
        nn.init.normal_(self.pos_bias_v, std=0.02)
        self.attention_dropout = nn.Dropout(attention_dropout)
        self.query_dropout: UnitDropout = (query_dropout or NoDropout)(sq)
        self.value_dropout: UnitDropout = (value_dropout or NoDropout)(sv)

    @property
    def num_heads(self) -> int:
        return len(self.v_dims)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor) -> Tensor:
        """Attend.

        Args:
            x: ``(B, T, D)``.
            pos_emb: ``(2T-1, D)`` relative position embeddings (see :func:`relative_positions`).
            key_padding_mask: ``(B, T)``, True at padded frames.

        Returns:
            ``(B, T, D)``.
        """
        b, t, _ = x.shape
        if not self.v_dims:  # every head pruned: only the output bias is left
            return self.linear_out(x.new_zeros(b, t, 0))
        q = self.linear_q(x)  # (B, T, Sq)
        if isinstance(self.query_dropout, NoDropout):  # compacted or no strategy: no mask pass
            q_u, q_v = q + self.pos_bias_u, q + self.pos_bias_v
        else:
            mask = self.query_dropout.mask_like(q)
            q_u, q_v = (q + self.pos_bias_u) * mask, (q + self.pos_bias_v) * mask
        k = self.linear_k(x)  # (B, T, Sq)
        p = self.linear_pos(pos_emb)  # (2T-1, Sq)
        v = self.value_dropout(self.linear_v(x))  # (B, T, Sv)
        neg = None  # additive key mask: its backward is free, unlike masked_fill's
        # on CPU, one utterance (or none padded) needs no mask pass; elsewhere asking would cost a device sync
        if _tracing() or x.device.type != "cpu" or bool(key_padding_mask.any()):
            neg = x.new_zeros(b, 1, t).masked_fill_(key_padding_mask[:, None, :], float("-inf"))  # (B, 1, T)
        if self._uniform_heads() and x.device.type != "cpu":  # on CPU one head at a time is faster (below)
            out = self._attend_batched(q_u, q_v, k, p, v, neg)
        else:
            out = self._attend_per_head(q_u, q_v, k, p, v, neg)
        return self.linear_out(out)  # (B, T, D)

    def _uniform_heads(self) -> bool:
        return len(set(self.qk_dims)) == 1 and len(set(self.v_dims)) == 1 and self.qk_dims[0] > 0

    def _scores(self, by_offset: Tensor, q_u: Tensor, k_t: Tensor, neg: Tensor | None) -> Tensor:
        """``((q_u k^T) + shift(by_offset) + neg) * scale`` in two passes over ``(N, T, T)``.

        Args:
            by_offset: ``(N, T, 2T-1)`` position scores by offset (contiguous).
            q_u: ``(N, T, d)``; k_t: ``(N, d, T)``.
            neg: additive key mask broadcastable to ``(N, T, T)`` (0 or -inf), or ``None``.
        """
        by_key = rel_shift(by_offset) if _tracing() else rel_shift_view(by_offset)  # (N, T, T)
        if neg is None:
            return torch.baddbmm(by_key, q_u, k_t, beta=self.scale, alpha=self.scale)
        scores = by_key + neg.to(by_key.dtype)  # a fresh tensor to accumulate into (-inf * scale = -inf)
        # in place, so no autocast: cast by hand (a no-op in fp32)
        return scores.baddbmm_(q_u.to(scores.dtype), k_t.to(scores.dtype), beta=self.scale, alpha=self.scale)

    def _attend_batched(self, q_u: Tensor, q_v: Tensor, k: Tensor, p: Tensor, v: Tensor, neg: Tensor | None) -> Tensor:
        """All ``H`` heads of one width in batched matmuls: ``(B, T, Sq)`` x3, ``(2T-1, Sq)``, ``(B, T, Sv)``
        and a ``(B, 1, T)`` additive key mask → ``(B, T, Sv)``."""
        b, t, _ = q_u.shape
        h, dk, dv = self.num_heads, self.qk_dims[0], self.v_dims[0]
        q_u = q_u.view(b, t, h, dk).transpose(1, 2).reshape(b * h, t, dk)  # (B*H, T, dk)
        q_v = q_v.view(b, t, h, dk).transpose(1, 2)  # (B, H, T, dk)
        k = k.view(b, t, h, dk).permute(0, 2, 3, 1).reshape(b * h, dk, t)  # (B*H, dk, T)
        p = p.view(-1, h, dk).permute(1, 2, 0)  # (H, dk, 2T-1)
        by_offset = (q_v @ p).view(b * h, t, 2 * t - 1)  # (B*H, T, 2T-1)
        neg = None if neg is None else neg.repeat_interleave(h, dim=0)  # (B*H, 1, T)
        attn = self.attention_dropout(self._scores(by_offset, q_u, k, neg).softmax(-1))  # (B*H, T, T)
        out = attn.view(b, h, t, t) @ v.view(b, t, h, dv).transpose(1, 2)  # (B, H, T, dv)
        return out.transpose(1, 2).reshape(b, t, h * dv)

    def _attend_per_head(self, q_u: Tensor, q_v: Tensor, k: Tensor, p: Tensor, v: Tensor, neg: Tensor | None) -> Tensor:
        """One head at a time on views of the projections (arguments as :meth:`_attend_batched`).

        The heads' slices come from ``split``, so nothing is copied or zero-padded (the matmuls do exactly
        each head's own multiply-accumulates) and the backward pass concatenates the heads' gradients once.
        A head with no query dim left attends uniformly.
        """
        b, t, _ = q_u.shape
        heads = zip(
            q_u.split(self.qk_dims, -1),
            q_v.split(self.qk_dims, -1),
            k.split(self.qk_dims, -1),
            p.split(self.qk_dims, -1),
            v.split(self.v_dims, -1),
            self.qk_dims,
        )
        outs = []
        for q_u_h, q_v_h, k_h, p_h, v_h, dk in heads:  # (B, T, dk) x3, (2T-1, dk), (B, T, dv)
            if dk == 0:
                scores = q_u.new_zeros(b, t, t) if neg is None else neg.expand(b, t, t).contiguous()
            else:
                scores = self._scores(q_v_h @ p_h.t(), q_u_h, k_h.transpose(1, 2), neg)  # (B, T, T)
            outs.append(self.attention_dropout(scores.softmax(-1)) @ v_h)  # (B, T, dv)
        return torch.cat(outs, dim=-1)  # (B, T, Sv)

    def unit_costs(self) -> tuple[int, int]:
        """Parameters removed with one query dim (its q, k and position-projection rows and biases, and
        its u/v entries) and with one value dim (its v row and bias, its output-projection column)."""
        q_cost = sum(m.in_features + (m.bias is not None) for m in (self.linear_q, self.linear_k, self.linear_pos)) + 2
        v_cost = self.linear_v.in_features + (self.linear_v.bias is not None) + self.linear_out.out_features
        return q_cost, v_cost

    def surviving(self, q_keep: Tensor, v_keep: Tensor) -> tuple[Tensor, list[bool]]:
        """``(Sq,)`` query dims that compaction keeps and which heads live: a head with no value dim left
        is removed with its query dims."""
        q_head = torch.repeat_interleave(torch.arange(self.num_heads), torch.tensor(self.qk_dims, dtype=torch.long))
        v_head = torch.repeat_interleave(torch.arange(self.num_heads), torch.tensor(self.v_dims, dtype=torch.long))
        live = [bool(v_keep[v_head.to(v_keep.device) == h].any()) for h in range(self.num_heads)]
        return q_keep & torch.tensor(live, dtype=torch.bool)[q_head].to(q_keep.device), live

    @torch.no_grad()
    def compact_(self) -> None:
        """Remove pruned query/value dims (and heads left without values), folding the eval gates."""
        q_gate = self.query_dropout.eval_gate().to(self.linear_q.weight)
        v_gate = self.value_dropout.eval_gate().to(self.linear_v.weight)
        q_keep, live = self.surviving(q_gate != 0, v_gate != 0)
        v_keep = v_gate != 0
        q_head = torch.repeat_interleave(torch.arange(self.num_heads), torch.tensor(self.qk_dims, dtype=torch.long))
        v_head = torch.repeat_interleave(torch.arange(self.num_heads), torch.tensor(self.v_dims, dtype=torch.long))
        self.qk_dims = [int(q_keep[q_head == h].sum()) for h in range(self.num_heads) if live[h]]
        self.v_dims = [int(v_keep[v_head == h].sum()) for h in range(self.num_heads) if live[h]]
        q_scale, v_scale = q_gate[q_keep], v_gate[v_keep]
        self.linear_q = slice_linear(self.linear_q, out_keep=q_keep, out_scale=q_scale)
        self.linear_k = slice_linear(self.linear_k, out_keep=q_keep)
        self.linear_pos = slice_linear(self.linear_pos, out_keep=q_keep)
        self.pos_bias_u = nn.Parameter(self.pos_bias_u[q_keep] * q_scale)
        self.pos_bias_v = nn.Parameter(self.pos_bias_v[q_keep] * q_scale)
        self.linear_v = slice_linear(self.linear_v, out_keep=v_keep, out_scale=v_scale)
        self.linear_out = slice_linear(self.linear_out, in_keep=v_keep)
        self.query_dropout = NoDropout(sum(self.qk_dims))
        self.value_dropout = NoDropout(sum(self.v_dims))
