"""CTC decoders without a language model (the decoder protocol: :mod:`conformer_prune.decoding.base`).

* :class:`GreedyCTCDecoder`: best path (argmax, merge repeats, drop blanks).
* :class:`PrefixBeamCTCDecoder`: CTC prefix beam search without a language model
  (:func:`ctc_prefix_beam_search`, Hannun et al. 2014, "First-pass LVCSR with bi-directional RNNs").

With a lexicon and a word LM: :class:`conformer_prune.decoding.lexicon.LexiconLMCTCDecoder`.

Shapes: ``B`` batch, ``T`` frames, ``V`` vocab.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from conformer_prune.decoding.base import TextTokenizer
from conformer_prune.models.ctc import ctc_greedy_ids


def ctc_inputs(log_probs: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, T, V)`` float32 CPU log-probabilities and ``(B,)`` CPU lengths, checked."""
    if log_probs.dim() != 3:
        raise ValueError(f"CTC decoder: log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    if lens.shape != (log_probs.size(0),):
        raise ValueError(f"CTC decoder: lens must be (B,)=({log_probs.size(0)},), got {tuple(lens.shape)}")
    return log_probs.detach().float().cpu(), lens.detach().cpu()


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

    def __call__(self, net: nn.Module | None, log_probs: Tensor, lens: Tensor) -> list[str]:
        """``(B, T, V), (B,) -> B`` transcripts (``net`` is not needed)."""
        log_probs, lens = ctc_inputs(log_probs, lens)
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

    def __call__(self, net: nn.Module | None, log_probs: Tensor, lens: Tensor) -> list[str]:
        """``(B, T, V), (B,) -> B`` transcripts (``net`` is not needed)."""
        log_probs, lens = ctc_inputs(log_probs, lens)
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
