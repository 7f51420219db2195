"""Per-utterance error counts and the paired bootstrap."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest

from conformer_prune.evaluate import split_utterance_errors, utterance_errors
from conformer_prune.stats import paired_bootstrap, pooled_paired_bootstrap

REFS = ["THE CAT SAT", "ON THE MAT TODAY", "A", "HELLO THERE"]
HYPS = ["THE CAT SAT", "ON A MAT", "A B", ""]


def test_utterance_counts_sum_to_the_corpus_rates() -> None:
    counted = utterance_errors(REFS, HYPS)
    words = sum(counted["errors"]["words"]) / sum(counted["lengths"]["words"])
    chars = sum(counted["errors"]["chars"]) / sum(counted["lengths"]["chars"])
    assert words == pytest.approx(jiwer.wer(REFS, HYPS))
    assert chars == pytest.approx(jiwer.cer(REFS, HYPS))
    assert counted["errors"]["words"] == [0, 2, 1, 2]


def test_split_moves_the_lists_out() -> None:
    entry = {"utterances": 2, "ids": ["a", "b"], "lengths": {"words": [1, 2], "chars": [3, 4]}}
    entry["greedy"] = {"wer": 0.5, "errors": {"words": [0, 1], "chars": [0, 2]}}
    per_subset = {"dev": entry}
    moved = split_utterance_errors(per_subset)
    assert moved == {
        "dev": {
            "ids": ["a", "b"],
            "lengths": {"words": [1, 2], "chars": [3, 4]},
            "greedy": {"words": [0, 1], "chars": [0, 2]},
        }
    }
    assert per_subset == {"dev": {"utterances": 2, "greedy": {"wer": 0.5}}}


def test_bootstrap_separates_a_real_difference_and_ties_noise() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 60, size=300)
    base = rng.binomial(lengths, 0.2)
    worse = base + rng.binomial(lengths, 0.05)  # +5 points on every utterance
    same = rng.binomial(lengths, 0.2)  # another draw of the same error rate
    assert paired_bootstrap(base, worse, lengths).verdict() == "worse"
    assert paired_bootstrap(worse, base, lengths).verdict() == "better"
    result = paired_bootstrap(base, same, lengths)
    assert result.verdict() == "tie" and result.low < 0 < result.high
    assert result.diff == pytest.approx(same.sum() / lengths.sum() - base.sum() / lengths.sum())


def test_pooled_bootstrap_over_seeds_narrows_the_interval() -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(20, 60, size=200)
    pairs = [(rng.binomial(lengths, 0.2), rng.binomial(lengths, 0.22), lengths) for _ in range(3)]
    one = paired_bootstrap(*pairs[0])
    pooled = pooled_paired_bootstrap(pairs)
    assert pooled.high - pooled.low < one.high - one.low
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap([1, 2], [1], [3, 4])
