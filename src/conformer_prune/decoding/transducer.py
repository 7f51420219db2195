"""Transducer decoders (the decoder protocol: :mod:`conformer_prune.decoding.base`): ``out`` is the encoder
output ``(B, T', D)``; ``net``'s predictor and joiner decode it."""

from __future__ import annotations

from torch import Tensor

from conformer_prune.decoding.base import greedy_texts


class TransducerGreedyDecoder:
    """Batched greedy search (at most ``max_symbols_per_frame`` labels per frame)."""

    decodes = "transducer"  # the head it decodes (checked against model.net before training)

    def __init__(self, tokenizer, max_symbols_per_frame: int = 5) -> None:
        self.tokenizer = tokenizer
        self.max_symbols_per_frame = max_symbols_per_frame
        self.name = "greedy"

    def __call__(self, net, enc: Tensor, enc_lens: Tensor) -> list[str]:
        return greedy_texts(net, enc, enc_lens, self.tokenizer, max_symbols_per_frame=self.max_symbols_per_frame)


class TransducerBeamDecoder:
    """Beam search over the transducer lattice (``TransducerModel.beam_search``)."""

    decodes = "transducer"  # the head it decodes (checked against model.net before training)

    def __init__(self, tokenizer, beam_size: int = 4) -> None:
        if beam_size < 1:
            raise ValueError(f"decoding.default.beam_size must be >= 1, got {beam_size}")
        self.tokenizer = tokenizer
        self.beam_size = beam_size
        self.name = f"beam{beam_size}"

    def __call__(self, net, enc: Tensor, enc_lens: Tensor) -> list[str]:
        ids = net.beam_search(enc, enc_lens, beam_size=self.beam_size)
        return [self.tokenizer.decode(seq) for seq in ids]
