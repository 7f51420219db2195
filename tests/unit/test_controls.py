"""Overlap statistics and the random-units checkpoint of the importance controls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conformer_prune.checkpoint import build_net
from conformer_prune.controls import PERMUTED_FROM, chance_jaccard, jaccard, permute_keep_logits, rank_correlation
from tests.helpers import net_config, save_checkpoint, train_tokenizer


def test_jaccard_of_sets() -> None:
    assert jaccard({1, 2, 3}, {2, 3, 4}) == pytest.approx(0.5)
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, {2}) == 0.0


def test_chance_jaccard_is_the_mean_overlap_of_random_sets() -> None:
    rng = np.random.default_rng(0)
    population, size_a, size_b = 576, 300, 350
    draws = [
        jaccard(set(rng.choice(population, size_a, replace=False)), set(rng.choice(population, size_b, replace=False)))
        for _ in range(400)
    ]
    assert chance_jaccard(size_a, size_b, population) == pytest.approx(np.mean(draws), abs=0.01)
    assert chance_jaccard(576, 576, 576) == 1.0


def test_rank_correlation_is_spearmans() -> None:
    a = torch.tensor([0.1, 0.4, 0.2, 0.9])
    assert rank_correlation(a, a * 3 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 4.0])) == pytest.approx(
        0.8
    )


def test_permuted_checkpoint_keeps_each_sites_logits_but_not_their_units(tmp_path) -> None:
    """The random-units control: per site the same multiset of keep logits (so the same pruned count and eval
    scales), on other units; every other weight is the checkpoint's."""
    tokenizer = train_tokenizer(tmp_path)
    config = net_config(vocab_size=tokenizer.vocab_size)
    net = build_net({"net": config})
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for site in net.encoder.sites():
            site.module.keep_logits.copy_(torch.randn(site.module.keep_logits.shape, generator=generator))
    source = save_checkpoint(
        tmp_path / "run" / "last.ckpt", net, net_config(vocab_size=tokenizer.vocab_size), tokenizer
    )
    out = permute_keep_logits(source, tmp_path / "draw" / "last.ckpt", seed=1)
    before = torch.load(source, weights_only=False)["state_dict"]
    after = torch.load(out, weights_only=False)["state_dict"]
    logits = {k for k in before if k.endswith("keep_logits")}
    assert logits and before.keys() == after.keys()
    for key in before:
        if key in logits:
            assert torch.equal(before[key].sort().values, after[key].sort().values), key
            assert not torch.equal(before[key], after[key]), key
        else:
            assert torch.equal(before[key], after[key]), key
    assert json.loads((out.parent / PERMUTED_FROM).read_text()) == {"checkpoint": str(source.resolve()), "seed": 1}
    with pytest.raises(ValueError, match="exists"):
        permute_keep_logits(source, out, seed=2)  # nothing is overwritten
