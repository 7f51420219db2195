"""The eval model is the mean of the training model, and the noise is float32 under autocast."""

from __future__ import annotations

import functools

import pytest
import torch

from conformer_prune.dropout.adaptive import AdaptiveDropout, expected_soft_mask
from conformer_prune.models.conformer import FeedForward

BETAS = torch.tensor([4.0, 2.197, 0.7, 0.1, -0.3, -2.0, -6.0])


def _monte_carlo_mean(site: AdaptiveDropout, x: torch.Tensor, draws: int) -> torch.Tensor:
    site.train()
    with torch.no_grad():
        return torch.stack([site(x) for _ in range(draws)]).mean(0)


@pytest.mark.parametrize("temperature", [2.0 / 3.0, 0.25, 1.0])
def test_quadrature_matches_a_fine_midpoint_rule(temperature: float) -> None:
    u = (torch.arange(400_000, dtype=torch.float64) + 0.5) / 400_000
    reference = torch.sigmoid((BETAS.double()[:, None] + torch.logit(u)[None, :]) / temperature).mean(1)
    torch.testing.assert_close(expected_soft_mask(BETAS, temperature).double(), reference, atol=5e-5, rtol=0)


def test_soft_mask_mean_is_not_the_keep_probability() -> None:
    """At τ = 2/3, σ = 0.9 gives E[m] = 0.855: why ``eval_mode="scale"`` is not the training mean."""
    expected = expected_soft_mask(torch.tensor([2.1972246, -2.1972246]), 2.0 / 3.0)
    torch.testing.assert_close(expected, torch.tensor([0.8547, 0.1453]), atol=5e-4, rtol=0)


@pytest.mark.parametrize(
    "make, rtol",
    [
        (functools.partial(AdaptiveDropout, noise="element"), 2e-3),
        (functools.partial(AdaptiveDropout, noise="utterance", temperature=0.4), 2e-3),
        (functools.partial(AdaptiveDropout, straight_through=True), 2e-3),
        # m / σ(β) is heavy-tailed for small σ(β): the Monte-Carlo mean itself is only good to ~1 %
        (functools.partial(AdaptiveDropout, inverted=True), 3e-2),
    ],
    ids=["element", "utterance_tau0.4", "straight_through", "inverted"],
)
def test_site_eval_output_is_the_monte_carlo_mean_of_training(make, rtol: float) -> None:
    torch.manual_seed(0)
    site = make(len(BETAS), threshold=0.0)
    with torch.no_grad():
        site.keep_logits.copy_(BETAS)
    x = torch.randn(64, 50, len(BETAS))  # (B, T, U)
    mc = _monte_carlo_mean(site, x, draws=400)  # 1.28M draws per unit
    site.eval()
    with torch.no_grad():
        evaluated = site(x)
    # per element: mean of 400 draws of x * m with m in [0, 1/σ]; compare the per-unit ratio over all elements
    ratio_mc = (mc * x).sum((0, 1)) / (x * x).sum((0, 1))
    ratio_eval = (evaluated * x).sum((0, 1)) / (x * x).sum((0, 1))
    torch.testing.assert_close(ratio_eval, ratio_mc, atol=4e-3, rtol=rtol)


def test_scale_mode_is_off_by_the_relaxation_bias() -> None:
    """The control: the old ``σ(β)`` gate misses the training mean by more than the tolerance above."""
    site = AdaptiveDropout(len(BETAS), threshold=0.0, eval_mode="scale")
    with torch.no_grad():
        site.keep_logits.copy_(BETAS)
    gap = (site.eval_gate() - site.expected_mask()).abs().max()
    assert gap > 0.03


def test_ffn_eval_output_is_the_monte_carlo_mean_of_training() -> None:
    """The FFN is linear after its mask, so its eval output is the mean of its training output."""
    torch.manual_seed(0)
    ffn = FeedForward(8, 6, 0.0, functools.partial(AdaptiveDropout, threshold=0.0))
    with torch.no_grad():
        ffn.unit_dropout.keep_logits.copy_(torch.tensor([3.0, 1.0, 0.2, -0.5, -1.5, -4.0]))
    x = torch.randn(16, 20, 8)
    ffn.train()
    with torch.no_grad():
        mc = torch.stack([ffn(x) for _ in range(3000)]).mean(0)
        ffn.eval()
        evaluated = ffn(x)
    torch.testing.assert_close(evaluated, mc, atol=1.5e-2, rtol=0)
    assert (evaluated - mc).abs().mean() < 2e-3


def test_noise_is_float32_under_bf16_autocast() -> None:
    """A unit at β = −6 fires (m > 0.5) with probability σ(−6) = 0.25 %. bf16 noise truncates the
    logistic tail near 5.5, so it would never fire; float32 noise does, at the right rate."""
    torch.manual_seed(0)
    site = AdaptiveDropout(1, noise="element").train()
    with torch.no_grad():
        site.keep_logits.fill_(-6.0)
    n = 400_000
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.nn.Linear(1, 1)(torch.ones(n, 1))
        assert x.dtype == torch.bfloat16
        mask = site.mask_like(x)
    assert mask.dtype == torch.bfloat16
    fired = int((mask > 0.5).sum())
    expected = n * float(torch.sigmoid(torch.tensor(-6.0)))  # 989, binomial std 31
    assert abs(fired - expected) < 5 * expected**0.5
