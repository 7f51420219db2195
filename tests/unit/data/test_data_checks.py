"""Data errors caught early and named (the data part of issue #18) and the data record (issue #20).

Each case: the message names the file or key and the fix, the run is not aborted where the policy
says skip, and what is skipped is counted.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from conformer_prune.data.datamodule import LibriSpeechDataModule
from conformer_prune.data.librispeech import DataError, SkipReport, read_subsets
from conformer_prune.data.record import (
    RecordedDataMissingError,
    check_recorded,
    pinned_config,
    record_from_checkpoint,
    same_corpus,
)

TRAIN_CHAPTER = Path("train-clean-100") / "19" / "198"
TEST_CHAPTER = Path("test-other") / "1688" / "142285"


@pytest.fixture
def tree(tiny_librispeech: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny tree (its ``LibriSpeech`` directory)."""
    return Path(shutil.copytree(tiny_librispeech, tmp_path / "data" / "LibriSpeech"))


def make_dm(tree: Path, tmp_path: Path, **overrides: Any) -> LibriSpeechDataModule:
    settings: dict[str, Any] = {
        "root": str(tree.parent),
        "train_subsets": ["train-clean-100"],
        "dev_subsets": ["dev-clean"],
        "test_subsets": ["test-clean", "test-other"],
        "max_batch_seconds": 2.5,
        "cache_dir": str(tmp_path / "cache"),
        "spec_augment": None,
    }
    return LibriSpeechDataModule(**{**settings, **overrides})


def truncate(flac: Path) -> None:
    """Keep the header (sf.info still reads it) and cut the audio: decoding fails."""
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])
    assert sf.info(str(flac)).frames > 0
    with pytest.raises(RuntimeError):
        sf.read(str(flac))


# -- truncated FLAC -----------------------------------------------------------------------------------
def test_truncated_flac_in_the_training_set_is_skipped_and_counted(tree: Path, tmp_path: Path, caplog) -> None:
    bad = tree / TRAIN_CHAPTER / "19-198-0001.flac"
    truncate(bad)
    dm = make_dm(tree, tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")  # the CMVN fit decodes every training file: it must honour on_error=skip
    assert any(str(bad) in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    ids = [i for batch in dm.train_dataloader() for i in batch["ids"]]
    assert len(ids) == 11 and "19-198-0001" not in ids
    assert "19-198-0001" not in " ".join(dm.train_texts()) and len(dm.train_texts()) == 11
    description = dm.corpus_description()
    assert description["skipped"] == {"undecodable_audio": 1}
    assert description["subsets"]["train-clean-100"]["utterances"] == 11

    with pytest.raises(DataError, match=r"19-198-0001\.flac: cannot decode the audio.*on_error=skip"):
        make_dm(tree, tmp_path / "r", on_error="raise").setup("fit")


def test_truncated_flac_in_an_eval_subset_is_skipped_and_counted(tree: Path, tmp_path: Path) -> None:
    truncate(tree / TEST_CHAPTER / "1688-142285-0000.flac")
    dm = make_dm(tree, tmp_path)
    dm.check("evaluate", eval_subsets=["test-other"])  # the header is intact: nothing to say yet
    dm.setup("fit")
    ids = [i for batch in dm.eval_dataloader("test-other") for i in batch["ids"]]
    assert ids == ["1688-142285-0001"]
    description = dm.corpus_description()
    assert description["skipped"] == {"undecodable_audio": 1} and description["evaluated"] == ["test-other"]
    assert description["subsets"]["test-other"]["undecodable"] == 1


# -- not FLAC, lowercase ----------------------------------------------------------------------------
def test_a_wav_is_reported_as_not_flac(tree: Path) -> None:
    chapter = tree / TRAIN_CHAPTER
    flac = chapter / "19-198-0002.flac"
    audio, rate = sf.read(str(flac))
    flac.unlink()
    sf.write(str(chapter / "19-198-0002.wav"), audio, rate)
    sf.write(str(chapter / "19-198-0009.wav"), audio, rate)  # and one without a transcript line
    report = SkipReport()
    utts = read_subsets(tree, ["train-clean-100"], report=report)
    assert len(utts) == 11 and report.as_dict() == {"not_flac": 2}
    assert report.examples["not_flac"][0].endswith("19-198-0002.wav")
    with pytest.raises(DataError, match=r"19-198-0002\.wav: \.wav audio, but the reader takes FLAC.*ffmpeg"):
        read_subsets(tree, ["train-clean-100"], on_error="raise")


def test_lowercase_transcripts_get_uppercase_advice(tree: Path, tmp_path: Path) -> None:
    trans = tree / TRAIN_CHAPTER / "19-198.trans.txt"
    trans.write_text("".join(f"{line.split(' ', 1)[0]} {line.split(' ', 1)[1].lower()}\n" for line in
                             trans.read_text().splitlines()))  # fmt: skip
    with pytest.raises(DataError, match=r"19-198\.trans\.txt: utterance 19-198-0000 has a lowercase.*uppercase"):
        make_dm(tree, tmp_path).setup("fit")
    trans.write_text("19-198-0000 HELLO WORLD 2\n19-198-0001 GOOD MORNING\n19-198-0002 OPEN THE DOOR\n")
    with pytest.raises(DataError, match=r"outside the tokenizer alphabet: '2'.*extend data.tokenizer.alphabet"):
        make_dm(tree, tmp_path).setup("fit")


# -- check(): before anything is trained or written ---------------------------------------------------
def test_check_names_missing_and_emptied_subsets_by_key(tree: Path, tmp_path: Path) -> None:
    make_dm(tree, tmp_path).check("fit")
    with pytest.raises(DataError, match=r"data.train_subsets: \['train-clean-360'\] not found.*available there"):
        make_dm(tree, tmp_path, train_subsets=["train-clean-360"]).check("fit")
    with pytest.raises(DataError, match=r"^eval_subsets: \['test-nope'\] not found"):
        make_dm(tree, tmp_path).check("fit", eval_subsets=["test-nope"], eval_key="eval_subsets")
    for flac in (tree / TEST_CHAPTER).glob("*.flac"):
        flac.write_bytes(b"")  # every test-other file empty: the subset is emptied by the skips
    with pytest.raises(DataError, match=r"data.test_subsets: .*test-other has no usable utterance.*empty_audio: 2"):
        make_dm(tree, tmp_path).check("fit")
    make_dm(tree, tmp_path, test_subsets=["test-clean"]).check("evaluate", eval_subsets=["dev-clean"])
    with pytest.raises(DataError, match="data root .* does not exist"):
        make_dm(tmp_path / "nowhere" / "LibriSpeech", tmp_path).check("fit")
    with pytest.raises(DataError, match=r"data.tokenizer.oov_policy must be one of \['error', 'unk', 'drop'\]"):
        make_dm(tree, tmp_path, tokenizer={"oov_policy": "ignore"})


def test_check_of_an_embedded_corpus_not_made_yet(tmp_path: Path, monkeypatch) -> None:
    corpus = {"train_minutes": 0.3, "eval_minutes": 0.1, "train_speakers": 2, "eval_speakers": 1, "engines": "auto"}
    dm = LibriSpeechDataModule(root=str(tmp_path / "embedded"), corpus=corpus)
    dm.check("fit")  # it can be generated: nothing to say, nothing made
    assert not (tmp_path / "embedded").exists()
    with pytest.raises(DataError, match=r"data.train_subsets: \['train-clean-360'\] are not subsets of the embedded"):
        LibriSpeechDataModule(root=str(tmp_path / "e"), corpus=corpus, train_subsets=["train-clean-360"]).check()
    with pytest.raises(DataError, match="no embedded corpus with the settings of data.corpus.*make_corpus.py"):
        dm.check("evaluate", generate=False)
    monkeypatch.setattr("conformer_prune.data.corpus.engines.shutil.which", lambda name: None)
    named = LibriSpeechDataModule(root=str(tmp_path / "e"), corpus={**corpus, "engines": ["espeak", "flite"]})
    with pytest.raises(ValueError, match="flite is not on PATH: apt-get install flite"):
        named.check("fit")


# -- the record -----------------------------------------------------------------------------------------
def test_the_record_names_the_data_with_absolute_paths(tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tree.parent.parent)
    dm = make_dm(tree, tmp_path, root="data", cache_dir="cache")  # relative to the current directory
    dm.setup("fit")
    record = dm.data_record()
    assert record["root"] == str(tree.parent) and Path(record["root"]).is_absolute()
    assert record["datamodule"]["root"] == str(tree.parent)
    assert record["datamodule"]["cache_dir"] == str(tree.parent.parent / "cache")
    assert record["synthetic"] is False and record["corpus_id"] is None
    assert dm.state_dict()["data"] == record == dm.corpus_description()["record"]
    assert record_from_checkpoint({"LibriSpeechDataModule": dm.state_dict()}) == record
    assert record_from_checkpoint({"state_dict": {}}) is None
    assert json.loads(json.dumps(record)) == record

    pinned = pinned_config(record)
    assert pinned["root"] == str(tree.parent) and pinned["corpus"] is None
    assert check_recorded(record) == tree.parent
    shutil.move(tree.parent, tmp_path / "moved")
    with pytest.raises(RecordedDataMissingError, match=r"trained and tested on, .*/data, is gone.*\+data.root="):
        check_recorded(record)


def test_a_recorded_corpus_that_is_gone_says_how_to_make_it_again(tmp_path: Path) -> None:
    settings = {"train_minutes": 0.3, "eval_minutes": 0.1, "engines": "auto", "seed": 0, "sentences": None}
    record = {
        "root": str(tmp_path / "embedded" / "abc"),
        "corpus_id": "abc",
        "synthetic": True,
        "engines": {"espeak": "1.52.0"},
        "settings": settings,
        "generator_version": 1,
        "datamodule": {"root": str(tmp_path / "embedded"), "corpus": settings},
    }
    with pytest.raises(
        RecordedDataMissingError,
        match=r"embedded corpus abc at .*/embedded/abc, is gone\. Fix: regenerate it with `python "
        r"scripts/make_corpus.py root=.*/embedded/abc train_minutes=0.3 eval_minutes=0.1 engines=\[espeak\] seed=0",
    ):
        check_recorded(record)
    regenerated = {"corpus_id": "def", "generator_version": 1, "engines": {"espeak": "1.52.0"},
                   "settings": {**settings, "engines": ["espeak"]}}  # fmt: skip
    assert same_corpus(regenerated, record)  # the same content, the engines named instead of auto
    assert not same_corpus({**regenerated, "engines": {"espeak": "1.40"}}, record)
    assert not same_corpus({**regenerated, "settings": {**settings, "seed": 1}}, record)
    np.testing.assert_equal(pinned_config(record)["root"], record["root"])
