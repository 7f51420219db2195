"""Evaluation: WER/CER per subset (:mod:`conformer_prune.wer`) of a network in memory, a checkpoint or an export.

The same :func:`evaluate_net` runs at the end of training and in ``scripts/evaluate.py``, so both
give the same numbers for the same model and subset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from conformer_prune.decoding.base import Decoder
from conformer_prune.inference import transcribe_features
from conformer_prune.wer import error_rate, utterance_edits

log = logging.getLogger(__name__)


UTTERANCE_ERRORS_FILE = "utterance_errors.json"
"""Per-utterance edit counts of an evaluation, beside its ``results.json`` (for paired comparisons)."""


def utterance_errors(references: list[str], hypotheses: list[str]) -> dict[str, dict[str, list[int]]]:
    """Per-utterance edit counts and reference lengths, in words and in characters (:mod:`conformer_prune.wer`):
    summed over utterances they give the corpus WER and CER."""
    word_errors, words = utterance_edits(references, hypotheses, "word")
    char_errors, chars = utterance_edits(references, hypotheses, "char")
    return {"errors": {"words": word_errors, "chars": char_errors}, "lengths": {"words": words, "chars": chars}}


def split_utterance_errors(per_subset: dict[str, dict]) -> dict[str, dict]:
    """Move the per-utterance lists out of :func:`evaluate_net`'s result (in place) and return them:
    subset → ``{"ids", "lengths": {"words", "chars"}, "<decoder>": {"words", "chars"}}``."""
    moved: dict[str, dict] = {}
    for subset, entry in per_subset.items():
        if "ids" not in entry:
            continue
        item = {"ids": entry.pop("ids"), "lengths": entry.pop("lengths")}
        for name, value in entry.items():
            if isinstance(value, dict) and "errors" in value:
                item[name] = value.pop("errors")
        moved[subset] = item
    return moved


@torch.no_grad()
def evaluate_net(
    net: nn.Module,
    dataloaders: Mapping[str, Iterable[dict]],
    decoders: Mapping[str, Decoder],
    max_batches: int | None = None,
    keep_hypotheses: bool = False,
    *,
    frames_per_second: float,
) -> dict[str, dict]:
    """Decode every subset with every decoder.

    Args:
        net: ``CTCModel`` or ``TransducerModel`` (put in eval mode here); batches are moved to its device.
        dataloaders: subset name → batches (dicts with ``features``, ``feature_lens``, ``texts``, ``ids``).
        decoders: decoder name → decoder (see :func:`~conformer_prune.inference.transcribe_features`).
        max_batches: stop each subset after this many batches (``None``: all).
        keep_hypotheses: also return per-utterance ``(id, reference, hypothesis)`` per decoder.
        frames_per_second: the features' frame rate (``FeatureExtractor.frames_per_second``), for the audio
            seconds and the real-time factor.

    Returns:
        subset → ``{"utterances", "words", "audio_seconds", "<decoder>": {"wer", "cer", "rtf", "errors"}, ...,
        "ids", "lengths"}``: ``errors`` and ``lengths`` are per-utterance word and character counts
        (:func:`utterance_errors`; :func:`split_utterance_errors` moves them out).
    """
    net.eval()
    device = next(net.parameters()).device  # batches come from the loaders on the CPU
    results: dict[str, dict] = {}
    for subset, loader in dataloaders.items():
        refs: list[str] = []
        ids: list[str] = []
        hyps: dict[str, list[str]] = {name: [] for name in decoders}
        seconds: dict[str, float] = dict.fromkeys(decoders, 0.0)
        audio_seconds = 0.0
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            refs.extend(batch["texts"])
            ids.extend(batch["ids"])
            audio_seconds += float(batch["feature_lens"].sum()) / frames_per_second
            features, feature_lens = batch["features"].to(device), batch["feature_lens"].to(device)
            for name, decoder in decoders.items():
                start = time.perf_counter()
                hyps[name].extend(transcribe_features(net, features, feature_lens, decoder))
                seconds[name] += time.perf_counter() - start
        entry: dict = {
            "utterances": len(refs),
            "words": sum(len(r.split()) for r in refs),
            "audio_seconds": round(audio_seconds, 2),
            "ids": ids,
        }
        for name in decoders:
            counted = utterance_errors(refs, hyps[name])
            entry["lengths"] = counted["lengths"]
            errors, lengths = counted["errors"], counted["lengths"]
            entry[name] = {
                "wer": error_rate(errors["words"], lengths["words"]),
                "cer": error_rate(errors["chars"], lengths["chars"]),
                "rtf": seconds[name] / audio_seconds if audio_seconds else 0.0,
                "errors": counted["errors"],
            }
            if keep_hypotheses:
                entry[name]["hypotheses"] = [
                    {"id": u, "ref": r, "hyp": h} for u, r, h in zip(ids, refs, hyps[name], strict=True)
                ]
        results[subset] = entry
        log.info(
            "%s: %d utts | %s",
            subset,
            len(refs),
            " | ".join(f"{n} WER {entry[n]['wer']:.3f} CER {entry[n]['cer']:.3f}" for n in decoders),
        )
    return results


def flatten_results(per_subset: dict[str, dict], default: str = "default", greedy: str = "greedy") -> dict:
    """``results.json`` layout: ``wer``/``cer`` (default decoder) and ``wer_greedy``/``cer_greedy`` per subset."""
    out: dict[str, dict] = {"wer": {}, "cer": {}, "wer_greedy": {}, "cer_greedy": {}, "rtf": {}}
    for subset, entry in per_subset.items():
        best = entry.get(default, entry.get(greedy))
        out["wer"][subset], out["cer"][subset] = best["wer"], best["cer"]
        out["rtf"][subset] = best["rtf"]
        if greedy in entry:
            out["wer_greedy"][subset], out["cer_greedy"][subset] = entry[greedy]["wer"], entry[greedy]["cer"]
    return out
