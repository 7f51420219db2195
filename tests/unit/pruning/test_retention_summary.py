"""retention_summary: how many learned retention probabilities are decided (near 0 or 1), per site kind."""

from __future__ import annotations

import pytest
import torch

from conformer_prune.checkpoint import instantiate_node
from conformer_prune.pruning.compact import encoder_of, retention_summary
from tests.helpers import STANDARD, net_config


def test_counts_units_near_zero_and_one_per_kind():
    net = instantiate_node(net_config())
    sites = list(encoder_of(net).sites())
    with torch.no_grad():
        for site in sites:
            n = site.module.num_units
            # a quarter near 0, a quarter undecided below 0.5, a quarter undecided above, a quarter near 1
            logits = torch.tensor([-5.0, -0.5, 0.5, 5.0]).repeat_interleave(n // 4)
            site.module.keep_logits.copy_(torch.cat([logits, torch.full((n - logits.numel(),), 5.0)]))
    summary = retention_summary(net)
    assert set(summary) == {site.kind for site in sites} | {"all"}
    total = sum(site.module.num_units for site in sites)
    assert summary["all"]["units"] == total
    expected_zero = sum(site.module.num_units // 4 for site in sites) / total
    assert summary["all"]["near_zero"] == pytest.approx(expected_zero)
    assert summary["all"]["pruned"] == pytest.approx(2 * expected_zero)  # threshold 0.5: -5 and -0.5
    assert summary["all"]["decided"] == pytest.approx(1.0 - 2 * expected_zero)
    for kind in summary:
        assert summary[kind]["decided"] == pytest.approx(summary[kind]["near_zero"] + summary[kind]["near_one"])


def test_empty_without_learned_retention():
    assert retention_summary(instantiate_node(net_config(site=STANDARD))) == {}


def test_rejects_a_margin_outside_the_open_half_interval():
    with pytest.raises(ValueError, match="margin"):
        retention_summary(instantiate_node(net_config()), margin=0.5)
