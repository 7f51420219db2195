"""The LibriSpeech-layout reader on generated trees, and every bad-input defect of issue 3."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conformer_prune.data.librispeech import (
    LIBRISPEECH_SUBSETS,
    SUBSET_ALIASES,
    SkipReport,
    Utterance,
    expand_subsets,
    normalize_transcript,
    read_subsets,
)

TINY_SUBSETS = ["train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other"]


@pytest.fixture
def tree(tiny_librispeech: Path, tmp_path: Path) -> Path:
    """A private, mutable copy of the tiny tree."""
    return Path(shutil.copytree(tiny_librispeech, tmp_path / "LibriSpeech"))


def test_reads_every_subset_with_transcripts_and_headers(tiny_librispeech: Path) -> None:
    utts = read_subsets(tiny_librispeech, TINY_SUBSETS, on_error="raise")
    assert len(utts) == 21
    assert {u.subset for u in utts} == set(TINY_SUBSETS)
    first = utts[0]
    assert isinstance(first, Utterance)
    assert first.utt_id == "19-198-0000" and first.text == "HELLO WORLD"
    assert (first.speaker, first.chapter, first.sample_rate) == (19, 198, 16000)
    assert first.path == tiny_librispeech / "train-clean-100" / "19" / "198" / "19-198-0000.flac"
    assert first.num_samples == sf.info(str(first.path)).frames
    assert all(0.3 <= u.duration <= 1.0 for u in utts)
    assert [u.utt_id for u in utts[:3]] == ["19-198-0000", "19-198-0001", "19-198-0002"]


def test_subset_order_combinations_aliases_and_parent_root(tiny_librispeech: Path) -> None:
    both = read_subsets(tiny_librispeech.parent, ["test-clean", "dev-clean"])  # the parent of LibriSpeech/ works too
    assert [u.subset for u in both] == ["test-clean"] * 2 + ["dev-clean"] * 3
    assert [u.subset for u in read_subsets(tiny_librispeech, "dev-all")] == ["dev-clean"] * 3 + ["dev-other"] * 2
    assert expand_subsets(["train-960", "train-clean-100"]) == list(SUBSET_ALIASES["train-960"])
    assert len(LIBRISPEECH_SUBSETS) == 7


def test_tiny_tree_fails_loudly_when_speech_cannot_be_synthesised(tmp_path: Path, monkeypatch) -> None:
    import conftest  # tests/conftest.py: the fixture's writer (no silent fallback to other audio)

    def no_engine(*args, **kwargs) -> None:
        raise OSError("libespeak-ng.so.1: cannot open shared object file")

    monkeypatch.setattr("conformer_prune.data.corpus.synthesize_chapter", no_engine)
    with pytest.raises(conftest.TinyTreeError, match=r"libespeak-ng.*Fix: pip install espeakng-loader"):
        conftest.write_tiny_librispeech(tmp_path)
    assert not list(tmp_path.rglob("*.flac"))


def test_missing_root_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=f"{missing}.*does not exist.*data.root"):
        read_subsets(missing, ["dev-clean"])


def test_unknown_subset_lists_the_available_ones(tiny_librispeech: Path) -> None:
    with pytest.raises(ValueError, match=r"\['dev-cleen'\] not found.*available there: \['dev-clean', 'dev-other'"):
        read_subsets(tiny_librispeech, ["dev-cleen"])
    with pytest.raises(ValueError, match="train-clean-360.*prepare_librispeech"):
        read_subsets(tiny_librispeech, ["train-960"])


def _first_flac(tree: Path) -> Path:
    return tree / "dev-clean" / "84" / "121123" / "84-121123-0000.flac"


def _trans(tree: Path) -> Path:
    return tree / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"


def _garbage(tree: Path) -> Path:
    _first_flac(tree).write_bytes(b"fLaC not really" + bytes(range(256)) * 4)
    return _first_flac(tree)


def _empty(tree: Path) -> Path:
    # what libsndfile writes for a FLAC without samples: a 0-byte file
    sf.write(_first_flac(tree), np.zeros(0, dtype=np.int16), 16000, format="FLAC", subtype="PCM_16")
    return _first_flac(tree)


def _rate_8k(tree: Path) -> Path:
    sf.write(_first_flac(tree), np.zeros(4000, dtype=np.int16), 8000, format="FLAC", subtype="PCM_16")
    return _first_flac(tree)


def _stereo(tree: Path) -> Path:
    sf.write(_first_flac(tree), np.zeros((8000, 2), dtype=np.int16), 16000, format="FLAC", subtype="PCM_16")
    return _first_flac(tree)


def _no_transcript_line(tree: Path) -> Path:
    lines = _trans(tree).read_text().splitlines()
    _trans(tree).write_text("\n".join(lines[1:]) + "\n")
    return _first_flac(tree)


def _no_audio(tree: Path) -> Path:
    _first_flac(tree).unlink()
    return _trans(tree)


def _malformed_line(tree: Path) -> Path:
    with _trans(tree).open("a") as fh:
        fh.write("84-999-0007 WRONG CHAPTER\n")
    return _trans(tree)


DEFECTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "corrupt_flac": (_garbage, "unreadable_audio"),
    "empty_flac": (_empty, "empty_audio"),
    "wrong_sample_rate": (_rate_8k, "wrong_sample_rate"),
    "wrong_channels": (_stereo, "wrong_channels"),
    "utterance_without_transcript": (_no_transcript_line, "missing_transcript"),
    "transcript_without_audio": (_no_audio, "missing_audio"),
    "malformed_transcript_line": (_malformed_line, "bad_transcript_line"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_defect_is_skipped_counted_and_reported_once(tree: Path, defect: str, caplog) -> None:
    make, reason = DEFECTS[defect]
    make(tree)
    report = SkipReport()
    with caplog.at_level(logging.WARNING, logger="conformer_prune.data.librispeech"):
        utts = read_subsets(tree, ["dev-clean", "test-clean"], on_error="skip", report=report)
    assert report.as_dict() == {reason: 1}
    kept = {u.utt_id for u in utts}
    assert "84-121123-0001" in kept and len(kept) >= 4  # the rest of the data survives
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0].getMessage()


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_defect_raises_naming_the_file_and_the_fix(tree: Path, defect: str) -> None:
    make, _ = DEFECTS[defect]
    where = make(tree)
    with pytest.raises(ValueError, match="Fix:") as info:
        read_subsets(tree, ["dev-clean"], on_error="raise")
    assert str(where) in str(info.value)
    assert "data.on_error=skip" in str(info.value)


def test_too_long_utterances_follow_the_policy(tiny_librispeech: Path) -> None:
    report = SkipReport()
    all_utts = read_subsets(tiny_librispeech, ["train-clean-100"])
    longest = max(u.duration for u in all_utts)
    limit = sorted(u.duration for u in all_utts)[len(all_utts) // 2]
    kept = read_subsets(tiny_librispeech, ["train-clean-100"], max_duration=limit, report=report)
    assert all(u.duration <= limit for u in kept)
    assert report.counts["too_long"] == len(all_utts) - len(kept) > 0
    with pytest.raises(ValueError, match="longer than data.max_duration"):
        read_subsets(tiny_librispeech, ["train-clean-100"], max_duration=longest / 2, on_error="raise")


def test_several_defects_give_one_summary_line(tree: Path, caplog) -> None:
    _garbage(tree)
    _rate_8k_other = tree / "test-clean" / "121" / "121726" / "121-121726-0000.flac"
    sf.write(_rate_8k_other, np.zeros(4000, dtype=np.int16), 8000, format="FLAC", subtype="PCM_16")
    with caplog.at_level(logging.WARNING, logger="conformer_prune.data.librispeech"):
        read_subsets(tree, ["dev-clean", "test-clean"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "unreadable_audio: 1" in warnings[0] and "wrong_sample_rate: 1" in warnings[0]


def test_normalize_transcript() -> None:
    assert normalize_transcript("Well-known, isn't it? 'Quite' so!") == "WELL KNOWN ISN'T IT QUITE SO"
    assert normalize_transcript("  café 42  ") == "CAF"
