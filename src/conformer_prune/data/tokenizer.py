"""SentencePiece tokenizer whose id 0 is the CTC / RNN-T blank.

The model is trained on the training transcripts (characters, unigram or BPE), cached under a hash
of (transcripts, settings), and travels as bytes (``model_bytes``) with every checkpoint and export,
so decoding never depends on a path outside the run.

Ids: ``0`` = ``<blk>`` (blank, also the padding value of token tensors), ``1`` = ``<unk>``, then
the pieces. ``V`` = ``vocab_size`` includes both.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import sentencepiece as spm

from conformer_prune.data.librispeech import DataError, Utterance

log = logging.getLogger(__name__)

BLANK_PIECE = "<blk>"
UNK_PIECE = "<unk>"
WORD_BOUNDARY = "\u2581"  # "▁"
DEFAULT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"

ModelType = Literal["char", "unigram", "bpe"]
OovPolicy = Literal["error", "unk", "drop"]
MODEL_TYPES: tuple[str, ...] = get_args(ModelType)
OOV_POLICIES: tuple[str, ...] = get_args(OovPolicy)


@dataclass(frozen=True)
class TokenizerSettings:
    """``data.tokenizer``, and the one copy of its defaults.

    Args:
        model_type: ``char`` (blank + unk + word boundary + the alphabet), ``unigram`` or ``bpe``.
        vocab_size: the SentencePiece vocabulary of ``unigram`` / ``bpe`` (``char`` ignores it).
        alphabet: the characters transcripts may use.
        oov_policy: transcripts with other characters: ``error`` | ``unk`` | ``drop``.
    """

    model_type: ModelType = "char"
    vocab_size: int = 256
    alphabet: str = DEFAULT_ALPHABET
    oov_policy: OovPolicy = "error"


class Tokenizer:
    """A trained SentencePiece model with the blank at id 0.

    Args:
        model_path: a ``.model`` file written by :meth:`train`.
    """

    blank_id: int = 0
    unk_id: int = 1

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"tokenizer model {str(path)!r} does not exist: train one with Tokenizer.train(...)")
        self._init_from_bytes(path.read_bytes())

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> Tokenizer:
        """Load from the serialised model (``model_bytes`` of another tokenizer)."""
        self = cls.__new__(cls)
        self._init_from_bytes(bytes(model_bytes))
        return self

    def _init_from_bytes(self, model_bytes: bytes) -> None:
        self._bytes = model_bytes
        self._sp = spm.SentencePieceProcessor(model_proto=model_bytes)
        if self._sp.id_to_piece(0) != BLANK_PIECE or self._sp.unk_id() != self.unk_id:
            raise ValueError(
                f"this SentencePiece model has {self._sp.id_to_piece(0)!r} at id 0 and unk at id {self._sp.unk_id()}; "
                f"expected {BLANK_PIECE!r} at 0 and <unk> at 1. Fix: retrain it with Tokenizer.train"
            )
        self._pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        chars = {c for p in self._pieces[2:] for c in p.replace(WORD_BOUNDARY, " ")}
        self._alphabet = frozenset(chars | {" "})

    # -- pickling (DataLoader workers, checkpoints) ------------------------------------------------
    def __getstate__(self) -> dict:
        return {"model_bytes": self._bytes}

    def __setstate__(self, state: dict) -> None:
        self._init_from_bytes(state["model_bytes"])

    # -- training --------------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        model_path: str | Path,
        model_type: ModelType = TokenizerSettings.model_type,
        vocab_size: int = TokenizerSettings.vocab_size,
        *,
        alphabet: str = TokenizerSettings.alphabet,
    ) -> Tokenizer:
        """Train on ``texts`` and write the model to ``model_path``.

        Args:
            texts: transcripts, one per utterance.
            model_path: where the ``.model`` file goes (its directory is created).
            model_type: ``"char"`` (``vocab_size`` is then ignored: blank, unk, ``▁`` and the
                characters), ``"unigram"`` or ``"bpe"``.
            vocab_size: target size including blank and unk (a smaller vocabulary is accepted
                when the texts cannot fill it).
            alphabet: the characters of the vocabulary: always in it, whether the texts hold them or
                not; other characters are removed from the texts before training.
        """
        if model_type not in ("char", "unigram", "bpe"):
            raise ValueError(f"data.tokenizer.model_type must be char, unigram or bpe, got {model_type!r}")
        allowed = set(alphabet) | {" "}
        # Characters outside the alphabet never enter the vocabulary (they encode as <unk>).
        texts = ["".join(c for c in t if c in allowed) for t in texts]
        texts = [t for t in texts if t.strip()]
        if not texts:
            raise ValueError("cannot train a tokenizer on no text: the training subsets have no transcripts")
        min_size = len(set(alphabet)) + 3
        if model_type != "char" and vocab_size < min_size:
            raise ValueError(
                f"data.tokenizer.vocab_size={vocab_size} is too small for {model_type}: it needs at least {min_size} "
                "(blank, unk, word boundary and every alphabet character)"
            )
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts),
            model_writer=buffer,
            model_type=model_type,
            vocab_size=vocab_size if model_type != "char" else 4096,
            hard_vocab_limit=False,
            pad_id=0,
            pad_piece=BLANK_PIECE,
            unk_id=1,
            unk_piece=UNK_PIECE,
            bos_id=-1,
            eos_id=-1,
            character_coverage=1.0,
            required_chars="".join(sorted(set(alphabet) - {" "})),
            normalization_rule_name="identity",
            input_sentence_size=0,
            shuffle_input_sentence=False,
            num_threads=1,
            minloglevel=2,
        )
        path = Path(model_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # several DDP ranks may train at once
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        tokenizer = cls.from_bytes(buffer.getvalue())
        log.info(
            "trained a %s tokenizer (%d ids) on %d transcripts -> %s",
            model_type,
            tokenizer.vocab_size,
            len(texts),
            path,
        )
        return tokenizer

    @classmethod
    def load_or_train(
        cls,
        texts: Sequence[str],
        cache_dir: str | Path,
        model_type: ModelType = TokenizerSettings.model_type,
        vocab_size: int = TokenizerSettings.vocab_size,
        *,
        alphabet: str = TokenizerSettings.alphabet,
    ) -> Tokenizer:
        """Load the cached model for (``texts``, settings) from ``cache_dir``, or train and cache it."""
        digest = hashlib.sha256()
        settings = {
            "model_type": model_type,
            "vocab_size": vocab_size if model_type != "char" else None,
            "alphabet": "".join(sorted(set(alphabet))),
            "sentencepiece": spm.__version__,
        }
        digest.update(json.dumps(settings, sort_keys=True).encode())
        for text in texts:
            digest.update(text.encode())
            digest.update(b"\n")
        path = Path(cache_dir) / f"tokenizer-{model_type}-{digest.hexdigest()[:16]}.model"
        if path.is_file():
            log.info("tokenizer: using cached %s", path)
            return cls(path)
        return cls.train(texts, path, model_type, vocab_size, alphabet=alphabet)

    # -- properties ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids ``V``, blank and unk included."""
        return len(self._pieces)

    @property
    def pieces(self) -> list[str]:
        """Piece of every id (``pieces[0] == "<blk>"``)."""
        return list(self._pieces)

    @property
    def model_bytes(self) -> bytes:
        """The serialised SentencePiece model (store it with runs; :meth:`from_bytes` loads it)."""
        return self._bytes

    @property
    def word_boundary_piece(self) -> str:
        """The piece that starts a word (``"▁"``)."""
        return WORD_BOUNDARY

    @property
    def alphabet(self) -> frozenset[str]:
        """Characters the pieces can spell (space included)."""
        return self._alphabet

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; characters outside :attr:`alphabet` become ``unk_id``."""
        return list(self._sp.encode(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; blanks (id 0) are ignored."""
        return self._sp.decode([int(i) for i in ids if int(i) != self.blank_id])

    def spell(self, word: str) -> list[str]:
        """Pieces of one word (as the model segments it), e.g. for a decoding lexicon."""
        return list(self._sp.encode(word.strip(), out_type=str))

    def unknown_chars(self, text: str) -> set[str]:
        """Characters of ``text`` that the vocabulary cannot spell."""
        return set(text) - self._alphabet


def planned_vocab_size(model_type: ModelType, vocab_size: int, alphabet: str = DEFAULT_ALPHABET) -> int:
    """The number of ids ``V`` a tokenizer trained with these settings has (blank and unk included).

    ``char``: blank, unk, the word boundary and the alphabet's characters; ``unigram`` / ``bpe``:
    ``vocab_size`` (an upper bound when the training texts cannot fill it, see :meth:`Tokenizer.train`).
    """
    return len(set(alphabet) - {" "}) + 3 if model_type == "char" else int(vocab_size)


def out_of_alphabet(text: str, alphabet: str | frozenset[str]) -> set[str]:
    """Characters of ``text`` outside ``alphabet`` (spaces always allowed)."""
    return set(text) - set(alphabet) - {" "}


def _lowercase(bad: set[str], alphabet: str | frozenset[str]) -> bool:
    """Whether the offending characters are lowercase letters whose capitals the alphabet holds."""
    return any(c.islower() for c in bad) and all(c.upper() in alphabet for c in bad if c.islower())


def apply_alphabet_policy(
    utterances: Sequence[Utterance],
    alphabet: str | frozenset[str],
    policy: OovPolicy = "error",
    *,
    what: str = "utterances",
) -> tuple[list[Utterance], Counter]:
    """Handle transcripts with characters outside ``alphabet``.

    Args:
        utterances: as read by :func:`~conformer_prune.data.librispeech.read_subsets`.
        alphabet: allowed characters.
        policy: ``"error"`` raises naming the first such utterance; ``"unk"`` keeps them (the
            characters encode as ``<unk>``); ``"drop"`` removes them.
        what: names the set in log messages.

    Returns:
        The utterances kept, and a count of each offending character.
    """
    if policy not in OOV_POLICIES:
        raise DataError(f"data.tokenizer.oov_policy must be error, unk or drop, got {policy!r}")
    kept: list[Utterance] = []
    chars: Counter = Counter()
    affected = 0
    for utt in utterances:
        bad = out_of_alphabet(utt.text, alphabet)
        if not bad:
            kept.append(utt)
            continue
        if policy == "error":
            trans = utt.path.parent / f"{utt.speaker}-{utt.chapter}.trans.txt"
            if _lowercase(bad, alphabet):
                raise DataError(
                    f"{trans}: utterance {utt.utt_id} has a lowercase transcript ({utt.text[:40]!r}); LibriSpeech "
                    "transcripts are uppercase. Fix: uppercase the .trans.txt files of the tree (e.g. "
                    "`sed -i 's/ .*/\\U&/' <file>`, which keeps the utterance ids)"
                )
            raise DataError(
                f"{trans}: utterance {utt.utt_id} has characters outside the tokenizer alphabet: "
                f"{''.join(sorted(bad))!r}. Fix: correct the transcript, extend data.tokenizer.alphabet, or set "
                "data.tokenizer.oov_policy=unk (encode them as <unk>) or =drop (skip such utterances)"
            )
        affected += 1
        chars.update(c for c in utt.text if c in bad)
        if policy == "unk":
            kept.append(utt)
    if affected:
        verb = "kept with <unk>" if policy == "unk" else "dropped"
        log.warning(
            "%s: %d utterances with characters outside the alphabet %s (data.tokenizer.oov_policy=%s): %s%s",
            what,
            affected,
            verb,
            policy,
            dict(chars),
            " -- the transcripts are lowercase: uppercase them" if _lowercase(set(chars), alphabet) else "",
        )
    return kept, chars
