"""Run a plain-PyTorch ASR model on features: one function for CTC and Transducer nets."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from conformer_prune.models.transducer import TransducerModel

Decoder = Callable[..., list[str]]


@torch.no_grad()
def transcribe_features(net: nn.Module, features: Tensor, feature_lens: Tensor, decoder: Decoder) -> list[str]:
    """Encode ``(B, T, F)`` features and decode them to text.

    CTC decoders take ``(log_probs (B,T,V) on CPU, lens)``; transducer decoders take ``(net, enc, lens)``.
    """
    out, out_lens = net(features, feature_lens)
    if isinstance(net, TransducerModel):
        return decoder(net, out, out_lens)
    return decoder(out.float().cpu(), out_lens.cpu())


def load_model(path):  # noqa: ANN001 - implemented with export
    raise NotImplementedError
