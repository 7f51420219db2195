"""SharedScaleSGD: SGD's directions with one step scale for all keep logits, in logit units per step."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from conformer_prune.pruning.logit_sgd import SharedScaleSGD


def one_step(grads: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    optimizer = SharedScaleSGD(params, **kwargs)
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    optimizer.step()
    return [p.detach().clone() for p in params]


def test_every_unit_moves_in_proportion_to_its_gradient_on_one_scale() -> None:
    grads = [torch.tensor([1.0, -2.0, 0.5]), torch.tensor([4.0])]  # two groups' worth of logits
    steps = one_step(grads, lr=0.1)
    flat_grad, flat_step = torch.cat(grads), torch.cat(steps)
    ratio = -flat_step / flat_grad
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0])))  # SGD's direction, one scale
    rms = flat_grad.pow(2).mean().sqrt()
    torch.testing.assert_close(flat_step, -0.1 * flat_grad / rms)  # a gradient at the RMS moves lr


def test_the_step_size_does_not_depend_on_the_loss_scale() -> None:
    grads = [torch.tensor([1.0, -2.0, 0.5])]
    big = one_step(grads, lr=0.05)
    tiny = one_step([g * 1e-5 for g in grads], lr=0.05)  # a per-token CTC loss's logit gradients
    torch.testing.assert_close(big, tiny, rtol=1e-4, atol=0)


def test_walk_holds_a_pure_noise_logits_spread_whatever_the_run_length() -> None:
    torch.manual_seed(0)
    spreads = {}
    for total in (100, 1600):
        logits = torch.zeros(4000, requires_grad=True)
        optimizer = SharedScaleSGD([logits], walk=2.0, total_steps=total)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 / math.sqrt(total))
        for _ in range(total):
            logits.grad = torch.randn(4000)  # zero-mean gradient: noise only
            optimizer.step()
        spreads[total] = float(logits.detach().std())
    assert spreads[100] == pytest.approx(2.0, rel=0.08) and spreads[1600] == pytest.approx(2.0, rel=0.08)


def test_a_consistent_gradient_drifts_further_in_a_longer_run() -> None:
    """Drift ∝ lr · steps = walk · sqrt(steps): the signal grows against the fixed noise walk."""
    drift = {}
    for total in (100, 1600):
        logit = torch.zeros(1, requires_grad=True)
        optimizer = SharedScaleSGD([logit], walk=2.0, total_steps=total)
        for _ in range(total):
            logit.grad = torch.ones(1)
            optimizer.step()
        drift[total] = -float(logit.detach())
    assert drift[1600] / drift[100] == pytest.approx(4.0, rel=1e-3)


def test_lr_or_walk_and_a_clear_error_otherwise() -> None:
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="lr or walk"):
        SharedScaleSGD(params)
    with pytest.raises(ValueError, match="lr or walk"):
        SharedScaleSGD(params, lr=0.1, walk=2.0, total_steps=10)
    with pytest.raises(ValueError, match="set trainer.max_steps"):
        SharedScaleSGD(params, walk=2.0, total_steps=-1)
    with pytest.raises(ValueError, match="lr > 0"):
        SharedScaleSGD(params, lr=-1.0)


def test_state_dict_carries_the_shared_scale() -> None:
    torch.manual_seed(0)
    grads = [torch.randn(5) for _ in range(3)]
    a = torch.zeros(5, requires_grad=True)
    first = SharedScaleSGD([a], lr=0.1, momentum=0.5)
    for g in grads[:2]:
        a.grad = g.clone()
        first.step()
    b = a.detach().clone().requires_grad_(True)
    second = SharedScaleSGD([b], lr=0.1, momentum=0.5)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # as a checkpoint holds it
    a.grad, b.grad = grads[2].clone(), grads[2].clone()
    first.step()
    second.step()
    torch.testing.assert_close(a, b)
