"""The contract battery every unit-dropout strategy must pass."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from conformer_prune.dropout import (
    AdaptiveDropout,
    NoDropout,
    StandardDropout,
    TargetScheduled,
    TemperatureScheduled,
    UnitDropout,
)
from conformer_prune.sites import config_keys

CONF = Path(__file__).resolve().parents[3] / "conf"


def shipped_strategies() -> dict[str, functools.partial]:
    """Every distinct strategy factory of every ``conf/dropout`` option, as the training config builds it."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    found: dict[str, functools.partial] = {}
    for option in sorted(p.stem for p in (CONF / "dropout").glob("*.yaml")):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[f"dropout={option}"])
        for key in config_keys():
            factory = instantiate(cfg.dropout[key])
            name = f"{option}.{key}"
            if not any(f.func is factory.func and f.keywords == factory.keywords for f in found.values()):
                found[name] = factory
    return found


STRATEGIES = {
    **shipped_strategies(),
    # settings the options do not ship, each a separate code path
    "adaptive_st_utt": functools.partial(AdaptiveDropout, straight_through=True, noise="utterance"),
    "adaptive_element_inverted_hard": functools.partial(
        AdaptiveDropout, noise="element", inverted=True, eval_mode="hard"
    ),
    "standard_p0.3": functools.partial(StandardDropout, drop_prob=0.3),
}


def test_every_strategy_class_of_the_package_ships_with_a_config_option() -> None:
    """A new strategy is one class + one conf/dropout YAML: the battery then runs on it from that YAML."""
    import conformer_prune.dropout as package

    def subclasses(cls: type) -> set[type]:
        return {c for sub in cls.__subclasses__() for c in {sub, *subclasses(sub)}}

    ours = {c for c in subclasses(UnitDropout) if c.__module__.startswith(package.__name__)}
    shipped = {f.func for f in shipped_strategies().values()}
    assert ours <= shipped, sorted(c.__name__ for c in ours - shipped)


@pytest.fixture(params=list(STRATEGIES), ids=list(STRATEGIES))
def make(request):
    return STRATEGIES[request.param]


def test_shape_is_preserved(make) -> None:
    site = make(7)
    x = torch.randn(3, 5, 7)
    assert site(x).shape == x.shape
    assert site.eval()(x).shape == x.shape


def test_eval_is_deterministic_and_equals_the_gate(make) -> None:
    site = make(7).eval()
    x = torch.randn(3, 5, 7)
    torch.testing.assert_close(site(x), site(x))
    torch.testing.assert_close(site(x), x * site.eval_gate())
    assert site.eval_gate().shape == (7,)


def test_penalty_is_a_finite_scalar(make) -> None:
    penalty = make(7).penalty()
    assert penalty.dim() == 0 and torch.isfinite(penalty)


def test_state_dict_round_trips(make) -> None:
    """Every parameter and buffer is randomised (a fixed mask too), then the schedules set on both copies as the
    schedule callbacks do each step: any other state that does not travel in the state dict shows in the gate."""
    a, b = make(7), make(7)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in [*a.parameters(), *a.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 2 + (0.1 if tensor.dim() == 0 else -1))
    b.load_state_dict(a.state_dict())
    for site in (a, b):
        if isinstance(site, TemperatureScheduled):
            site.set_temperature(0.5)
        if isinstance(site, TargetScheduled):
            site.set_target(-1.0)
    torch.testing.assert_close(a.eval_gate(), b.eval_gate())
    x = torch.randn(2, 7)
    torch.testing.assert_close(a.eval()(x), b.eval()(x))


def test_gradients_reach_learned_parameters(make) -> None:
    site = make(7).train()
    params = list(site.parameters())
    x = torch.randn(4, 9, 7, requires_grad=True)
    (site(x).pow(2).sum() + site.penalty()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_mask_like_is_what_forward_applies(make) -> None:
    site = make(7).train()
    x = torch.randn(2, 3, 7)
    torch.manual_seed(1)
    y = site(x)
    torch.manual_seed(1)
    if isinstance(site, StandardDropout):  # F.dropout draws differently; check the distribution only
        assert ((y == 0) | torch.isclose(y, x / (1 - site.drop_prob))).all()
    else:
        torch.testing.assert_close(y, x * site.mask_like(x))


def test_keep_probability_one_is_the_identity_in_training() -> None:
    for site in (StandardDropout(5, drop_prob=0.0), NoDropout(5)):
        x = torch.randn(4, 5)
        torch.testing.assert_close(site.train()(x), x)
    adaptive = AdaptiveDropout(5, init_keep_prob=1 - 1e-7, temperature=0.01)
    x = torch.randn(64, 5)
    torch.testing.assert_close(adaptive.train()(x), x, atol=1e-4, rtol=0)


def test_adaptive_mask_mean_matches_keep_probability() -> None:
    gen = torch.Generator().manual_seed(0)
    site = AdaptiveDropout(3, temperature=0.05).train()
    with torch.no_grad():
        site.keep_logits.copy_(torch.tensor([2.0, 0.0, -2.0]))
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    mask = site.mask_like(torch.ones(20000, 3))
    expected = torch.sigmoid(site.keep_logits.detach())
    # 20000 near-Bernoulli draws: std of the mean <= 0.0036; 5 sigma
    torch.testing.assert_close(mask.mean(0), expected, atol=0.02, rtol=0)


def test_utterance_noise_shares_one_mask_across_frames() -> None:
    site = AdaptiveDropout(4, noise="utterance").train()
    mask = site.mask_like(torch.ones(3, 10, 4))
    assert mask.shape == (3, 1, 4)


def test_adaptive_eval_gate_prunes_below_threshold() -> None:
    site = AdaptiveDropout(4, threshold=0.5, eval_mode="scale")
    with torch.no_grad():
        site.keep_logits.copy_(torch.tensor([3.0, 0.1, -0.1, -5.0]))
    gate = site.eval_gate()
    assert gate.tolist()[2:] == [0.0, 0.0]
    torch.testing.assert_close(gate[:2], torch.sigmoid(torch.tensor([3.0, 0.1])))
    site.eval_mode = "hard"
    assert site.eval_gate().tolist() == [1.0, 1.0, 0.0, 0.0]


def test_adaptive_penalty_pulls_toward_target() -> None:
    site = AdaptiveDropout(3, init_keep_prob=0.9)
    assert site.penalty().item() == pytest.approx(0.0, abs=1e-9)
    site.set_target(-1.0)
    beta = site.keep_logits.detach()
    assert site.penalty().item() == pytest.approx(((beta + 1.0) ** 2).sum().item())
    site.penalty().backward()
    assert (site.keep_logits.grad > 0).all()  # gradient descent lowers the logits


def test_schedule_state_is_not_checkpointed() -> None:
    site = AdaptiveDropout(3)
    site.set_temperature(0.3)
    site.set_target(-2.0)
    assert set(site.state_dict()) == {"keep_logits"}


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"init_keep_prob": 1.0}, "init_keep_prob"),
        ({"temperature": 0.0}, "temperature"),
        ({"noise": "frame"}, "noise"),
        ({"eval_mode": "soft"}, "eval_mode"),
        ({"threshold": 1.0}, "threshold"),
    ],
)
def test_bad_adaptive_settings_name_the_key(kwargs, key) -> None:
    with pytest.raises(ValueError, match=key):
        AdaptiveDropout(4, **kwargs)


def test_every_strategy_is_a_unit_dropout() -> None:
    for make in STRATEGIES.values():
        assert isinstance(make(3), UnitDropout)
