"""RNN-T loss: pure-PyTorch vs torchaudio parity, brute-force alignment sums, input validation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from conformer_prune.models.losses import rnnt_loss


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second intra-op thread only adds contention on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _loss_and_grad(logits: torch.Tensor, *args, backend: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().clone().requires_grad_(True)
    loss = rnnt_loss(x, *args, backend=backend, **kw)
    loss.sum().backward()
    return loss.detach(), x.grad


@pytest.mark.parametrize(
    ("shape", "t_lens", "u_lens"),
    [
        ((4, 20, 8, 12), [20, 13, 5, 1], [8, 3, 0, 5]),  # ragged; one utterance with no labels, one with T=1
        ((3, 40, 15, 30), [40, 40, 22], [15, 11, 15]),
    ],
)
def test_torch_backend_matches_torchaudio_loss_and_gradients(shape, t_lens, u_lens) -> None:
    B, T, U, V = shape
    torch.manual_seed(0)
    # padded past the longest utterance on both axes: the function slices the excess away
    logits = 3 * torch.randn(B, T + 2, U + 3, V)
    targets = torch.randint(1, V, (B, U + 1))
    targets[0, u_lens[0] :] = -1  # padding values past target_lengths are ignored
    args = (targets, torch.tensor(t_lens), torch.tensor(u_lens))
    for reduction in ("mean", "none"):
        ref, ref_grad = _loss_and_grad(logits, *args, backend="torchaudio", reduction=reduction)
        got, got_grad = _loss_and_grad(logits, *args, backend="torch", reduction=reduction)
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(got_grad, ref_grad, atol=1e-4, rtol=1e-4)


def test_torch_backend_equals_a_brute_force_sum_over_alignments() -> None:
    torch.manual_seed(1)
    T, U, V = 3, 2, 4
    logits = torch.randn(1, T, U + 1, V)
    y = [2, 3]
    lp = logits[0].log_softmax(-1)
    # an alignment: T blanks and U labels, the last step a blank at (T-1, U); choose label positions
    total = []
    for emit_at in itertools.combinations(range(T + U - 1), U):
        t = u = 0
        score = 0.0
        for step in range(T + U - 1):
            if step in emit_at:
                score += lp[t, u, y[u]].item()
                u += 1
            else:
                score += lp[t, u, 0].item()
                t += 1
        total.append(score + lp[T - 1, U, 0].item())
    expected = -math.log(sum(math.exp(s) for s in total))
    got = rnnt_loss(logits, torch.tensor([y]), torch.tensor([T]), torch.tensor([U]), backend="torch")
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_losses_stay_finite_for_large_logits() -> None:
    torch.manual_seed(2)
    B, T, U, V = 2, 60, 20, 16
    logits = (30 * torch.randn(B, T, U + 1, V)).requires_grad_(True)
    loss = rnnt_loss(logits, torch.randint(1, V, (B, U)), torch.tensor([T, 31]), torch.tensor([U, 7]), backend="torch")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_mean_reduction_averages_per_utterance_nll() -> None:
    torch.manual_seed(3)
    logits = torch.randn(3, 6, 4, 5)
    args = (torch.randint(1, 5, (3, 3)), torch.tensor([6, 4, 2]), torch.tensor([3, 1, 2]))
    per_utt = rnnt_loss(logits, *args, backend="torch", reduction="none")
    assert per_utt.shape == (3,)
    assert rnnt_loss(logits, *args, backend="torch").item() == pytest.approx(per_utt.mean().item(), rel=1e-6)
    assert rnnt_loss(logits, *args, backend="torch", reduction="sum").item() == pytest.approx(
        per_utt.sum().item(), rel=1e-6
    )


def test_auto_backend_on_cpu_is_the_pure_torch_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchaudio.functional

    def fail(*args, **kw):
        raise AssertionError("torchaudio must not be called on CPU with backend='auto'")

    monkeypatch.setattr(torchaudio.functional, "rnnt_loss", fail)
    logits = torch.randn(1, 4, 3, 5)
    assert torch.isfinite(rnnt_loss(logits, torch.tensor([[1, 2]]), torch.tensor([4]), torch.tensor([2])))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(logits=torch.randn(2, 5, 4)), "logits must be"),
        (dict(targets=torch.ones(3, 3, dtype=torch.long)), "targets must be"),
        (dict(targets=torch.ones(2, 3)), "integer"),
        (dict(logit_lengths=torch.tensor([6, 5])), "logit_lengths must lie"),
        (dict(logit_lengths=torch.tensor([0, 5])), "logit_lengths must lie"),
        (dict(target_lengths=torch.tensor([4, 1])), "target_lengths must lie"),
        (dict(target_lengths=torch.tensor([1])), "target_lengths must have shape"),
        (dict(blank=7), "blank=7"),
        (dict(backend="cuda"), "backend must be"),
        (dict(reduction="avg"), "reduction must be"),
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(change: dict, message: str) -> None:
    kw = dict(
        logits=torch.randn(2, 5, 4, 7),
        targets=torch.ones(2, 3, dtype=torch.long),
        logit_lengths=torch.tensor([5, 3]),
        target_lengths=torch.tensor([3, 1]),
    )
    kw.update(change)
    with pytest.raises(ValueError, match=message):
        rnnt_loss(**kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torchaudio_on_cuda_matches_pure_torch_on_cpu() -> None:
    torch.manual_seed(4)
    B, T, U, V = 4, 50, 20, 64
    logits = torch.randn(B, T, U + 1, V)
    args = (torch.randint(1, V, (B, U)), torch.tensor([50, 41, 20, 7]), torch.tensor([20, 9, 20, 3]))
    ref, ref_grad = _loss_and_grad(logits, *args, backend="torch")
    got, got_grad = _loss_and_grad(logits.cuda(), *(a.cuda() for a in args), backend="auto")
    torch.testing.assert_close(got.cpu(), ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(got_grad.cpu(), ref_grad, atol=1e-4, rtol=1e-4)
