"""A new strategy is one class (+ one conf/dropout YAML): its metadata is all the rest of the code reads.

The toy strategy lives in the test tree only: a learned sigmoid gate with a threshold. The contract battery
passes on it, the report names it and tells its alpha sweep from seeds, the schedule callbacks leave its
temperature alone, and the exporter applies ``threshold=`` to it. The built-in L0 gates keep their own
concrete temperature while the Gumbel temperature of adaptive dropout is annealed.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch import Tensor, nn

from conformer_prune.callbacks import GumbelTemperature
from conformer_prune.dropout import AdaptiveDropout, HardConcreteGate, TemperatureSchedule, UnitDropout
from conformer_prune.sites import config_keys
from tests.unit.dropout import test_contract as contract


class ToyGate(UnitDropout):
    """``σ(β)`` multiplies each unit in training; in eval a unit below ``threshold`` is 0, the others ``σ(β)``."""

    label = "toy gate"
    role = "method"
    uses_alpha = True
    learns_retention = True

    def __init__(self, num_units: int, threshold: float = 0.5, temperature: float = 1.0) -> None:
        super().__init__(num_units)
        self.threshold = threshold
        self.keep_logits = nn.Parameter(torch.full((num_units,), 2.0))
        self.register_buffer("temperature", torch.tensor(temperature), persistent=False)

    def set_temperature(self, temperature: float) -> None:  # it has one, but no schedule drives it
        self.temperature.fill_(temperature)

    def keep_prob(self) -> Tensor:
        return torch.sigmoid(self.keep_logits / self.temperature)

    def mask_like(self, x: Tensor) -> Tensor:
        return (self.keep_prob() if self.training else self.eval_gate()).to(x.dtype)

    def penalty(self) -> Tensor:
        return self.keep_prob().sum()

    def eval_gate(self) -> Tensor:
        prob = self.keep_prob().detach()
        return prob * (prob >= self.threshold)


TOY_TARGET = "tests.unit.test_strategy_metadata.ToyGate"


@pytest.mark.parametrize(
    "check",
    [
        contract.test_shape_is_preserved,
        contract.test_eval_is_deterministic_and_equals_the_gate,
        contract.test_penalty_is_a_finite_scalar,
        contract.test_state_dict_round_trips,
        contract.test_gradients_reach_learned_parameters,
        contract.test_mask_like_is_what_forward_applies,
    ],
)
def test_the_contract_battery_passes_on_it(check) -> None:
    check(ToyGate)


def write_run(run_dir: Path, alpha: float, seed: int, wer: float, target: str = TOY_TARGET) -> None:
    """A finished run of ``dropout=toy`` as scripts/train.py leaves it (what the report reads)."""
    (run_dir / ".hydra").mkdir(parents=True)
    config = {
        "seed": seed,
        "pruning": {"alpha": alpha},
        "dropout": {
            "strategy": {"_target_": target, "_partial_": True},
            **dict.fromkeys(config_keys(), "${.strategy}"),
        },
    }
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / ".hydra" / "hydra.yaml").write_text(
        yaml.safe_dump({"hydra": {"runtime": {"choices": {"dropout": "toy"}}}})
    )
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", f"pruning.alpha={alpha}"]))
    results = {
        "params": {"total": 1000, "compacted_total": 800},
        "wer": {"test-clean": wer},
        "cer": {"test-clean": wer / 2},
        "retention": {"all": {"decided": 0.75}},
    }
    (run_dir / "results.json").write_text(json.dumps(results))


def test_the_report_names_it_and_tells_its_alpha_sweep_from_seeds(tmp_path) -> None:
    from conformer_prune.report import find_runs, group_runs

    for i, (alpha, seed) in enumerate([(1e-4, 1), (1e-4, 2), (1e-3, 1), (1e-3, 2)]):
        write_run(tmp_path / str(i), alpha, seed, wer=0.2 + alpha * 100)
    groups = group_runs(find_runs([tmp_path]))
    assert [(g.label, g.alpha, len(g.runs)) for g in groups] == [
        ("toy gate α=0.0001", 1e-4, 2),
        ("toy gate α=0.001", 1e-3, 2),
    ]
    assert {g.kind for g in groups} == {"adaptive"}  # role "method": compared like adaptive dropout
    assert all(r.decided == 0.75 for g in groups for r in g.runs)  # learns_retention: decided σ(β) reported


def test_without_its_metadata_its_alpha_sweep_is_read_as_seeds(tmp_path) -> None:
    """What the metadata prevents: a strategy that does not declare ``uses_alpha`` is averaged over alpha."""
    from conformer_prune.report import find_runs, group_runs

    for i, (alpha, seed) in enumerate([(1e-4, 1), (1e-3, 2)]):
        write_run(tmp_path / str(i), alpha, seed, wer=0.2, target="conformer_prune.dropout.StandardDropout")
    (group,) = group_runs(find_runs([tmp_path]))
    assert group.alpha is None and len(group.runs) == 2


def test_schedules_drive_only_the_temperatures_they_are_declared_for() -> None:
    """The Gumbel schedule sets adaptive dropout's τ; the L0 gates and the toy gate keep their own."""
    net = nn.ModuleList([AdaptiveDropout(3), HardConcreteGate(3, temperature=2 / 3), ToyGate(3, temperature=1.5)])
    callback = GumbelTemperature(TemperatureSchedule(0.3, 0.3, "constant"))
    trainer = SimpleNamespace(global_step=0, max_steps=10)
    callback.on_validation_start(trainer, net)
    assert [float(m.temperature) for m in net] == pytest.approx([0.3, 2 / 3, 1.5])


def test_the_exporter_applies_threshold_to_every_strategy_with_one(tmp_path) -> None:
    from conformer_prune.checkpoint import instantiate_node
    from conformer_prune.export import export_checkpoint
    from tests.helpers import StandInData, net_config, save_checkpoint, train_tokenizer

    tokenizer = train_tokenizer(tmp_path)
    config = net_config("ctc", tokenizer.vocab_size, site={"_target_": TOY_TARGET, "_partial_": True})
    net = instantiate_node(config, allowed_prefixes=None)
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", net, config, tokenizer)
    data = StandInData()
    data.setup()
    kept = export_checkpoint(ckpt, tmp_path / "a", datamodule=data)["kept"]
    assert all(k == t for pairs in kept.values() for k, t in pairs)  # σ(2) = 0.88 > 0.5: all kept
    report = export_checkpoint(ckpt, tmp_path / "b", datamodule=data, threshold=0.9)
    assert all(k == 0 for pairs in report["kept"].values() for k, _ in pairs)  # 0.88 < 0.9: all pruned
    assert not any("threshold" in note for note in report["notes"])
