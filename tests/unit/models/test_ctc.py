"""CTC model: shapes, the documented loss normalisation, two-utterance overfit, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conformer_prune.models.ctc import CTCModel, ctc_greedy_ids
from tests.helpers import StrideEncoder, single_thread  # noqa: F401  (autouse fixture)


def test_forward_gives_normalised_log_probs_and_lengths() -> None:
    torch.manual_seed(0)
    model = CTCModel(StrideEncoder(), vocab_size=7)
    log_probs, out_lens = model(torch.randn(2, 21, 8), torch.tensor([21, 12]))
    assert log_probs.shape == (2, 11, 7) and out_lens.tolist() == [11, 6]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 11))


def test_loss_is_the_mean_over_utterances_of_nll_per_target_token() -> None:
    torch.manual_seed(1)
    model = CTCModel(StrideEncoder(), vocab_size=7)
    feats, feat_lens = torch.randn(2, 21, 8), torch.tensor([21, 15])
    tokens, token_lens = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]]), torch.tensor([4, 2])
    log_probs, out_lens = model(feats, feat_lens)
    nll = F.ctc_loss(log_probs.transpose(0, 1), tokens, out_lens, token_lens, reduction="none")
    expected = (nll / token_lens).mean()
    assert model.loss(feats, feat_lens, tokens, token_lens).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unalignable_utterance_gives_a_finite_loss() -> None:
    torch.manual_seed(2)
    model = CTCModel(StrideEncoder(), vocab_size=5)
    # 3 encoder frames cannot carry 6 labels: infinite NLL, zeroed
    loss = model.loss(torch.randn(1, 5, 8), torch.tensor([5]), torch.tensor([[1, 2, 3, 4, 1, 2]]), torch.tensor([6]))
    assert torch.isfinite(loss)


def test_greedy_ids_merge_repeats_and_drop_blanks() -> None:
    best = torch.tensor([[0, 3, 3, 0, 3, 2, 2, 0, 1]])
    log_probs = F.one_hot(best, 4).float().log()
    assert ctc_greedy_ids(log_probs, torch.tensor([9])) == [[3, 3, 2, 1]]
    assert ctc_greedy_ids(log_probs, torch.tensor([4])) == [[3]]


def test_overfits_two_utterances() -> None:
    torch.manual_seed(3)
    model = CTCModel(StrideEncoder(), vocab_size=6)
    feats, feat_lens = torch.randn(2, 30, 8), torch.tensor([30, 24])
    tokens, token_lens = torch.tensor([[1, 2, 2, 3, 4], [5, 4, 1, 0, 0]]), torch.tensor([5, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = model.loss(feats, feat_lens, tokens, token_lens)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    model.eval()
    log_probs, out_lens = model(feats, feat_lens)
    assert model.greedy_decode(log_probs, out_lens) == [[1, 2, 2, 3, 4], [5, 4, 1]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(vocab_size=1), "vocab_size"), (dict(vocab_size=5, blank=5), "blank=5")],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CTCModel(StrideEncoder(), **kwargs)


def test_encoder_without_d_model_is_rejected() -> None:
    with pytest.raises(ValueError, match="d_model"):
        CTCModel(nn.Identity(), vocab_size=5)
