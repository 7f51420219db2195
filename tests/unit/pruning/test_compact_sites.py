"""Compaction equivalence: a compacted site/encoder computes exactly what the gated eval model computes."""

from __future__ import annotations

import functools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conformer_prune.dropout import AdaptiveDropout, HardConcreteGate
from conformer_prune.models.attention import RelPositionMultiHeadAttention, relative_positions
from conformer_prune.models.conformer import ConformerEncoder, ConvModule, FeedForward
from tests.helpers import closed_form_params, randomize_, set_keep, single_thread  # noqa: F401 - autouse fixture


@settings(max_examples=25, deadline=None)
@given(keep=st.lists(st.booleans(), min_size=6, max_size=6), seed=st.integers(0, 2**16))
def test_compacted_ffn_matches_gated_eval(keep: list[bool], seed: int) -> None:
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ffn = FeedForward(4, 6, 0.1, AdaptiveDropout).eval()
    set_keep(ffn.unit_dropout, keep, rng)
    x = torch.randn(2, 3, 4)
    expected = ffn(x)
    assert ffn.compact_() == sum(keep)
    torch.testing.assert_close(ffn(x), expected)
    assert ffn.linear1.weight.shape == (sum(keep), 4) and ffn.linear2.weight.shape == (4, sum(keep))


@settings(max_examples=25, deadline=None)
@given(
    keep=st.lists(st.booleans(), min_size=6, max_size=6),
    seed=st.integers(0, 2**16),
    position=st.sampled_from(["input", "output"]),
)
def test_compacted_conv_module_matches_gated_eval(keep: list[bool], seed: int, position: str) -> None:
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    conv = ConvModule(6, 3, 0.1, AdaptiveDropout, mask_position=position)
    randomize_(conv, rng)
    conv.eval()
    set_keep(conv.unit_dropout, keep, rng)
    x = torch.randn(2, 5, 6)
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    expected = conv(x, pad)
    assert conv.compact_() == sum(keep)
    assert not conv.training and not conv.batch_norm.training
    torch.testing.assert_close(conv(x, pad), expected)


@settings(max_examples=40, deadline=None)
@given(
    q_keep=st.lists(st.booleans(), min_size=8, max_size=8),
    v_keep=st.lists(st.booleans(), min_size=8, max_size=8),
    seed=st.integers(0, 2**16),
)
def test_compacted_attention_matches_gated_eval(q_keep: list[bool], v_keep: list[bool], seed: int) -> None:
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attn = RelPositionMultiHeadAttention(8, 2, 0.1, AdaptiveDropout, AdaptiveDropout)
    randomize_(attn, rng)
    attn.eval()
    set_keep(attn.query_dropout, q_keep, rng)
    set_keep(attn.value_dropout, v_keep, rng)
    x = torch.randn(2, 5, 8)
    pos = relative_positions(5, 8, x.device, x.dtype)
    pad = torch.tensor([[False] * 5, [False] * 4 + [True]])
    expected = attn(x, pos, pad)
    attn.compact_()
    torch.testing.assert_close(attn(x, pos, pad), expected, atol=1e-5, rtol=1e-5)
    live_heads = [any(v_keep[h * 4 : (h + 1) * 4]) for h in range(2)]
    assert attn.num_heads == sum(live_heads)
    assert sum(attn.v_dims) == sum(v_keep)
    assert sum(attn.qk_dims) == sum(k for i, k in enumerate(q_keep) if live_heads[i // 4])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), keep_frac=st.floats(0.0, 1.0), position=st.sampled_from(["input", "output"]))
def test_compacted_encoder_matches_gated_eval_and_closed_form(seed: int, keep_frac: float, position: str) -> None:
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    enc = ConformerEncoder(
        input_dim=20,
        d_model=8,
        num_layers=2,
        num_heads=2,
        d_ff=12,
        kernel_size=3,
        subsampling_channels=3,
        ffn_dropout=AdaptiveDropout,
        query_dropout=AdaptiveDropout,
        value_dropout=AdaptiveDropout,
        conv_dropout=AdaptiveDropout,
        conv_mask_position=position,
    )
    randomize_(enc, rng)
    enc.eval()
    for site in enc.sites():
        keep = (torch.rand(site.module.num_units, generator=rng) < keep_frac).tolist()
        set_keep(site.module, keep, rng)
    x, lens = torch.randn(2, 30, 20), torch.tensor([30, 21])
    expected, expected_lens = enc(x, lens)
    widths = enc.compact_()
    out, out_lens = enc(x, lens)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in enc.parameters()) == closed_form_params(8, widths, 3, 3, 20)
    # stock code rebuilds the compacted structure from its widths alone
    rebuilt = ConformerEncoder(
        input_dim=20,
        d_model=8,
        num_layers=2,
        num_heads=2,
        d_ff=12,
        kernel_size=3,
        subsampling_channels=3,
        layer_widths=widths,
    )
    rebuilt.load_state_dict(enc.state_dict(), strict=True)
    torch.testing.assert_close(rebuilt.eval()(x, lens)[0], expected, atol=1e-5, rtol=1e-5)


def test_dense_parameter_count_matches_closed_form() -> None:
    enc = ConformerEncoder(
        input_dim=20, d_model=8, num_layers=2, num_heads=2, d_ff=12, kernel_size=3, subsampling_channels=3
    )
    assert sum(p.numel() for p in enc.parameters()) == closed_form_params(8, enc.layer_widths(), 3, 3, 20)


def test_hard_concrete_sites_compact_exactly() -> None:
    torch.manual_seed(0)
    ffn = FeedForward(4, 8, 0.0, functools.partial(HardConcreteGate)).eval()
    with torch.no_grad():
        ffn.unit_dropout.log_alpha.copy_(torch.tensor([5.0, -5.0, 0.3, -0.2, 2.0, -9.0, 0.0, 1.0]))
    x = torch.randn(3, 4)
    expected = ffn(x)
    kept = ffn.compact_()
    assert kept == int(ffn.linear1.out_features)
    torch.testing.assert_close(ffn(x), expected)


def test_fully_pruned_sites_rebuild_and_compact() -> None:
    """A layer with no FFN units, no attention heads and no conv channels is legal and exact."""
    enc = ConformerEncoder(
        input_dim=20,
        d_model=8,
        num_layers=1,
        num_heads=2,
        d_ff=12,
        kernel_size=3,
        subsampling_channels=3,
        layer_widths=[{"ffn1": 0, "ffn2": 3, "qk_dims": [], "v_dims": [], "conv": 0}],
    ).eval()
    x, lens = torch.randn(2, 30, 20), torch.tensor([30, 20])
    expected = enc(x, lens)[0]
    assert enc.compact_() == [{"ffn1": 0, "ffn2": 3, "qk_dims": [], "v_dims": [], "conv": 0}]
    torch.testing.assert_close(enc(x, lens)[0], expected)
