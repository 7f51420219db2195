"""SentencePiece tokenizer: blank id 0, round trips, cache, alphabet policy."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from conformer_prune.data.librispeech import read_subsets
from conformer_prune.data.tokenizer import Tokenizer, apply_alphabet_policy

TEXTS = [
    "THE CAT SAT ON THE MAT",
    "IT'S A FINE DAY TO GO OUT",
    "HELLO WORLD",
    "A QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "SHE SELLS SEA SHELLS BY THE SEA SHORE",
] * 8


def test_char_model_layout_and_round_trip(tmp_path: Path) -> None:
    tok = Tokenizer.train(TEXTS, tmp_path / "char.model", "char")
    assert tok.blank_id == 0 and tok.pieces[0] == "<blk>"
    assert tok.pieces[1] == "<unk>" and tok.unk_id == 1
    assert tok.word_boundary_piece == "\u2581" and "\u2581" in tok.pieces
    assert tok.vocab_size == 30  # blank, unk, word boundary, A-Z and the apostrophe (Z, J, Q... unseen but required)
    ids = tok.encode("IT'S A QUIZ")
    assert 0 not in ids and 1 not in ids
    assert tok.decode(ids) == "IT'S A QUIZ"
    assert tok.decode([0, *ids, 0, 0]) == "IT'S A QUIZ"  # blanks are ignored
    assert tok.spell("HELLO") == ["\u2581", "H", "E", "L", "L", "O"]
    assert tok.unknown_chars("héllo") == {"h", "é", "l", "o"}
    assert tok.encode("É")[-1] == tok.unk_id


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_subword_models_round_trip(tmp_path: Path, model_type: str) -> None:
    tok = Tokenizer.train(TEXTS, tmp_path / f"{model_type}.model", model_type, vocab_size=48)
    assert tok.pieces[0] == "<blk>" and tok.vocab_size <= 48
    for text in ("THE SEA SHELLS", "HELLO WORLD", "ZEBRA"):
        assert tok.decode(tok.encode(text)) == text
    pieces = tok.spell("SHELLS")
    assert pieces[0].startswith("\u2581") and "".join(pieces).lstrip("\u2581") == "SHELLS"


def test_bytes_file_and_pickle_round_trip(tmp_path: Path) -> None:
    tok = Tokenizer.train(TEXTS, tmp_path / "m.model", "char")
    again = Tokenizer.from_bytes(tok.model_bytes)
    assert Tokenizer(tmp_path / "m.model").pieces == again.pieces == tok.pieces
    assert pickle.loads(pickle.dumps(tok)).encode("HELLO") == tok.encode("HELLO")


def test_cache_is_keyed_by_texts_and_settings(tmp_path: Path, monkeypatch) -> None:
    first = Tokenizer.load_or_train(TEXTS, tmp_path, "unigram", 40)
    calls = []
    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda cls, *a, **k: calls.append(a) or first))
    assert Tokenizer.load_or_train(TEXTS, tmp_path, "unigram", 40).model_bytes == first.model_bytes
    assert calls == []  # served from the cache
    Tokenizer.load_or_train(TEXTS, tmp_path, "unigram", 41)
    Tokenizer.load_or_train([*TEXTS, "NEW TEXT"], tmp_path, "unigram", 40)
    assert len(calls) == 2


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_type"):
        Tokenizer.train(TEXTS, tmp_path / "x.model", "word")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab_size=10 is too small"):
        Tokenizer.train(TEXTS, tmp_path / "x.model", "bpe", vocab_size=10)
    with pytest.raises(ValueError, match="does not exist"):
        Tokenizer(tmp_path / "missing.model")


def test_out_of_alphabet_characters_follow_the_policy(tiny_librispeech: Path, tmp_path: Path) -> None:
    utts = read_subsets(tiny_librispeech, ["dev-clean"])
    bad = dataclasses.replace(utts[1], text="NAÏVE CAFÉ 42")
    mixed = [utts[0], bad, utts[2]]
    with pytest.raises(ValueError, match=r"84-121123\.trans\.txt: utterance 84-121123-0001 .*'24ÉÏ'.*oov_policy"):
        apply_alphabet_policy(mixed, "ABCDEFGHIJKLMNOPQRSTUVWXYZ'", "error")
    kept, chars = apply_alphabet_policy(mixed, "ABCDEFGHIJKLMNOPQRSTUVWXYZ'", "drop")
    assert [u.utt_id for u in kept] == [utts[0].utt_id, utts[2].utt_id]
    assert chars == {"Ï": 1, "É": 1, "4": 1, "2": 1}
    kept, _ = apply_alphabet_policy(mixed, "ABCDEFGHIJKLMNOPQRSTUVWXYZ'", "unk")
    assert len(kept) == 3
    tok = Tokenizer.train([u.text for u in kept], tmp_path / "t.model", "char")
    assert "É" not in tok.pieces  # characters outside the alphabet never enter the vocabulary
    assert tok.unk_id in tok.encode(bad.text)
