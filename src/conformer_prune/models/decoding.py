"""Text decoders for CTC outputs, built from a tokenizer.

Each decoder is a callable ``decoder(log_probs (B, T, V) float CPU, lens (B,)) -> list[str]`` whose
constructor takes plain, config-friendly arguments (Hydra ``_target_`` + ``_partial_: true`` with the
tokenizer passed at call time):

* :class:`GreedyCTCDecoder`: best path (argmax, merge repeats, drop blanks).
* :class:`PrefixBeamCTCDecoder`: CTC prefix beam search without a language model
  (:func:`ctc_prefix_beam_search`, Hannun et al. 2014, "First-pass LVCSR with bi-directional RNNs").
* :class:`LexiconLMCTCDecoder`: flashlight's lexicon-constrained beam search
  (``torchaudio.models.decoder.ctc_decoder``, needs ``flashlight-text``) with a word n-gram model in
  ARPA format, read by the KenLM bundled in flashlight-text, or by :mod:`conformer_prune.models.lm`
  when that KenLM is missing.

The tokenizer contract (``conformer_prune.data.tokenizer.Tokenizer``): ``pieces`` (id -> piece,
``pieces[0]`` is the blank), ``decode(ids) -> str``, ``word_boundary_piece`` (``"▁"``), ``spell(word)``.

Shapes: ``B`` batch, ``T`` frames, ``V`` vocab.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from torch import Tensor

from conformer_prune.console import quiet_fds
from conformer_prune.models.ctc import ctc_greedy_ids
from conformer_prune.models.lm import BOS, EOS, UNK, arpa_unigrams, read_arpa

log = logging.getLogger(__name__)


class TextTokenizer(Protocol):
    """What the decoders need from a tokenizer."""

    pieces: list[str]
    word_boundary_piece: str

    def decode(self, ids: list[int]) -> str: ...

    def spell(self, word: str) -> list[str]: ...


def _check_inputs(log_probs: Tensor, lens: Tensor) -> None:
    if log_probs.dim() != 3:
        raise ValueError(f"CTC decoder: log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    if lens.shape != (log_probs.size(0),):
        raise ValueError(f"CTC decoder: lens must be (B,)=({log_probs.size(0)},), got {tuple(lens.shape)}")


class GreedyCTCDecoder:
    """Best-path decoding to text.

    Args:
        tokenizer: see the module docstring.
        blank: blank id.
    """

    decodes = "ctc"  # the head it decodes (checked against model.net before training)

    def __init__(self, tokenizer: TextTokenizer, blank: int = 0) -> None:
        self.tokenizer = tokenizer
        self.blank = blank

    def __call__(self, log_probs: Tensor, lens: Tensor) -> list[str]:
        """``(B, T, V), (B,) -> B`` transcripts."""
        _check_inputs(log_probs, lens)
        return [self.tokenizer.decode(ids) for ids in ctc_greedy_ids(log_probs, lens, self.blank)]


class PrefixBeamCTCDecoder:
    """CTC prefix beam search (no language model) to text.

    Args:
        tokenizer: see the module docstring.
        beam_size: prefixes kept per frame.
        blank: blank id.
        beam_size_token: per frame, extend prefixes only with this many most likely tokens
            (``None``: all tokens).
    """

    decodes = "ctc"  # the head it decodes (checked against model.net before training)

    def __init__(
        self, tokenizer: TextTokenizer, beam_size: int = 8, blank: int = 0, beam_size_token: int | None = None
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"PrefixBeamCTCDecoder: beam_size must be >= 1, got {beam_size}")
        if beam_size_token is not None and beam_size_token < 1:
            raise ValueError(f"PrefixBeamCTCDecoder: beam_size_token must be >= 1 or None, got {beam_size_token}")
        self.tokenizer = tokenizer
        self.beam_size = beam_size
        self.blank = blank
        self.beam_size_token = beam_size_token

    def __call__(self, log_probs: Tensor, lens: Tensor) -> list[str]:
        """``(B, T, V), (B,) -> B`` transcripts."""
        _check_inputs(log_probs, lens)
        out = []
        for b, n in enumerate(lens.tolist()):
            nbest = ctc_prefix_beam_search(log_probs[b, : int(n)], self.beam_size, self.blank, self.beam_size_token)
            out.append(self.tokenizer.decode(nbest[0][0]))
        return out


def ctc_prefix_beam_search(
    log_probs: Tensor, beam_size: int = 8, blank: int = 0, beam_size_token: int | None = None
) -> list[tuple[list[int], float]]:
    """CTC prefix beam search over one utterance.

    Each prefix carries two log-probabilities summed over all alignments of the frames so far that
    collapse to it: ending in blank (``pb``) and ending in its last label (``pnb``). Per frame a prefix
    stays (blank, or a repeat of its last label) or is extended by a label (after a blank when the label
    equals its last one); extensions that land on a prefix already in the beam are merged into it. The
    ``beam_size`` most probable prefixes survive each frame. With a beam at least as large as the
    number of distinct prefixes the scores are exact: ``log P(prefix | x)`` summed over all alignments.

    Args:
        log_probs: ``(T, V)`` log-probabilities.
        beam_size: prefixes kept per frame.
        blank: blank id.
        beam_size_token: extend only with this many most likely labels per frame (``None``: all).

    Returns:
        Up to ``beam_size`` ``(label ids, log probability)`` pairs, best first.
    """
    lp = log_probs.detach().float().cpu().numpy()  # (T, V)
    T, V = lp.shape
    labels = np.array([v for v in range(V) if v != blank])
    n_tokens = len(labels) if beam_size_token is None else min(beam_size_token, len(labels))
    prefixes: list[tuple[int, ...]] = [()]
    pb = np.zeros(1)  # (K,) log P(prefix, ending in blank)
    pnb = np.full(1, -np.inf)  # (K,) log P(prefix, ending in its last label)
    for t in range(T):
        row = lp[t]
        tokens = labels if n_tokens == len(labels) else labels[np.argpartition(-row[labels], n_tokens - 1)[:n_tokens]]
        total = np.logaddexp(pb, pnb)  # (K,)
        last = np.array([p[-1] if p else -1 for p in prefixes])  # (K,)
        # stay: a blank, or a repeat of the last label (collapses onto the same prefix)
        stay_b = total + row[blank]
        stay_nb = np.where(last >= 0, pnb + row[np.maximum(last, 0)], -np.inf)
        # extend by each token: after a blank only when it repeats the last label
        ext = np.where(tokens[None, :] == last[:, None], pb[:, None], total[:, None]) + row[tokens][None, :]  # (K, N)
        index = {p: k for k, p in enumerate(prefixes)}
        col = {int(tok): j for j, tok in enumerate(tokens)}
        for k, p in enumerate(prefixes):  # extensions that reproduce a prefix in the beam: merge into it
            parent = index.get(p[:-1]) if p else None
            if parent is not None and p[-1] in col:
                stay_nb[k] = np.logaddexp(stay_nb[k], ext[parent, col[p[-1]]])
                ext[parent, col[p[-1]]] = -np.inf
        flat = ext.ravel()
        n_new = min(beam_size, flat.size)
        top = np.argpartition(-flat, n_new - 1)[:n_new]
        top = top[np.isfinite(flat[top])]
        cand_prefixes = prefixes + [(*prefixes[i // len(tokens)], int(tokens[i % len(tokens)])) for i in top]
        cand_pb = np.concatenate([stay_b, np.full(len(top), -np.inf)])
        cand_pnb = np.concatenate([stay_nb, flat[top]])
        order = np.argsort(-np.logaddexp(cand_pb, cand_pnb), kind="stable")[:beam_size]
        prefixes = [cand_prefixes[i] for i in order]
        pb, pnb = cand_pb[order], cand_pnb[order]
    scores = np.logaddexp(pb, pnb)
    return [(list(p), float(s)) for p, s in zip(prefixes, scores)]


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
            :func:`conformer_prune.models.lm.train_ngram_lm`), or ``None`` for lexicon-only decoding.
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
            (:mod:`conformer_prune.models.lm` behind torchaudio's ``CTCDecoderLM``), or ``"auto"``
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

    def __call__(self, log_probs: Tensor, lens: Tensor) -> list[str]:
        """``(B, T, V), (B,) -> B`` transcripts (lexicon words joined by single spaces)."""
        _check_inputs(log_probs, lens)
        if self._decoder is None:
            self._decoder = self._build()
        hyps = self._decoder(log_probs.detach().float().cpu().contiguous(), lens.detach().cpu().long())
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
    """A torchaudio ``CTCDecoderLM`` scoring words with :func:`conformer_prune.models.lm.read_arpa`.

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
