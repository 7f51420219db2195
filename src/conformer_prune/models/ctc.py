"""CTC model: any encoder + a linear head over the token vocabulary (blank = id 0 by default).

Shapes: ``B`` batch, ``T`` input frames, ``F`` features, ``T'`` encoder frames, ``D`` encoder dim,
``S`` padded target length, ``V`` vocab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CTCModel(nn.Module):
    """Encoder + ``Linear(D, V)`` + log-softmax, trained with CTC.

    Args:
        encoder: module with ``forward(features (B,T,F), feature_lens (B,)) -> ((B,T',D), (B,))`` and an
            int attribute ``d_model``.
        vocab_size: ``V``, blank included.
        blank: id of the CTC blank.
    """

    def __init__(self, encoder: nn.Module, vocab_size: int, blank: int = 0) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"CTCModel: vocab_size must be >= 2 (blank + one token), got {vocab_size}")
        if not 0 <= blank < vocab_size:
            raise ValueError(f"CTCModel: blank={blank} must be a token id in [0, vocab_size={vocab_size})")
        d_model = getattr(encoder, "d_model", None)
        if not isinstance(d_model, int):
            raise ValueError(f"CTCModel: the encoder needs an int attribute d_model, got {d_model!r}")
        self.encoder = encoder
        self.head = nn.Linear(d_model, vocab_size)
        self.vocab_size = vocab_size
        self.blank = blank

    def forward(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, F), (B,) -> log_probs (B, T', V) float32, out_lens (B,)``."""
        enc, enc_lens = self.encoder(features, feature_lens)  # (B, T', D)
        log_probs = self.head(enc).float().log_softmax(dim=-1)  # (B, T', V)
        return log_probs, enc_lens

    def loss(self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor) -> Tensor:
        """CTC loss, normalised per token then averaged over utterances.

        Each utterance's negative log-likelihood is divided by its target length (clamped to >= 1), then
        the batch mean is taken: ``torch.nn.functional.ctc_loss(..., reduction="mean")``. Utterances whose
        targets cannot be aligned (more labels than frames) give an infinite loss that is zeroed
        (``zero_infinity=True``), so their gradients vanish instead of poisoning the batch.

        Args:
            features: ``(B, T, F)``.
            feature_lens: ``(B,)``.
            tokens: ``(B, S)`` token ids, padded past ``token_lens`` with any value.
            token_lens: ``(B,)``.

        Returns:
            Scalar float32 loss.
        """
        if tokens.dim() != 2 or tokens.size(0) != features.size(0):
            raise ValueError(f"CTCModel.loss: tokens must be (B, S), got shape {tuple(tokens.shape)}")
        if token_lens.shape != (tokens.size(0),):
            raise ValueError(f"CTCModel.loss: token_lens must be (B,), got shape {tuple(token_lens.shape)}")
        log_probs, out_lens = self(features, feature_lens)
        return F.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V)
            tokens.long(),
            out_lens.long(),
            token_lens.long(),
            blank=self.blank,
            reduction="mean",
            zero_infinity=True,
        )

    def greedy_decode(self, log_probs: Tensor, lens: Tensor) -> list[list[int]]:
        """Best-path token ids per utterance (argmax, merge repeats, drop blanks)."""
        return ctc_greedy_ids(log_probs, lens, self.blank)


def ctc_greedy_ids(log_probs: Tensor, lens: Tensor, blank: int = 0) -> list[list[int]]:
    """Best-path CTC decoding to token ids.

    Args:
        log_probs: ``(B, T, V)`` scores (log-probabilities or logits: only the argmax matters).
        lens: ``(B,)`` valid frames.
        blank: blank id.

    Returns:
        ``B`` lists of token ids with repeats merged and blanks removed.
    """
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    return [best[b, : int(n)][keep[b, : int(n)]].tolist() for b, n in enumerate(lens.tolist())]
