"""Schedules are pure, bounded and monotone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformer_prune.dropout import RetentionTargetSchedule, TemperatureSchedule
from conformer_prune.dropout.adaptive import logit

SHAPES = ["constant", "linear", "exponential", "cosine"]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    tau_start=st.floats(0.05, 5.0),
    tau_end=st.floats(0.05, 5.0),
    total=st.integers(1, 10_000),
    steps=st.lists(st.integers(0, 12_000), min_size=2, max_size=20),
    start_frac=st.floats(0.0, 0.5),
    span=st.floats(0.0, 0.5),
)
def test_temperature_is_pure_bounded_and_monotone(shape, tau_start, tau_end, total, steps, start_frac, span) -> None:
    schedule = TemperatureSchedule(tau_start, tau_end, shape, start_frac, start_frac + span)
    values = [schedule(s, total) for s in sorted(steps)]
    assert values == [schedule(s, total) for s in sorted(steps)]  # pure
    lo, hi = min(tau_start, tau_end), max(tau_start, tau_end)
    if shape == "constant":
        assert all(v == tau_start for v in values)
        return
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in values)
    diffs = [b - a for a, b in zip(values, values[1:])]
    if tau_end <= tau_start:
        assert all(d <= 1e-9 for d in diffs)  # non-increasing when annealing down
    else:
        assert all(d >= -1e-9 for d in diffs)
    assert schedule(0, total) == pytest.approx(tau_start) or start_frac == 0.0 and span == 0.0


def test_temperature_endpoints() -> None:
    schedule = TemperatureSchedule(1.0, 0.5, "exponential", 0.0, 1.0)
    assert schedule(0, 100) == pytest.approx(1.0)
    assert schedule(50, 100) == pytest.approx(0.5**0.5)
    assert schedule(100, 100) == pytest.approx(0.5)
    assert schedule(500, 100) == pytest.approx(0.5)


def test_retention_target_holds_then_falls_then_holds() -> None:
    schedule = RetentionTargetSchedule(init_keep_prob=0.9, end_logit=-6.0, start_frac=0.1, end_frac=0.6)
    assert schedule(0, 1000) == pytest.approx(logit(0.9))
    assert schedule(100, 1000) == pytest.approx(logit(0.9))
    assert schedule(350, 1000) == pytest.approx((logit(0.9) - 6.0) / 2)
    assert schedule(600, 1000) == pytest.approx(-6.0)
    assert schedule(1000, 1000) == pytest.approx(-6.0)


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: TemperatureSchedule(0.0, 1.0), "temperatures"),
        (lambda: TemperatureSchedule(1.0, 0.5, "sawtooth"), "shape"),
        (lambda: TemperatureSchedule(1.0, 0.5, "linear", 0.7, 0.2), "start_frac"),
        (lambda: RetentionTargetSchedule(init_keep_prob=1.0), "init_keep_prob"),
        (lambda: RetentionTargetSchedule(shape="exponential"), "exponential"),
    ],
)
def test_bad_schedule_settings_are_named(build, key) -> None:
    with pytest.raises(ValueError, match=key):
        build()
