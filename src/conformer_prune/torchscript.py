"""TorchScript of a compacted model: a traced encoder + CTC head, or a transducer's encoder, joiner and
predictor step as methods of one traced module; checked against eager on another batch size and length.

Shapes: ``B`` batch, ``T`` frames, ``F`` features, ``D`` encoder dim, ``P`` predictor dim, ``L`` predictor
layers, ``N`` hypotheses, ``V`` vocab.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from conformer_prune.models.transducer import TransducerModel


class _TransducerScriptable(nn.Module):
    """A transducer's parts as traceable methods: ``forward`` (encoder), ``joint`` and ``predict``."""

    def __init__(self, net: TransducerModel) -> None:
        super().__init__()
        self.encoder, self.predictor, self.joiner = net.encoder, net.predictor, net.joiner

    def forward(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, T, F), (B,) -> (B, T', D), (B,)``."""
        return self.encoder(features, feature_lens)

    def joint(self, enc: Tensor, pred: Tensor) -> Tensor:
        """Logits of broadcastable ``(..., D)`` encoder and ``(..., P)`` predictor outputs → ``(..., V)``."""
        return self.joiner(enc, pred)

    def predict(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One predictor step: tokens ``(N,)``, state ``(L, N, P)`` each → ``(N, P)`` and the new state."""
        out, (h, c) = self.predictor.step(tokens, (h, c))
        return out, h, c


def example_inputs(input_dim: int, lens: list[int], seed: int) -> tuple[Tensor, Tensor]:
    """Seeded random features ``(B, T, F)`` of lengths ``lens`` and the lengths ``(B,)``: what the tracing
    exporters trace with, and a second batch of another size and length to check the trace on."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(len(lens), max(lens), input_dim, generator=gen), torch.tensor(lens)


@torch.no_grad()
def to_torchscript(net: nn.Module, input_dim: int, atol: float = 1e-4) -> torch.jit.ScriptModule:
    """TorchScript of a compacted model (encoder + CTC head; a transducer's encoder, joiner and predictor step).

    ``torch.jit.script`` cannot compile the encoder (its attention uses Python sets and star-unpacking),
    so the model is *traced*. The trace is checked against eager on a second batch with a different
    size and length, which catches any length baked in as a constant. A traced model skips the eager
    model's Python-level input checks (e.g. "utterance too short"): give it at least 7 frames.

    Raises:
        RuntimeError: the traced model disagrees with eager (an internal error: please report it).
    """
    net = net.eval()
    features, lens = example_inputs(input_dim, [160, 121], 0)
    check_features, check_lens = example_inputs(input_dim, [97, 211, 64], 1)
    with warnings.catch_warnings():  # torch.jit deprecation / TracerWarnings: parity is checked below
        warnings.simplefilter("ignore")
        if isinstance(net, TransducerModel):
            parts = _TransducerScriptable(net).eval()
            state = torch.zeros(net.predictor.num_layers, 2, net.predictor.pred_dim)
            enc = torch.randn(2, 5, 1, net.encoder.d_model)
            pred = torch.randn(2, 1, 3, net.predictor.pred_dim)
            inputs = {
                "forward": (features, lens),
                "joint": (enc, pred),
                "predict": (torch.tensor([0, 1]), state, state),
            }
            traced = torch.jit.trace_module(parts, inputs, check_trace=False)
            pairs = [(traced.joint(enc[:1, :3], pred[:1]), parts.joint(enc[:1, :3], pred[:1]))]
        else:
            traced = torch.jit.trace(net, (features, lens), check_trace=False)
            pairs = []
    (out, out_lens), (ref, ref_lens) = traced(check_features, check_lens), net(check_features, check_lens)
    pairs.append((out, ref))
    if not torch.equal(out_lens, ref_lens) or any(
        a.shape != b.shape or not torch.allclose(a, b, atol=atol, rtol=0) for a, b in pairs
    ):
        raise RuntimeError("the traced model disagrees with eager on a second input length")
    return traced
