"""CPU training precision: bf16-mixed only where the CPU has bf16 units, else fp32 with a warning."""

from __future__ import annotations

import pytest

from conformer_prune import precision
from conformer_prune.precision import training_precision


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_cpu_falls_back_to_fp32_without_bf16_units(monkeypatch, caplog, native: bool) -> None:
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    caplog.set_level("WARNING")
    got = training_precision({"accelerator": "cpu", "precision": "bf16-mixed"})
    assert got == ("bf16-mixed" if native else "32-true")
    assert ("without bf16 units" in caplog.text) is not native


def test_other_precisions_and_accelerators_pass_unchanged(monkeypatch) -> None:
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    assert training_precision({"accelerator": "cpu", "precision": "32-true"}) == "32-true"
    assert training_precision({"accelerator": "gpu", "precision": "bf16-mixed"}) == "bf16-mixed"


def test_the_cpu_probe_answers_a_bool() -> None:
    assert isinstance(precision.native_bf16_cpu(), bool)
