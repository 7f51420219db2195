"""Transducer: predictor/joiner shapes, config-driven sizes, loss, overfit, greedy and beam decoding."""

from __future__ import annotations

import pytest
import torch

from conformer_prune.models.losses import rnnt_loss
from conformer_prune.models.transducer import Joiner, Predictor, TransducerModel
from tests.helpers import StrideEncoder, single_thread  # noqa: F401  (autouse fixture)


def tiny_model(vocab_size: int = 6, **kw) -> TransducerModel:
    args = dict(pred_dim=24, joint_dim=24)
    args.update(kw)
    return TransducerModel(StrideEncoder(d_model=32), vocab_size, **args)


def test_predictor_step_reproduces_teacher_forcing() -> None:
    torch.manual_seed(0)
    pred = Predictor(vocab_size=7, pred_dim=10, num_layers=2).eval()
    tokens = torch.tensor([[3, 1, 4], [2, 6, 0]])
    full = pred(tokens, torch.tensor([3, 2]))
    assert full.shape == (2, 4, 10)
    out, state = pred.step(torch.zeros(2, dtype=torch.long))  # blank starts the sequence
    steps = [out]
    for u in range(3):
        out, state = pred.step(tokens[:, u], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1)[0], full[0])
    torch.testing.assert_close(torch.stack(steps, 1)[1, :3], full[1, :3])  # past token_lens: padding


def test_joiner_broadcasts_to_the_lattice() -> None:
    joiner = Joiner(enc_dim=5, pred_dim=3, joint_dim=4, vocab_size=9)
    logits = joiner(torch.randn(2, 7, 1, 5), torch.randn(2, 1, 4, 3))
    assert logits.shape == (2, 7, 4, 9)


@pytest.mark.parametrize(("d_model", "pred_dim", "joint_dim"), [(144, 320, 320), (256, 640, 640)])
def test_decoder_and_joiner_sizes_come_from_the_arguments(d_model: int, pred_dim: int, joint_dim: int) -> None:
    """Gulati et al. 2020, Table 1: 1-layer LSTM decoder of 320 (S) / 640 (M, L), vocabulary 1024."""
    V = 1024
    encoder = StrideEncoder(d_model=d_model)
    model = TransducerModel(encoder, V, pred_dim=pred_dim, pred_layers=1, joint_dim=joint_dim)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    lstm = 4 * pred_dim * (pred_dim + pred_dim) + 8 * pred_dim  # W_ih, W_hh, b_ih, b_hh
    assert count(model.predictor) == V * pred_dim + lstm
    assert count(model.joiner) == (d_model + 1) * joint_dim + (pred_dim + 1) * joint_dim + (joint_dim + 1) * V
    assert count(model) == count(encoder) + count(model.predictor) + count(model.joiner)


def test_loss_is_finite_and_backends_agree() -> None:
    torch.manual_seed(1)
    model = tiny_model()
    feats, feat_lens = torch.randn(3, 20, 8), torch.tensor([20, 15, 9])
    tokens, token_lens = torch.tensor([[1, 2, 3, 4], [5, 1, -1, -1], [2, 2, 2, 0]]), torch.tensor([4, 2, 3])
    loss = model.loss(feats, feat_lens, tokens, token_lens)
    assert torch.isfinite(loss)
    model.loss_backend = "torchaudio"
    assert model.loss(feats, feat_lens, tokens, token_lens).item() == pytest.approx(loss.item(), abs=1e-4)


def test_overfits_two_utterances_and_both_decoders_recover_them() -> None:
    torch.manual_seed(2)
    model = tiny_model()
    feats, feat_lens = torch.randn(2, 24, 8), torch.tensor([24, 18])
    transcripts = [[1, 2, 2, 3, 4], [5, 4, 1]]
    tokens, token_lens = torch.tensor([[1, 2, 2, 3, 4], [5, 4, 1, 0, 0]]), torch.tensor([5, 3])
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(120):
        loss = model.loss(feats, feat_lens, tokens, token_lens)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    model.eval()
    enc, enc_lens = model(feats, feat_lens)
    assert model.greedy_decode(enc, enc_lens) == transcripts
    assert model.beam_search(enc, enc_lens, beam_size=4) == transcripts


def test_auxiliary_ctc_loss_adds_its_weighted_per_utterance_nll() -> None:
    torch.manual_seed(5)
    feats, feat_lens = torch.randn(2, 24, 8), torch.tensor([24, 18])
    tokens, token_lens = torch.tensor([[1, 2, 2, 3, 4], [5, 4, 1, 0, 0]]), torch.tensor([5, 3])
    plain = tiny_model(loss_backend="torch")
    assert plain.ctc_head is None
    aux = tiny_model(loss_backend="torch", ctc_weight=0.3)
    aux.load_state_dict({**plain.state_dict(), **{f"ctc_head.{k}": v for k, v in aux.ctc_head.state_dict().items()}})
    enc, enc_lens = aux(feats, feat_lens)
    log_probs = aux.ctc_head(enc).log_softmax(-1)  # (B, T', V)
    per_utt = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), tokens, enc_lens, token_lens, reduction="none", zero_infinity=True
    )
    expected = plain.loss(feats, feat_lens, tokens, token_lens) + 0.3 * per_utt.mean()
    torch.testing.assert_close(aux.loss(feats, feat_lens, tokens, token_lens), expected)
    with pytest.raises(ValueError, match="ctc_weight"):
        tiny_model(ctc_weight=-0.1)


def test_batched_greedy_equals_one_utterance_at_a_time() -> None:
    torch.manual_seed(3)
    model = tiny_model(vocab_size=5).eval()
    enc = 3 * torch.randn(3, 9, 32)
    enc_lens = torch.tensor([9, 4, 7])
    batched = model.greedy_decode(enc, enc_lens, max_symbols_per_frame=3)
    single = [model.greedy_decode(enc[b : b + 1, :n], torch.tensor([n]), 3)[0] for b, n in enumerate([9, 4, 7])]
    assert batched == single
    assert any(batched)  # the random model emits something, so the comparison means something


def test_exhaustive_beam_scores_are_exact_sequence_log_probs() -> None:
    """With a beam above the number of reachable sequences, a sequence no longer than the per-frame cap
    scores its exact log P(y | x) (summed over all alignments), which the RNN-T loss also computes."""
    torch.manual_seed(4)
    model = tiny_model(vocab_size=3).eval()
    enc = 2 * torch.randn(2, 32)  # T'=2 frames; labels {1, 2}
    nbest = model.beam_search_nbest(enc, beam_size=100, max_symbols_per_frame=2)
    assert len(nbest) == 1 + 2 + 4 + 8 + 16  # every sequence of up to 4 labels survives
    assert [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)
    checked = 0
    for labels, score in nbest:
        if len(labels) > 2:
            continue
        with torch.no_grad():
            pred = model.predictor(torch.tensor([labels or [0]]))[:, : len(labels) + 1]  # (1, U+1, P)
            logits = model.joiner(enc[None, :, None], pred[:, None])  # (1, T', U+1, V)
            nll = rnnt_loss(logits, torch.tensor([labels or [0]]), torch.tensor([2]), torch.tensor([len(labels)]))
        assert score == pytest.approx(-nll.item(), abs=1e-4)
        checked += 1
    assert checked == 7


def sequence_log_prob(model: TransducerModel, enc: torch.Tensor, labels: list[int]) -> float:
    """Exact ``log P(labels | enc)`` of one utterance ``enc (T', D)``, summed over alignments (RNN-T loss)."""
    with torch.no_grad():
        tokens = torch.tensor([labels or [0]])
        pred = model.predictor(tokens)[:, : len(labels) + 1]  # (1, U+1, P)
        logits = model.joiner(enc[None, :, None], pred[:, None])  # (1, T', U+1, V)
        lengths = torch.tensor([enc.size(0)]), torch.tensor([len(labels)])
        return -rnnt_loss(logits, tokens, *lengths).item()


def test_beam_search_finds_sequences_at_least_as_probable_as_greedy() -> None:
    """The search itself, on models whose answer is checkable: on 30 random blank-leaning models (like a trained
    one), beam 8 never returns a label sequence less probable than greedy's, and is more probable on most."""
    better = 0
    for seed in range(30):
        torch.manual_seed(seed)
        model = tiny_model(vocab_size=6, pred_dim=16, joint_dim=16).eval()
        with torch.no_grad():
            model.joiner.out.bias[0] += 1.5
        enc = 2.5 * torch.randn(1, 12, 32)
        lens = torch.tensor([12])
        greedy = model.greedy_decode(enc, lens, max_symbols_per_frame=3)[0]
        beam = model.beam_search(enc, lens, beam_size=8, max_symbols_per_frame=3)[0]
        greedy_lp, beam_lp = sequence_log_prob(model, enc[0], greedy), sequence_log_prob(model, enc[0], beam)
        assert beam_lp >= greedy_lp - 1e-5, (seed, greedy, beam)
        better += beam_lp > greedy_lp + 1e-5
    assert better >= 20


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(vocab_size=1), "vocab_size"),
        (dict(blank=6), "blank=6"),
        (dict(loss_backend="warp"), "loss_backend"),
        (dict(joint_dim=0), "joint_dim"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_model(**kwargs)


def test_bad_decoding_arguments_raise() -> None:
    model = tiny_model().eval()
    enc, lens = torch.randn(1, 3, 32), torch.tensor([3])
    with pytest.raises(ValueError, match="max_symbols_per_frame"):
        model.greedy_decode(enc, lens, max_symbols_per_frame=0)
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(enc, lens, beam_size=0)
