"""Word and character error counts: the one implementation the evaluation and the validation metrics share.

:func:`utterance_edits` aligns references and hypotheses with jiwer (``process_words`` /
``process_characters``) and counts, per utterance, the edits (substitutions + deletions + insertions) and the
reference length; a corpus error rate is ``Σ edits / Σ lengths`` (:func:`error_rate`), exactly jiwer's
``wer`` / ``cer`` of the whole set. :func:`conformer_prune.evaluate.evaluate_net` keeps the per-utterance
counts (``utterance_errors.json``, for paired comparisons) and divides their sums;
:class:`conformer_prune.tasks.metrics.CorpusErrorRate` sums them across DDP ranks first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jiwer

Unit = Literal["word", "char"]


def utterance_edits(
    references: Sequence[str], hypotheses: Sequence[str], unit: Unit = "word"
) -> tuple[list[int], list[int]]:
    """Per-utterance edit counts and reference lengths in words or characters, counted as jiwer counts them."""
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    if not references:
        return [], []
    output = (jiwer.process_words if unit == "word" else jiwer.process_characters)(list(references), list(hypotheses))
    errors = [
        sum(
            (c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else (c.ref_end_idx - c.ref_start_idx)
            for c in chunks
            if c.type != "equal"
        )
        for chunks in output.alignments
    ]
    return errors, [len(ref) for ref in output.references]


def error_rate(errors: Sequence[int] | int, lengths: Sequence[int] | int) -> float:
    """``Σ errors / Σ lengths`` (0 for no utterance; the edits themselves when no reference has a word, as jiwer)."""
    total_errors = errors if isinstance(errors, int) else sum(errors)
    total = lengths if isinstance(lengths, int) else sum(lengths)
    return total_errors / total if total else float(total_errors)
