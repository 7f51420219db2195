"""Overlap statistics of the importance controls."""

from __future__ import annotations

import numpy as np
import pytest

from conformer_prune.controls import chance_jaccard, jaccard


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
