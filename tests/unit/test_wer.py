"""The one error count: summed per-utterance edits over summed reference lengths is jiwer's corpus WER / CER."""

from __future__ import annotations

import jiwer
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformer_prune.wer import error_rate, utterance_edits

WORDS = st.lists(st.sampled_from(["THE", "CAT", "SAT", "ON", "A", "MAT", "CAT'S"]), min_size=0, max_size=6)


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(WORDS.filter(bool), WORDS), min_size=1, max_size=5))
def test_summed_edits_are_jiwers_corpus_rates(pairs) -> None:
    refs, hyps = [" ".join(r) for r, _ in pairs], [" ".join(h) for _, h in pairs]
    for unit, rate in (("word", jiwer.wer), ("char", jiwer.cer)):
        errors, lengths = utterance_edits(refs, hyps, unit)
        assert len(errors) == len(lengths) == len(refs)
        assert error_rate(errors, lengths) == rate(refs, hyps)


def test_counts_per_utterance() -> None:
    errors, lengths = utterance_edits(["THE CAT SAT", "ON A MAT"], ["THE CAT", "ON THE MAT TOO"], "word")
    assert (errors, lengths) == ([1, 2], [3, 3])  # a deletion; a substitution and an insertion
    assert utterance_edits([], [], "char") == ([], []) and error_rate([], []) == 0.0
    with pytest.raises(ValueError, match="unit"):
        utterance_edits(["A"], ["A"], "phone")
