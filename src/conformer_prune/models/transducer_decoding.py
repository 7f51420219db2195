"""Text decoders for the Transducer: ``decoder(net, enc (B,T,D), enc_lens (B,)) -> list[str]``."""

from __future__ import annotations

from torch import Tensor


class TransducerGreedyDecoder:
    """Batched greedy search (at most ``max_symbols_per_frame`` labels per frame)."""

    decodes = "transducer"  # the head it decodes (checked against model.net before training)

    def __init__(self, tokenizer, max_symbols_per_frame: int = 5) -> None:
        self.tokenizer = tokenizer
        self.max_symbols_per_frame = max_symbols_per_frame
        self.name = "greedy"

    def __call__(self, net, enc: Tensor, enc_lens: Tensor) -> list[str]:
        ids = net.greedy_decode(enc, enc_lens, max_symbols_per_frame=self.max_symbols_per_frame)
        return [self.tokenizer.decode(seq) for seq in ids]


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
