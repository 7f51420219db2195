"""RNN-Transducer: encoder + LSTM predictor + joiner, RNN-T loss, greedy and beam decoding.

Sizes are config-driven so the model can mirror Gulati et al. 2020 (Conformer), Table 1: a 1-layer
LSTM decoder of 320 units for Conformer-S and 640 for M/L, vocabulary 1024 (``pred_dim``,
``pred_layers``, ``joint_dim``, ``vocab_size``).

Blank (id 0 by default) doubles as the predictor's start symbol. Decoding methods run under
``torch.no_grad()`` and do not change the module's mode: call ``model.eval()`` first.

Shapes: ``B`` batch, ``T`` input frames, ``F`` features, ``T'`` encoder frames, ``D`` encoder dim,
``U`` target length (``U+1`` predictor positions), ``P`` predictor dim, ``J`` joint dim, ``V`` vocab,
``L`` LSTM layers, ``N`` hypotheses decoded together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conformer_prune.models.losses import _BACKENDS, Backend, rnnt_loss

LSTMState = tuple[Tensor, Tensor]
"""``(h, c)``, each ``(L, N, P)``."""


class Predictor(nn.Module):
    """Label-history network: embedding + LSTM, fed blank as the start symbol.

    Args:
        vocab_size: ``V`` (blank included).
        pred_dim: LSTM hidden size ``P`` (the "decoder dim" of Gulati et al., Table 1).
        num_layers: LSTM layers ``L``.
        blank: blank id, used as the start-of-sequence input.
        embed_dim: embedding size; ``None`` means ``pred_dim``.
        dropout: dropout on the embedding and the LSTM output (and between LSTM layers).
    """

    def __init__(
        self,
        vocab_size: int,
        pred_dim: int = 320,
        num_layers: int = 1,
        blank: int = 0,
        embed_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pred_dim < 1 or num_layers < 1:
            raise ValueError(f"Predictor: pred_dim and num_layers must be >= 1, got {pred_dim}, {num_layers}")
        embed_dim = pred_dim if embed_dim is None else embed_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(
            embed_dim, pred_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.pred_dim = pred_dim
        self.num_layers = num_layers
        self.blank = blank

    def forward(self, tokens: Tensor, token_lens: Tensor | None = None) -> Tensor:
        """Teacher-forced outputs for every prefix of the labels.

        Args:
            tokens: ``(B, U)`` label ids; entries past ``token_lens`` are replaced by blank.
            token_lens: ``(B,)`` or ``None`` (all ``U`` labels valid).

        Returns:
            ``(B, U+1, P)``: position ``u`` has seen ``[blank, y_1, ..., y_u]``.
        """
        tokens = tokens.long()
        if token_lens is not None:
            pad = torch.arange(tokens.size(1), device=tokens.device) >= token_lens[:, None]  # (B, U)
            tokens = tokens.masked_fill(pad, self.blank)
        start = tokens.new_full((tokens.size(0), 1), self.blank)
        x = self.dropout(self.embedding(torch.cat([start, tokens], dim=1)))  # (B, U+1, E)
        out, _ = self.lstm(x)  # (B, U+1, P)
        return self.dropout(out)

    def step(self, tokens: Tensor, state: LSTMState | None = None) -> tuple[Tensor, LSTMState]:
        """One decoding step: feed ``tokens`` ``(N,)`` after ``state`` (``None`` = fresh start).

        Returns:
            ``(N, P)`` output and the new ``(h, c)`` state, each ``(L, N, P)``.
        """
        x = self.dropout(self.embedding(tokens.long()[:, None]))  # (N, 1, E)
        out, state = self.lstm(x, state)  # (N, 1, P)
        return self.dropout(out[:, 0]), state


class Joiner(nn.Module):
    """``Linear(V <- J)(tanh(Linear(J <- D)(enc) + Linear(J <- P)(pred)))``.

    Args:
        enc_dim: encoder output dim ``D``.
        pred_dim: predictor output dim ``P``.
        joint_dim: hidden joint dim ``J``.
        vocab_size: ``V``.
    """

    def __init__(self, enc_dim: int, pred_dim: int, joint_dim: int, vocab_size: int) -> None:
        super().__init__()
        if joint_dim < 1:
            raise ValueError(f"Joiner: joint_dim must be >= 1, got {joint_dim}")
        self.enc_proj = nn.Linear(enc_dim, joint_dim)
        self.pred_proj = nn.Linear(pred_dim, joint_dim)
        self.out = nn.Linear(joint_dim, vocab_size)
        self.joint_dim = joint_dim

    def forward(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Logits for broadcastable ``enc (..., D)`` and ``pred (..., P)``, e.g. ``(B, T, 1, D)`` and
        ``(B, 1, U+1, P)`` give ``(B, T, U+1, V)``."""
        return self.joint(self.enc_proj(enc), self.pred_proj(pred))

    def joint(self, enc_proj: Tensor, pred_proj: Tensor) -> Tensor:
        """Logits from already projected inputs (``(..., J)`` each, broadcastable) -> ``(..., V)``."""
        return self.out(torch.tanh(enc_proj + pred_proj))


class TransducerModel(nn.Module):
    """Encoder + :class:`Predictor` + :class:`Joiner`, trained with the RNN-T loss.

    Args:
        encoder: module with ``forward(features (B,T,F), feature_lens (B,)) -> ((B,T',D), (B,))`` and an
            int attribute ``d_model``.
        vocab_size: ``V``, blank included.
        pred_dim: predictor LSTM size ``P``.
        pred_layers: predictor LSTM layers.
        joint_dim: joiner hidden size ``J``.
        blank: blank id (also the predictor's start symbol).
        loss_backend: ``"auto"``, ``"torchaudio"`` or ``"torch"``; see
            :func:`conformer_prune.models.losses.rnnt_loss`.
        pred_embed_dim: predictor embedding size; ``None`` means ``pred_dim``.
        pred_dropout: dropout inside the predictor.
        ctc_weight: weight of an auxiliary CTC loss on the encoder output (a ``Linear(D, V)`` head used only
            in training; 0: no head). The encoder then learns alignments at the pace of a CTC model, which a
            transducer trained from scratch for a few thousand steps needs (Watanabe et al. 2017 and most
            toolkits use 0.1-0.5). The head is kept in exports (``V·(D+1)`` parameters) but never decodes.
    """

    def __init__(
        self,
        encoder: nn.Module,
        vocab_size: int,
        pred_dim: int = 320,
        pred_layers: int = 1,
        joint_dim: int = 320,
        blank: int = 0,
        loss_backend: Backend = "auto",
        pred_embed_dim: int | None = None,
        pred_dropout: float = 0.0,
        ctc_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"TransducerModel: vocab_size must be >= 2 (blank + one token), got {vocab_size}")
        if not 0 <= blank < vocab_size:
            raise ValueError(f"TransducerModel: blank={blank} must be a token id in [0, vocab_size={vocab_size})")
        if loss_backend not in _BACKENDS:
            raise ValueError(f"TransducerModel: loss_backend must be one of {_BACKENDS}, got {loss_backend!r}")
        d_model = getattr(encoder, "d_model", None)
        if not isinstance(d_model, int):
            raise ValueError(f"TransducerModel: the encoder needs an int attribute d_model, got {d_model!r}")
        self.encoder = encoder
        self.predictor = Predictor(vocab_size, pred_dim, pred_layers, blank, pred_embed_dim, pred_dropout)
        self.joiner = Joiner(d_model, pred_dim, joint_dim, vocab_size)
        if ctc_weight < 0:
            raise ValueError(f"TransducerModel: ctc_weight must be >= 0, got {ctc_weight}")
        self.ctc_head = nn.Linear(d_model, vocab_size) if ctc_weight > 0 else None
        self.ctc_weight = float(ctc_weight)
        self.vocab_size = vocab_size
        self.blank = blank
        self.loss_backend = loss_backend

    def forward(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder only: ``(B, T, F), (B,) -> enc (B, T', D), enc_lens (B,)``."""
        return self.encoder(features, feature_lens)

    def loss(self, features: Tensor, feature_lens: Tensor, tokens: Tensor, token_lens: Tensor) -> Tensor:
        """RNN-T loss: mean over utterances of the per-utterance negative log-likelihood (nats), plus
        ``ctc_weight`` times the auxiliary CTC loss on the same scale (per-utterance NLL, batch mean).

        Args:
            features: ``(B, T, F)``.
            feature_lens: ``(B,)``.
            tokens: ``(B, U)`` label ids, padded past ``token_lens`` with any value.
            token_lens: ``(B,)``.

        Returns:
            Scalar float32 loss.
        """
        if tokens.dim() != 2 or tokens.size(0) != features.size(0):
            raise ValueError(f"TransducerModel.loss: tokens must be (B, U), got shape {tuple(tokens.shape)}")
        if token_lens.shape != (tokens.size(0),):
            raise ValueError(f"TransducerModel.loss: token_lens must be (B,), got {tuple(token_lens.shape)}")
        enc, enc_lens = self.encoder(features, feature_lens)  # (B, T', D)
        tokens = tokens[:, : int(token_lens.max())]  # no lattice columns past the longest target
        pred = self.predictor(tokens, token_lens)  # (B, U+1, P)
        logits = self.joiner(enc[:, :, None], pred[:, None])  # (B, T', U+1, V)
        loss = rnnt_loss(logits, tokens, enc_lens, token_lens, blank=self.blank, backend=self.loss_backend)
        if self.ctc_head is None:
            return loss
        log_probs = self.ctc_head(enc).float().log_softmax(dim=-1)  # (B, T', V)
        ctc = F.ctc_loss(
            log_probs.transpose(0, 1),  # (T', B, V)
            tokens.long(),
            enc_lens.long(),
            token_lens.long(),
            blank=self.blank,
            reduction="sum",
            zero_infinity=True,
        ) / features.size(0)
        return loss + self.ctc_weight * ctc

    @torch.no_grad()
    def greedy_decode(self, enc: Tensor, enc_lens: Tensor, max_symbols_per_frame: int = 5) -> list[list[int]]:
        """Batched greedy search: at each frame emit the argmax label until blank (or the cap).

        Args:
            enc: ``(B, T', D)`` encoder output.
            enc_lens: ``(B,)`` valid frames.
            max_symbols_per_frame: cap on non-blank labels emitted at one frame.

        Returns:
            ``B`` lists of label ids.
        """
        if max_symbols_per_frame < 1:
            raise ValueError(f"greedy_decode: max_symbols_per_frame must be >= 1, got {max_symbols_per_frame}")
        B, T, _ = enc.shape
        enc_p = self.joiner.enc_proj(enc)  # (B, T', J)
        tokens = torch.full((B,), self.blank, dtype=torch.long, device=enc.device)
        pred, state = self.predictor.step(tokens)
        pred_p = self.joiner.pred_proj(pred)  # (B, J)
        hyps: list[list[int]] = [[] for _ in range(B)]
        lens = enc_lens.to(enc.device)
        for t in range(T):
            active = lens > t  # (B,)
            for _ in range(max_symbols_per_frame):
                best = self.joiner.joint(enc_p[:, t], pred_p).argmax(dim=-1)  # (B,)
                emit = active & (best != self.blank)
                if not bool(emit.any()):
                    break
                labels = best.tolist()
                for b in emit.nonzero()[:, 0].tolist():
                    hyps[b].append(labels[b])
                new_pred, new_state = self.predictor.step(best, state)
                pred_p = torch.where(emit[:, None], self.joiner.pred_proj(new_pred), pred_p)
                state = tuple(torch.where(emit[None, :, None], n, o) for n, o in zip(new_state, state))
                active = emit
        return hyps

    @torch.no_grad()
    def beam_search(
        self, enc: Tensor, enc_lens: Tensor, beam_size: int = 4, max_symbols_per_frame: int = 3
    ) -> list[list[int]]:
        """Time-synchronous beam search, one utterance at a time; best hypothesis per utterance.

        See :meth:`beam_search_nbest` for the algorithm.

        Args:
            enc: ``(B, T', D)`` encoder output.
            enc_lens: ``(B,)`` valid frames.
            beam_size: hypotheses kept per frame.
            max_symbols_per_frame: cap on non-blank labels one hypothesis emits at one frame.

        Returns:
            ``B`` lists of label ids.
        """
        return [
            self.beam_search_nbest(enc[b, : int(n)], beam_size, max_symbols_per_frame)[0][0]
            for b, n in enumerate(enc_lens.tolist())
        ]

    @torch.no_grad()
    def beam_search_nbest(
        self, enc: Tensor, beam_size: int = 4, max_symbols_per_frame: int = 3
    ) -> list[tuple[list[int], float]]:
        """Time-synchronous decoding (Saon et al., ICASSP 2020) of one utterance, with prefix merging.

        Each frame starts from the beam (hypotheses that ended the previous frame with blank). At
        expansion level ``v = 0 .. max_symbols_per_frame``, every hypothesis of the level takes blank
        (which ends its frame: it enters the next beam) and the ``beam_size`` best one-label extensions
        over the whole level form level ``v + 1``. Hypotheses that reach the next beam with the same
        label sequence are merged by adding their probabilities (log-add), so a score is the log
        probability of the label sequence summed over its alignments; the next beam keeps the
        ``beam_size`` best. With a beam larger than the number of reachable sequences, the scores of
        sequences no longer than ``max_symbols_per_frame`` are the exact ``log P(y | x)``.

        Args:
            enc: ``(T', D)`` encoder output of one utterance (valid frames only).
            beam_size: hypotheses kept per frame and extensions kept per level.
            max_symbols_per_frame: cap on non-blank labels one hypothesis emits at one frame.

        Returns:
            Up to ``beam_size`` ``(label ids, log probability)`` pairs, best first.
        """
        if beam_size < 1:
            raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
        if max_symbols_per_frame < 1:
            raise ValueError(f"beam_search: max_symbols_per_frame must be >= 1, got {max_symbols_per_frame}")
        enc_p = self.joiner.enc_proj(enc)  # (T', J)
        start = torch.full((1,), self.blank, dtype=torch.long, device=enc.device)
        pred, (h, c) = self.predictor.step(start)
        # predictor cache: label sequence -> (projected output (J,), h (L, P), c (L, P))
        cache: dict[tuple[int, ...], tuple[Tensor, Tensor, Tensor]] = {
            (): (self.joiner.pred_proj(pred)[0], h[:, 0], c[:, 0])
        }
        beam: dict[tuple[int, ...], float] = {(): 0.0}
        for t in range(enc_p.size(0)):
            next_beam: dict[tuple[int, ...], float] = {}
            level = list(beam.items())
            for v in range(max_symbols_per_frame + 1):
                pred_p = torch.stack([cache[seq][0] for seq, _ in level])  # (N, J)
                log_probs = self.joiner.joint(enc_p[t], pred_p).float().log_softmax(-1)  # (N, V)
                blank_lp = log_probs[:, self.blank].tolist()
                for (seq, score), lp in zip(level, blank_lp):
                    next_beam[seq] = _log_add(next_beam.get(seq, -math.inf), score + lp)
                if v == max_symbols_per_frame:
                    break
                level = self._extend(level, log_probs, beam_size, next_beam, cache)
                if not level:
                    break
            beam = dict(sorted(next_beam.items(), key=lambda kv: kv[1], reverse=True)[:beam_size])
            cache = {seq: cache[seq] for seq in beam}
        return [(list(seq), score) for seq, score in beam.items()]

    def _extend(
        self,
        level: list[tuple[tuple[int, ...], float]],
        log_probs: Tensor,
        beam_size: int,
        next_beam: dict[tuple[int, ...], float],
        cache: dict[tuple[int, ...], tuple[Tensor, Tensor, Tensor]],
    ) -> list[tuple[tuple[int, ...], float]]:
        """The ``beam_size`` best one-label extensions of ``level``; runs the predictor on them."""
        scores = torch.tensor([score for _, score in level], device=log_probs.device)
        ext = scores[:, None] + log_probs  # (N, V)
        ext[:, self.blank] = -math.inf
        # an extension scoring below the current beam_size-th finished hypothesis cannot enter the beam
        finished = sorted(next_beam.values(), reverse=True)
        floor = finished[beam_size - 1] if len(finished) >= beam_size else -math.inf
        top_scores, top_idx = ext.flatten().topk(min(beam_size, ext.numel()))
        V = log_probs.size(1)
        chosen = [
            (level[i // V][0], i % V, s)
            for s, i in zip(top_scores.tolist(), top_idx.tolist())
            if s > floor and s > -math.inf
        ]
        if not chosen:
            return []
        parents = [cache[seq] for seq, _, _ in chosen]
        h = torch.stack([p[1] for p in parents], dim=1)  # (L, N, P)
        c = torch.stack([p[2] for p in parents], dim=1)  # (L, N, P)
        labels = torch.tensor([label for _, label, _ in chosen], device=log_probs.device)
        pred, (h, c) = self.predictor.step(labels, (h, c))
        pred_p = self.joiner.pred_proj(pred)  # (N, J)
        out = []
        for n, (seq, label, score) in enumerate(chosen):
            new_seq = (*seq, label)
            cache.setdefault(new_seq, (pred_p[n], h[:, n], c[:, n]))
            out.append((new_seq, score))
        return out


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))
