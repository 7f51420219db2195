"""The keep logits' own optimiser and schedule: exact updates, one checkpoint, exact resume."""

from __future__ import annotations

import functools

import pytest
import torch

from conformer_prune.tasks.lr import warmup_cosine
from conformer_prune.tasks.optim import CombinedOptimizer, build_optimizer, build_scheduler
from tests.unit.tasks.test_task import make_batch, make_task

SGD = functools.partial(torch.optim.SGD, lr=0.5, momentum=0.0)


def _logits(task) -> list[torch.nn.Parameter]:
    return [s.keep_logits for s in task.sites()]


def test_logits_get_plain_sgd_and_weights_adamw() -> None:
    torch.manual_seed(0)
    task = make_task()
    optimizer, is_logit = build_optimizer(task.net, _logits(task), task.optimizer_factory, SGD)
    assert isinstance(optimizer, CombinedOptimizer) and is_logit == [False, False, True]
    assert [type(o) for o in optimizer.optimizers] == [torch.optim.AdamW, torch.optim.SGD]
    before = [p.detach().clone() for p in _logits(task)]
    weight = task.net.head.weight
    weight_before = weight.detach().clone()
    task.net.train()
    batch = make_batch()
    loss = task.compute_loss(batch) + task.penalty()
    loss.backward()
    grads = [p.grad.clone() for p in _logits(task)]
    optimizer.step()
    for b, g, p in zip(before, grads, _logits(task), strict=True):
        torch.testing.assert_close(p.detach(), b - 0.5 * g)  # SGD: exactly lr x gradient
    # AdamW's first step moves every weight by about lr whatever its gradient's scale
    step = (weight.detach() - weight_before).abs()
    assert step.max() == pytest.approx(1e-3, rel=0.05)


def test_without_a_logit_optimizer_the_logits_join_the_weights_at_a_scaled_lr() -> None:
    task = make_task()
    optimizer, is_logit = build_optimizer(task.net, _logits(task), task.optimizer_factory, None, 7.0)
    assert isinstance(optimizer, torch.optim.AdamW) and is_logit == [False, False, True]
    assert optimizer.param_groups[2]["lr"] == pytest.approx(7e-3)


def test_logit_schedule_is_independent_of_the_weights() -> None:
    task = make_task()
    optimizer, is_logit = build_optimizer(task.net, _logits(task), task.optimizer_factory, SGD)
    scheduler = build_scheduler(optimizer, is_logit, 100, functools.partial(warmup_cosine, warmup_steps=10), None)
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs[0] == pytest.approx(1e-4) and lrs[2] == pytest.approx(0.5)  # weights warm up, logits do not
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] < 1e-3 and optimizer.param_groups[2]["lr"] == pytest.approx(0.5)


def _train(task, optimizer, scheduler, batches: list[int]) -> None:
    task.net.train()
    for i in batches:
        torch.manual_seed(i)  # the task seeds the dropout noise per step the same way
        optimizer.zero_grad()
        (task.compute_loss(make_batch(seed=i)) + task.penalty()).backward()
        optimizer.step()
        scheduler.step()


def _setup(task):
    momentum = functools.partial(torch.optim.SGD, lr=0.3, momentum=0.9)
    optimizer, is_logit = build_optimizer(task.net, _logits(task), task.optimizer_factory, momentum)
    schedule = functools.partial(warmup_cosine, warmup_steps=2)
    return optimizer, build_scheduler(optimizer, is_logit, 8, schedule, schedule)


def test_state_dict_round_trip_continues_exactly() -> None:
    """Both optimisers' states (Adam moments, SGD momentum) travel in one state dict."""
    torch.manual_seed(0)
    full = make_task()
    opt, sched = _setup(full)
    _train(full, opt, sched, range(8))

    torch.manual_seed(0)
    part = make_task()
    opt, sched = _setup(part)
    _train(part, opt, sched, range(4))
    saved = {"net": part.net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}
    assert len(saved["opt"]["optimizers"]) == 2 and saved["opt"]["optimizers"][1]["state"]  # momentum buffers

    resumed = make_task()
    resumed.net.load_state_dict(saved["net"])
    opt, sched = _setup(resumed)
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    _train(resumed, opt, sched, range(4, 8))
    for a, b in zip(full.net.state_dict().values(), resumed.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # and the inner optimisers still see the groups the scheduler drives
    assert opt.param_groups[2] is opt.optimizers[1].param_groups[0]


def test_a_checkpoint_of_other_optimizers_is_refused() -> None:
    task = make_task()
    optimizer, _ = build_optimizer(task.net, _logits(task), task.optimizer_factory, SGD)
    with pytest.raises(ValueError, match="logit_optimizer"):
        optimizer.load_state_dict({"state": {}, "param_groups": []})
