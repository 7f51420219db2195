"""The one decoder protocol, for CTC and Transducer models alike.

A decoder is built from a tokenizer and plain, config-friendly arguments (Hydra ``_target_`` +
``_partial_: true``, the tokenizer passed at build time) and called on a model's forward output::

    decoder(net, out, out_lens) -> list[str]

``out, out_lens = net(features, feature_lens)``: CTC log-probabilities ``(B, T', V)`` or a transducer's
encoder output ``(B, T', D)``, and ``(B,)`` lengths. A CTC decoder reads ``out`` alone; a transducer
decoder runs ``net``'s predictor and joiner on it. ``decodes`` names the head a decoder decodes (``ctc`` or
``transducer``; checked against ``model.net`` before training). Greedy decoding to token ids is the
models' own ``net.greedy_decode(out, out_lens)`` (the same call for both heads).

Shapes: ``B`` batch, ``T'`` encoder frames, ``V`` vocab, ``D`` encoder dim.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from torch import Tensor, nn


class TextTokenizer(Protocol):
    """What the decoders need from a tokenizer (``conformer_prune.data.tokenizer.Tokenizer``): ``pieces``
    (id -> piece, ``pieces[0]`` is the blank), ``decode(ids)``, ``word_boundary_piece`` (``"▁"``), ``spell``."""

    pieces: list[str]
    word_boundary_piece: str

    def decode(self, ids: list[int]) -> str: ...

    def spell(self, word: str) -> list[str]: ...


class Decoder(Protocol):
    """``decoder(net, out (B, T', V|D), out_lens (B,)) -> B`` transcripts (see the module docstring)."""

    decodes: ClassVar[str]

    def __call__(self, net: nn.Module | None, out: Tensor, out_lens: Tensor) -> list[str]: ...


def greedy_texts(net: Any, out: Tensor, out_lens: Tensor, tokenizer: Any, **options: Any) -> list[str]:
    """Greedy transcripts of either head: ``net.greedy_decode`` token ids, decoded by ``tokenizer``."""
    return [tokenizer.decode(ids) for ids in net.greedy_decode(out, out_lens, **options)]
