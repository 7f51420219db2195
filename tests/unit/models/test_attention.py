"""Relative-position attention: the strided rel-shift, batched vs per-head heads, padding, bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from conformer_prune.models.attention import (
    RelPositionMultiHeadAttention,
    rel_shift,
    rel_shift_view,
    relative_positions,
)


def test_strided_rel_shift_equals_the_copying_one_and_its_gradient() -> None:
    scores = torch.randn(6, 7, 13, requires_grad=True)  # (N, T, 2T-1)
    view = rel_shift_view(scores)
    assert view.untyped_storage().data_ptr() == scores.untyped_storage().data_ptr()  # a view: no copy
    torch.testing.assert_close(view, rel_shift(scores), atol=0, rtol=0)
    weights = torch.randn(6, 7, 7)
    (grad_view,) = torch.autograd.grad((view * weights).sum(), scores)
    (grad_copy,) = torch.autograd.grad((rel_shift(scores) * weights).sum(), scores)
    torch.testing.assert_close(grad_view, grad_copy, atol=0, rtol=0)


def attention_inputs(b: int = 3, t: int = 11, d: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(b, t, d)
    pad = torch.zeros(b, t, dtype=torch.bool)
    pad[1, 7:] = True
    pad[2, 3:] = True
    return x, relative_positions(t, d, x.device, x.dtype), pad


@pytest.mark.parametrize("padded", [True, False])
def test_batched_heads_equal_one_head_at_a_time_with_gradients(padded: bool) -> None:
    torch.manual_seed(0)
    attn = RelPositionMultiHeadAttention(32, 4, attention_dropout=0.0)
    x, pos, pad = attention_inputs()
    if not padded:
        pad[:] = False
    q = attn.linear_q(x)
    args = (q + attn.pos_bias_u, q + attn.pos_bias_v, attn.linear_k(x), attn.linear_pos(pos), attn.linear_v(x))
    neg = torch.zeros(3, 1, 11).masked_fill_(pad[:, None, :], float("-inf")) if padded else None
    batched, per_head = attn._attend_batched(*args, neg), attn._attend_per_head(*args, neg)
    torch.testing.assert_close(batched, per_head, atol=1e-6, rtol=1e-5)
    g1 = torch.autograd.grad(batched.square().sum(), list(attn.parameters()), allow_unused=True, retain_graph=True)
    g2 = torch.autograd.grad(per_head.square().sum(), list(attn.parameters()), allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_scores_match_the_definition_and_padding_is_ignored() -> None:
    """score_ij = ((q_i + u)·k_j + (q_i + v)·p_{i-j}) * scale, softmax over unpadded keys (per head)."""
    torch.manual_seed(1)
    attn = RelPositionMultiHeadAttention(8, 2, attention_dropout=0.0, qk_dims=[3, 1], v_dims=[2, 4]).eval()
    x, pos, pad = attention_inputs(d=8)
    with torch.no_grad():
        out = attn(x, pos, pad)
        q, k, v, p = attn.linear_q(x), attn.linear_k(x), attn.linear_v(x), attn.linear_pos(pos)
        t = x.size(1)
        offsets = torch.arange(t)[:, None] - torch.arange(t)[None, :]  # i - j
        heads, qs, vs = [], 0, 0
        for dq, dv in zip(attn.qk_dims, attn.v_dims):
            qh, kh, ph = q[..., qs : qs + dq], k[..., qs : qs + dq], p[:, qs : qs + dq]
            u, w = attn.pos_bias_u[qs : qs + dq], attn.pos_bias_v[qs : qs + dq]
            pos_rows = ph[t - 1 - offsets]  # (T, T, dq): column T-1-c holds offset c
            scores = (qh + u) @ kh.transpose(1, 2) + torch.einsum("btd,tsd->bts", qh + w, pos_rows)
            scores = (scores * attn.scale).masked_fill(pad[:, None, :], float("-inf"))
            heads.append(scores.softmax(-1) @ v[..., vs : vs + dv])
            qs, vs = qs + dq, vs + dv
        expected = attn.linear_out(torch.cat(heads, -1))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_runs_forward_and_backward_close_to_fp32() -> None:
    torch.manual_seed(2)
    attn = RelPositionMultiHeadAttention(32, 4, attention_dropout=0.0)
    x, pos, pad = attention_inputs()
    ref = attn(x, pos, pad)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn(x, pos, pad)
    out.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in attn.parameters())
    torch.testing.assert_close(out.float(), ref, atol=0.05, rtol=0.05)


def test_bf16_autocast_batched_heads_match_per_head() -> None:
    """The accelerator path (batched heads) under autocast, checked on CPU against the per-head path."""
    torch.manual_seed(3)
    attn = RelPositionMultiHeadAttention(32, 4, attention_dropout=0.0)
    x, pos, pad = attention_inputs()
    neg = torch.zeros(3, 1, 11).masked_fill_(pad[:, None, :], float("-inf"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = attn.linear_q(x)
        args = (q + attn.pos_bias_u, q + attn.pos_bias_v, attn.linear_k(x), attn.linear_pos(pos), attn.linear_v(x))
        batched, per_head = attn._attend_batched(*args, neg), attn._attend_per_head(*args, neg)
    assert torch.isfinite(batched.float()).all()
    torch.testing.assert_close(batched.float(), per_head.float(), atol=0.03, rtol=0.03)
