"""retention_summary: how many learned retention probabilities are decided (near 0 or 1), per site kind."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import torch

from conformer_prune.checkpoint import instantiate_node
from conformer_prune.pruning.compact import encoder_of, retention_summary
from tests.helpers import STANDARD, net_config

# four classes of unit by their logit β, with σ(β) worked out by hand: 0.0067, 0.3775, 0.6225, 0.9933
LOGIT = {"zero": -5.0, "low": -0.5, "high": 0.5, "one": 5.0}
# which classes each question counts, at margin 0.1 and at margin 0.4 (σ(±0.5) lies inside (0.1, 0.9)
# but outside (0.4, 0.6)); the eval gate keeps σ(β) > 0.5
COUNTS = {
    0.1: {"near_zero": {"zero"}, "near_one": {"one"}, "pruned": {"zero", "low"}},
    0.4: {"near_zero": {"zero", "low"}, "near_one": {"high", "one"}, "pruned": {"zero", "low"}},
}


def _set_classes(net) -> dict[str, Counter]:
    """Give every site a different, known mix of the four classes; returns the class counts per kind."""
    classes = list(LOGIT)
    per_kind: dict[str, Counter] = defaultdict(Counter)
    with torch.no_grad():
        for index, site in enumerate(encoder_of(net).sites()):
            n = site.module.num_units
            # unit u of site i: class (u * (i + 1) + i) mod 4 -> unequal mixes across sites and kinds
            labels = [classes[(u * (index + 1) + index) % len(classes)] for u in range(n)]
            site.module.keep_logits.copy_(torch.tensor([LOGIT[c] for c in labels]))
            per_kind[site.kind].update(labels)
    per_kind["all"] = sum(per_kind.values(), Counter())
    return per_kind


@pytest.mark.parametrize("margin", sorted(COUNTS))
def test_fractions_equal_the_hand_counted_classes_per_kind(margin: float) -> None:
    net = instantiate_node(net_config())
    per_kind = _set_classes(net)
    summary = retention_summary(net, margin=margin)
    assert set(summary) == set(per_kind)
    for kind, counts in per_kind.items():
        units = sum(counts.values())
        expected = {key: sum(counts[c] for c in members) / units for key, members in COUNTS[margin].items()}
        expected["decided"] = expected["near_zero"] + expected["near_one"]
        assert summary[kind]["units"] == units, kind
        for key, value in expected.items():
            assert summary[kind][key] == pytest.approx(value), (kind, key)
    # at 0.4 every class is decided; at 0.1 the ±0.5 logits are not
    decided = [summary[kind]["decided"] for kind in summary]
    if margin == 0.4:
        assert decided == pytest.approx([1.0] * len(decided))
    else:
        assert all(0.0 < d < 1.0 for d in decided)


def test_empty_without_learned_retention():
    assert retention_summary(instantiate_node(net_config(site=STANDARD))) == {}


def test_rejects_a_margin_outside_the_open_half_interval():
    with pytest.raises(ValueError, match="margin"):
        retention_summary(instantiate_node(net_config()), margin=0.5)
