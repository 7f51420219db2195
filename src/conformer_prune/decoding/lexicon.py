"""Lexicon-constrained CTC beam search with a word n-gram LM (flashlight, via torchaudio).

:class:`LexiconLMCTCDecoder` follows the decoder protocol (:mod:`conformer_prune.decoding.base`). It runs
flashlight's lexicon beam search (``torchaudio.models.decoder.ctc_decoder``, needs ``flashlight-text``) with a
word n-gram model in ARPA format, read by the KenLM bundled in flashlight-text, or by
:mod:`conformer_prune.decoding.lm` when that KenLM is missing.

Shapes: ``B`` batch, ``T`` frames, ``V`` vocab.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

from conformer_prune.console import quiet_fds
from conformer_prune.decoding.base import TextTokenizer
from conformer_prune.decoding.ctc import ctc_inputs
from conformer_prune.decoding.lm import BOS, EOS, UNK, arpa_unigrams, read_arpa

log = logging.getLogger(__name__)


class LexiconLMCTCDecoder:
    """Lexicon-constrained CTC beam search with a word n-gram LM (flashlight, via torchaudio).

    Hypotheses may only spell words of the lexicon (spellings from ``tokenizer.spell``); the word
    boundary piece (``▁``) is flashlight's silence token, so it may also appear between words on its own
    (a vocabulary without a standalone ``▁`` piece, as some BPE models have, uses the blank instead). Each
    completed word adds ``lm_weight * log10 p_LM(word | history) + word_score`` to the hypothesis score
    (natural-log acoustic scores); the sentence end adds ``lm_weight * log10 p_LM(</s> | history)``.

    Args:
        tokenizer: see the module docstring.
        lm_path: ARPA file of a word n-gram model (e.g. written by
            :func:`conformer_prune.decoding.lm.train_ngram_lm`), or ``None`` for lexicon-only decoding.
        lexicon_words: the words the decoder may output: a list, or a path to a text file whose
            whitespace-separated words are taken (a word list or transcripts). ``None``: the LM's unigrams.
        beam_size: hypotheses kept per frame.
        beam_size_token: tokens considered per frame (``None``: all).
        beam_threshold: drop hypotheses this far below the best one.
        lm_weight: weight of the LM log10 probability.
        word_score: score added per word (positive favours more words).
        sil_score: score added per silence (word-boundary piece outside a word).
        unk_score: score for out-of-lexicon words (``-inf``: never).
        log_add: merge hypotheses by log-add (``True``) or max (``False``).
        blank: blank id.
        lm_backend: ``"kenlm"`` (flashlight-text's bundled KenLM reads the ARPA file), ``"python"``
            (:mod:`conformer_prune.decoding.lm` behind torchaudio's ``CTCDecoderLM``), or ``"auto"``
            (KenLM when bundled, else Python).
    """

    decodes = "ctc"  # the head it decodes (checked against model.net before training)

    def __init__(
        self,
        tokenizer: TextTokenizer,
        lm_path: str | PathLike[str] | None = None,
        lexicon_words: Sequence[str] | str | PathLike[str] | None = None,
        beam_size: int = 50,
        beam_size_token: int | None = None,
        beam_threshold: float = 25.0,
        lm_weight: float = 1.0,
        word_score: float = 0.0,
        sil_score: float = 0.0,
        unk_score: float = -math.inf,
        log_add: bool = False,
        blank: int = 0,
        lm_backend: Literal["auto", "kenlm", "python"] = "auto",
    ) -> None:
        if lm_backend not in ("auto", "kenlm", "python"):
            raise ValueError(f"LexiconLMCTCDecoder: lm_backend must be auto|kenlm|python, got {lm_backend!r}")
        if lm_path is not None and not Path(lm_path).is_file():
            raise ValueError(
                f"LexiconLMCTCDecoder: lm_path={str(lm_path)!r} is not a file; build one with train_ngram_lm"
            )
        if lexicon_words is None and lm_path is None:
            raise ValueError("LexiconLMCTCDecoder: give lexicon_words, or lm_path to take the LM's words")
        self.tokenizer = tokenizer
        self.lm_path = None if lm_path is None else str(lm_path)
        self.words = _load_words(lexicon_words, self.lm_path)
        self.options = dict(
            beam_size=beam_size,
            beam_size_token=beam_size_token,
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            word_score=word_score,
            sil_score=sil_score,
            unk_score=unk_score,
            log_add=log_add,
        )
        self.blank = blank
        self.lm_backend = lm_backend
        self._spellings = self._spell_words()
        self._decoder: Any = None  # built on first use; flashlight objects do not pickle

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}

    def _spell_words(self) -> dict[str, list[str]]:
        pieces = set(self.tokenizer.pieces)
        blank_piece = self.tokenizer.pieces[self.blank]
        spellings = {}
        for word in self.words:
            spelling = list(self.tokenizer.spell(word))
            bad = [p for p in spelling if p not in pieces or p == blank_piece]
            if bad or not spelling:
                raise ValueError(
                    f"LexiconLMCTCDecoder: the tokenizer spells lexicon word {word!r} as {spelling}, with "
                    f"pieces {bad} outside its vocabulary; normalise lexicon_words like the transcripts"
                )
            spellings[word] = spelling
        return spellings

    def _build(self) -> Any:
        from torchaudio.models.decoder import ctc_decoder

        with tempfile.TemporaryDirectory(prefix="lexicon-") as tmp:
            lexicon_file = Path(tmp) / "lexicon.txt"
            lexicon_file.write_text(
                "".join(f"{w}\t{' '.join(s)}\n" for w, s in self._spellings.items()), encoding="utf-8"
            )
            words_file = Path(tmp) / "words.txt"  # fixes the word index order (the Python LM relies on it)
            word_list = [*self._spellings, UNK]
            words_file.write_text("".join(f"{w}\n" for w in word_list), encoding="utf-8")
            lm: Any = None
            if self.lm_path is not None:
                lm = self.lm_path if self._use_kenlm() else _make_python_decoder_lm(self.lm_path, word_list)
            with quiet_fds():  # KenLM prints "Loading the LM will be faster..." and a progress ruler
                return ctc_decoder(
                    lexicon=str(lexicon_file),
                    tokens=list(self.tokenizer.pieces),
                    lm=lm,
                    lm_dict=str(words_file),
                    blank_token=self.tokenizer.pieces[self.blank],
                    sil_token=self._silence_piece(),
                    unk_word=UNK,
                    **self.options,
                )

    def _silence_piece(self) -> str:
        boundary = self.tokenizer.word_boundary_piece
        return boundary if boundary in self.tokenizer.pieces else self.tokenizer.pieces[self.blank]

    def _use_kenlm(self) -> bool:
        if self.lm_backend == "python":
            return False
        try:
            from flashlight.lib.text.decoder.kenlm import KenLM  # noqa: F401
        except ImportError:
            if self.lm_backend == "kenlm":
                raise
            log.warning("flashlight-text has no KenLM here; reading %s with the Python n-gram LM", self.lm_path)
            return False
        return True

    def __call__(self, net: nn.Module | None, log_probs: Tensor, lens: Tensor) -> list[str]:
        """``(B, T, V), (B,) -> B`` transcripts, lexicon words joined by single spaces (``net`` is not needed)."""
        log_probs, lens = ctc_inputs(log_probs, lens)
        if self._decoder is None:
            self._decoder = self._build()
        hyps = self._decoder(log_probs.contiguous(), lens.long())
        return [" ".join(nbest[0].words) if nbest else "" for nbest in hyps]


def _load_words(lexicon_words: Sequence[str] | str | PathLike[str] | None, lm_path: str | None) -> list[str]:
    """Unique words, first-seen order, without LM markers."""
    if lexicon_words is None:
        assert lm_path is not None
        words: Sequence[str] = arpa_unigrams(lm_path)
    elif isinstance(lexicon_words, str | PathLike):
        path = Path(lexicon_words)
        if not path.is_file():
            raise ValueError(f"LexiconLMCTCDecoder: lexicon_words={str(path)!r} is not a file")
        words = path.read_text(encoding="utf-8").split()
    else:
        words = [str(w) for w in lexicon_words]
    unique = [w for w in dict.fromkeys(words) if w not in (BOS, EOS, UNK)]
    if not unique:
        raise ValueError("LexiconLMCTCDecoder: the lexicon is empty (lexicon_words / the LM's unigrams)")
    return unique


def _make_python_decoder_lm(lm_path: str, words: list[str]) -> Any:
    """A torchaudio ``CTCDecoderLM`` scoring words with :func:`conformer_prune.decoding.lm.read_arpa`.

    Scores are log10 probabilities, like flashlight's KenLM, so ``lm_weight`` means the same for both
    backends. LM states are canonical per (truncated) history, so flashlight merges hypotheses whose
    histories the n-gram model cannot tell apart, as it does with KenLM states.
    """
    from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

    ngram = read_arpa(lm_path)
    keep = ngram.order - 1

    class PythonNGramDecoderLM(CTCDecoderLM):
        def __init__(self) -> None:
            CTCDecoderLM.__init__(self)
            self._root = CTCDecoderLMState()
            self._states: dict[tuple[str, ...], Any] = {}
            self._history: dict[Any, tuple[str, ...]] = {}

        def _state(self, history: tuple[str, ...]) -> Any:
            history = history[max(0, len(history) - keep) :] if keep else ()
            state = self._states.get(history)
            if state is None:
                state = self._root.child(len(self._states))
                self._states[history] = state
                self._history[state] = history
            return state

        def start(self, start_with_nothing: bool) -> Any:
            return self._state((BOS,))

        def score(self, state: Any, usr_token_idx: int) -> tuple[Any, float]:
            history = self._history[state]
            word = words[usr_token_idx]
            return self._state((*history, word)), ngram.log10_prob(word, history)

        def finish(self, state: Any) -> tuple[Any, float]:
            history = self._history[state]
            return self._state((*history, EOS)), ngram.log10_prob(EOS, history)

    return PythonNGramDecoderLM()
