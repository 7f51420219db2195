"""Conformer encoder: shapes, lengths, relative positions, padding invariance, site inventory."""

from __future__ import annotations

import functools

import pytest
import torch

from conformer_prune.dropout import AdaptiveDropout, NoDropout, StandardDropout
from conformer_prune.models.attention import rel_shift, relative_positions
from conformer_prune.models.conformer import ConformerEncoder
from conformer_prune.models.subsampling import subsampled_lengths
from conformer_prune.sites import dense_layer_widths, kinds, site_kinds, total_width


def tiny_encoder(**kw) -> ConformerEncoder:
    args = dict(input_dim=20, d_model=16, num_layers=2, num_heads=2, d_ff=24, kernel_size=5, subsampling_channels=4)
    args.update(kw)
    return ConformerEncoder(**args)


def test_output_lengths_follow_the_subsampling_formula() -> None:
    enc = tiny_encoder().eval()
    lens = torch.tensor([40, 33, 17])
    out, out_lens = enc(torch.randn(3, 40, 20), lens)
    # two unpadded 3x3 stride-2 convs: T1 = (T-3)//2+1, T' = (T1-3)//2+1
    expected = [((t - 3) // 2 + 1 - 3) // 2 + 1 for t in (40, 33, 17)]
    assert out_lens.tolist() == expected == subsampled_lengths(lens).tolist()
    assert out.shape == (3, max(expected), 16)


def test_rel_shift_indexes_scores_by_offset() -> None:
    t = 5
    # column c of the raw score matrix holds offset T-1-c; fill with the offset itself, row-tagged
    raw = torch.stack([torch.arange(t - 1, -t, -1).float() + 100 * i for i in range(t)])  # (T, 2T-1)
    shifted = rel_shift(raw[None])[0]
    for i in range(t):
        for j in range(t):
            assert shifted[i, j] == 100 * i + (i - j)


def test_relative_positions_are_independent_of_length() -> None:
    short, long = (
        relative_positions(3, 8, torch.device("cpu"), torch.float32),
        relative_positions(6, 8, torch.device("cpu"), torch.float32),
    )
    torch.testing.assert_close(short, long[3:-3])  # offsets 2..-2 in both


@pytest.mark.parametrize("strategy", [NoDropout, AdaptiveDropout])
def test_padding_does_not_change_an_utterances_output(strategy) -> None:
    enc = tiny_encoder(**{spec.dropout_arg: strategy for spec in site_kinds()})
    enc.eval()
    x = torch.randn(1, 37, 20)
    alone, alone_lens = enc(x, torch.tensor([37]))
    padded = torch.cat([x, torch.randn(1, 23, 20)], dim=1)  # garbage padding
    batch = torch.cat([padded, torch.randn(1, 60, 20)])
    out, lens = enc(batch, torch.tensor([37, 60]))
    assert lens[0] == alone_lens[0]
    torch.testing.assert_close(out[0, : lens[0]], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "factory, cls",
    [
        (None, NoDropout),
        (functools.partial(StandardDropout, drop_prob=0.2), StandardDropout),
        (functools.partial(AdaptiveDropout, init_keep_prob=0.8), AdaptiveDropout),
    ],
)
def test_every_site_gets_the_configured_strategy_and_width(factory, cls) -> None:
    enc = ConformerEncoder(
        input_dim=20,
        d_model=16,
        num_layers=3,
        num_heads=4,
        d_ff=40,
        kernel_size=5,
        subsampling_channels=4,
        **{spec.dropout_arg: factory for spec in site_kinds()},
    )
    sites = enc.sites()
    assert len(sites) == 3 * len(kinds())  # num_layers x every registered site kind
    dense = dense_layer_widths({"d_model": 16, "num_heads": 4, "d_ff": 40})
    widths = {spec.kind: total_width(dense[spec.width_key]) for spec in site_kinds()}
    assert widths == {"ffn1": 40, "query": 16, "value": 16, "conv": 16, "ffn2": 40}  # the built-in sites
    for site in sites:
        assert type(site.module) is cls, site.name
        assert site.module.num_units == widths[site.kind], site.name
    # and nothing else in the model is a unit-dropout strategy
    from conformer_prune.dropout import UnitDropout

    assert sum(isinstance(m, UnitDropout) for m in enc.modules()) == len(sites)


def test_per_site_type_strategies_stay_separate() -> None:
    enc = tiny_encoder(ffn_dropout=AdaptiveDropout, query_dropout=None, value_dropout=StandardDropout)
    kinds = {s.kind: type(s.module) for s in enc.sites()}
    assert kinds == {
        "ffn1": AdaptiveDropout,
        "ffn2": AdaptiveDropout,
        "query": NoDropout,
        "value": StandardDropout,
        "conv": NoDropout,
    }


def test_invalid_sizes_name_the_key() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        tiny_encoder(num_heads=3)
    with pytest.raises(ValueError, match="kernel_size"):
        tiny_encoder(kernel_size=4)
    with pytest.raises(ValueError, match="layer_widths"):
        tiny_encoder(layer_widths=[{}])
