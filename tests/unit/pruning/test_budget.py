"""The parameter budget: closed-form counts, per-unit costs, and the controller on a tiny model."""

from __future__ import annotations

import functools

import pytest
import torch

from conformer_prune.dropout import AdaptiveDropout
from conformer_prune.models import ConformerEncoder
from conformer_prune.models.ctc import CTCModel
from conformer_prune.pruning.budget import ParamBudget
from conformer_prune.pruning.compact import compact_copy, count_params, params_if_compacted
from conformer_prune.pruning.logit_sgd import SharedScaleSGD
from conformer_prune.tasks.optim import build_optimizer
from tests.helpers import single_thread  # noqa: F401 - autouse fixture
from tests.unit.tasks.test_task import make_batch, make_task


def _net(seed: int) -> CTCModel:
    torch.manual_seed(seed)
    adaptive = functools.partial(AdaptiveDropout, threshold=0.5)
    enc = ConformerEncoder(
        input_dim=20, d_model=16, num_layers=2, num_heads=2, d_ff=24, kernel_size=3, subsampling_channels=4,
        ffn_dropout=adaptive, query_dropout=adaptive, value_dropout=adaptive, conv_dropout=adaptive,
    )  # fmt: skip
    return CTCModel(enc, vocab_size=10).eval()


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_count_equals_the_compacted_model(seed: int) -> None:
    net = _net(seed)
    gen = torch.Generator().manual_seed(seed)
    for site in net.encoder.sites():
        with torch.no_grad():
            site.module.keep_logits.copy_(torch.randn(site.module.num_units, generator=gen) * 2)
    if seed % 2:  # a head with no value dim left also loses its query dims
        with torch.no_grad():
            net.encoder.layers[0].attn.value_dropout.keep_logits[:8].fill_(-5.0)
    assert params_if_compacted(net) == count_params(compact_copy(net))


def test_unit_costs_are_what_compaction_removes() -> None:
    net = _net(0)
    dense = count_params(compact_copy(net))
    for site in net.encoder.sites():
        with torch.no_grad():
            site.module.keep_logits[0] = -5.0
        assert dense - count_params(compact_copy(net)) == site.unit_cost, site.name
        with torch.no_grad():
            site.module.keep_logits[0] = 2.2


def test_multiplier_rises_above_the_target_and_falls_below() -> None:
    net = _net(0)
    budget = ParamBudget(0.5, start_frac=0.0, end_frac=0.5, ki=2.0, kp=0.0)
    budget.bind(net)
    start = float(budget.log_integral)
    budget.update(net, step=100, total_steps=100)  # dense, target half: above it
    assert float(budget.log_integral) > start
    for site in net.encoder.sites():
        with torch.no_grad():
            site.module.keep_logits.fill_(-5.0)
    raised = float(budget.log_integral)
    budget.update(net, step=100, total_steps=100)  # everything pruned: below it
    assert float(budget.log_integral) < raised
    assert float(budget.log_integral) >= budget.log_floor


def test_pull_per_unit_is_proportional_to_its_cost() -> None:
    net = _net(0)
    budget = ParamBudget(0.5, start_frac=0.0, end_frac=0.0)
    budget.bind(net)
    term, _ = budget.penalty(net, step=10, total_steps=10)
    term.backward()
    for site in net.encoder.sites():
        grad = site.module.keep_logits.grad / torch.sigmoid(site.module.keep_logits).mul(
            1 - torch.sigmoid(site.module.keep_logits)
        )
        torch.testing.assert_close(grad, torch.full_like(grad, float(grad[0])))
    costs = {s.kind: s.unit_cost for s in net.encoder.sites()}
    assert len(set(costs.values())) > 1  # the sites do differ in cost
    g = {s.kind: float(s.module.keep_logits.grad[0]) for s in net.encoder.sites()[:5]}
    assert g["ffn1"] / g["query"] == pytest.approx(costs["ffn1"] / costs["query"], rel=1e-4)


def test_bad_targets_name_the_key() -> None:
    with pytest.raises(ValueError, match="target_params"):
        ParamBudget(-1.0)
    budget = ParamBudget(10.0)
    with pytest.raises(ValueError, match="target_params"):
        budget.bind(_net(0))  # below what removing every unit leaves


@pytest.mark.parametrize("target", [0.7, 0.3])
def test_tiny_model_reaches_the_requested_size(target: float) -> None:
    """150 steps of a tiny CTC model with no alpha prior: the budget alone prunes it to ±3 % of the target."""
    torch.manual_seed(0)
    task = make_task(alpha=0.0)
    budget = ParamBudget(target, start_frac=0.1, end_frac=0.6)
    budget.bind(task.net)
    logits = [s.keep_logits for s in task.sites()]
    optimizer, _ = build_optimizer(task.net, logits, task.optimizer_factory, functools.partial(SharedScaleSGD, lr=0.05))
    batches = [make_batch(seed=i) for i in range(8)]
    steps = 150
    task.net.train()
    for step in range(steps):
        torch.manual_seed(step)
        optimizer.zero_grad()
        term, _ = budget.penalty(task.net, step, steps)
        (task.compute_loss(batches[step % 8]) + term).backward()
        optimizer.step()
        hard = budget.update(task.net, step + 1, steps)
    assert abs(hard - budget.target_params) / budget.target_params <= 0.03
    assert hard == count_params(compact_copy(task.net.eval()))
