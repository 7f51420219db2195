"""GPU check (marked ``gpu``; skipped without CUDA): a few hundred bf16-mixed training steps of the
quickstart Conformer-Transducer with the torchaudio RNN-T loss, and of Conformer-CTC with adaptive
dropout. Run on a GPU machine with ``make test-gpu``; nothing else depends on it."""

from __future__ import annotations

import functools

import pytest
import torch

from conformer_prune.dropout import AdaptiveDropout
from conformer_prune.models import ConformerEncoder
from conformer_prune.models.ctc import CTCModel
from conformer_prune.models.transducer import TransducerModel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def encoder() -> ConformerEncoder:
    site = functools.partial(AdaptiveDropout)
    return ConformerEncoder(
        input_dim=80,
        d_model=144,
        num_layers=4,
        num_heads=4,
        d_ff=576,
        kernel_size=15,
        subsampling_channels=64,
        ffn_dropout=site,
        query_dropout=site,
        value_dropout=site,
        conv_dropout=site,
    )


def batch(device: str, vocab: int, n: int = 8, frames: int = 600, labels: int = 40) -> tuple:
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(n, frames, 80, generator=gen).to(device),
        torch.linspace(frames // 2, frames, n).long().to(device),
        torch.randint(1, vocab, (n, labels), generator=gen).to(device),
        torch.linspace(labels // 2, labels, n).long().to(device),
    )


@pytest.mark.parametrize("head", ["transducer", "ctc"])
def test_bf16_mixed_training_steps_on_cuda(head: str) -> None:
    torch.manual_seed(0)
    vocab = 64
    if head == "transducer":
        net = TransducerModel(encoder(), vocab, pred_dim=320, joint_dim=320, loss_backend="torchaudio")
    else:
        net = CTCModel(encoder(), vocab)
    net = net.cuda().train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    data = batch("cuda", vocab)
    losses = []
    for _ in range(300):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = net.loss(*data)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10  # it learns the fixed batch
