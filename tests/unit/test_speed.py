"""The benchmark measurement helpers: MACs per module group add up and follow the closed form; the
profile times every group of every net (structure only: speed is measured in benchmarks, not tests)."""

from __future__ import annotations

import itertools

import torch

from conformer_prune.models import ConformerEncoder
from conformer_prune.models.ctc import CTCModel
from conformer_prune.models.subsampling import subsampled_lengths
from conformer_prune.speed import GROUPS, group_macs, interleaved_times, module_profile, profile_table


def tiny_ctc() -> CTCModel:
    torch.manual_seed(0)
    encoder = ConformerEncoder(
        input_dim=20, d_model=16, num_layers=2, num_heads=2, d_ff=24, kernel_size=5, subsampling_channels=4
    )
    return CTCModel(encoder, vocab_size=10).eval()


def test_group_macs_add_up_and_the_ffn_share_is_the_closed_form() -> None:
    net = tiny_ctc()
    features, lens = torch.randn(2, 60, 20), torch.tensor([60, 41])
    macs = group_macs(net, features, lens)
    assert set(macs) == {*GROUPS, "total"}
    assert sum(macs[g] for g in GROUPS) == macs["total"]
    frames = int(subsampled_lengths(torch.tensor(60)))
    # 2 layers x 2 FFNs x (D->U and U->D) x B x T' frames
    assert macs["ffn"] == 2 * 2 * 2 * 2 * frames * 16 * 24
    assert macs["other"] == 2 * frames * 16 * 10  # the CTC head (LayerNorms and residuals are not MACs)


def test_profile_times_every_group_of_every_net_and_interleaves() -> None:
    nets = {"a": tiny_ctc(), "b": tiny_ctc()}
    features, lens = torch.randn(1, 40, 20), torch.tensor([40])
    profile = module_profile(nets, features, lens, runs=3, warmup=1)
    for times in profile.values():
        assert set(times) == {*GROUPS, "total"} and all(times[g] > 0 for g in GROUPS[:-1])
        assert sum(times[g] for g in GROUPS[:-1]) < times["total"]
    table = profile_table(profile, {n: group_macs(net, features, lens) for n, net in nets.items()}, base="a")
    assert table.splitlines()[0].split()[:2] == ["group", "a"] and len(table.splitlines()) == len(GROUPS) + 2
    order = []
    ticks = itertools.count()
    times = interleaved_times(
        {"x": lambda: order.append("x"), "y": lambda: order.append("y")}, 2, 1, lambda: next(ticks)
    )
    assert order == ["x", "y"] * 3 and times == {"x": [1, 1], "y": [1, 1]}
