"""The sweep report on synthetic run directories: grouping, mean ± std, ties, matched baselines, files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conformer_prune.cli.train import sweep_objective
from conformer_prune.report import (
    Stat,
    compare,
    find_runs,
    group_runs,
    make_report,
    reference_group,
    verdict,
)

TARGETS = {
    "standard": "conformer_prune.dropout.StandardDropout",
    "adaptive": "conformer_prune.dropout.AdaptiveDropout",
    "hard_concrete": "conformer_prune.dropout.HardConcreteGate",
    "fixed_mask": "conformer_prune.dropout.fixed_mask.FixedMaskDropout",
}
DENSE_PARAMS = 2_000_000


def write_run(
    run_dir: Path,
    *,
    dropout: str,
    seed: int,
    wer: dict[str, float],
    params_after: int = DENSE_PARAMS,
    alpha: float = 1e-4,
    overrides: list[str] | None = None,
    extra: dict | None = None,
    strategy_params: int = 0,
    choices: bool = True,
) -> Path:
    """A finished training run as scripts/train.py leaves it (only what the report reads)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "export").mkdir()
    site = {"_target_": TARGETS[dropout], "_partial_": True}
    config = {
        "seed": seed,
        "pruning": {"alpha": alpha},
        "dropout": {s: site for s in ("ffn", "query", "value", "conv")},
    }
    config.update(extra or {})
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if choices:
        (run_dir / ".hydra" / "hydra.yaml").write_text(
            yaml.safe_dump({"hydra": {"runtime": {"choices": {"dropout": dropout}}}})
        )
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", *(overrides or [])]))
    report = {
        "params_before": DENSE_PARAMS + strategy_params,
        "params_after": params_after,
        "encoder_params_before": DENSE_PARAMS - 50_000 + strategy_params,
        "encoder_params_after": params_after - 50_000,
        "strategy_params": strategy_params,
        "mac_ratio": DENSE_PARAMS / params_after,
    }
    (run_dir / "export" / "report.json").write_text(json.dumps(report))
    results = {
        "params": {"total": DENSE_PARAMS + strategy_params, "compacted_total": params_after},
        "wer": wer,
        "cer": {k: v / 2 for k, v in wer.items()},
        "wer_greedy": {k: v + 0.01 for k, v in wer.items()},
        "cer_greedy": {k: v / 2 for k, v in wer.items()},
        "train_seconds": 300.0,
        "export": str(run_dir / "export"),
        "corpus": {"corpus_id": "abc123"},
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def wers(clean: float, other: float) -> dict[str, float]:
    return {"test-clean": clean, "test-other": other}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Dense x3 seeds, adaptive at 3 alphas x 3 seeds, matched baselines, L0; as two multiruns and loose runs."""
    root = tmp_path / "sweep"
    job = 0
    for seed, jitter in zip((1, 2, 3), (-0.01, 0.0, 0.01), strict=True):
        write_run(
            root / "dense" / str(seed),
            dropout="standard",
            seed=seed,
            wer=wers(0.20 + jitter, 0.40 + jitter),
            overrides=["dropout=standard"],
        )
    for alpha, after, base in ((1e-4, 1_600_000, 0.200), (3e-4, 1_000_000, 0.215), (1e-3, 600_000, 0.30)):
        for seed, jitter in zip((1, 2, 3), (-0.002, 0.0, 0.002), strict=True):
            write_run(
                root / "adaptive" / str(job),
                dropout="adaptive",
                seed=seed,
                alpha=alpha,
                params_after=after,
                wer=wers(base + jitter, 2 * base + jitter),
                strategy_params=5_000,
                overrides=[f"pruning.alpha={alpha}"],
            )
            job += 1
    source = root / "adaptive" / "3" / "export"  # alpha 3e-4, seed 1
    for seed in (1, 2, 3):
        write_run(
            tmp_path / "same" / str(seed),
            dropout="standard",
            seed=seed,
            params_after=1_000_000,
            wer=wers(0.25 + 0.001 * seed, 0.5),
            extra={"method": "dense_same_size", "widths_from": str(source)},
            overrides=["experiment=[sweep_small,dense_same_size]", f"widths_from={source}"],
        )
    write_run(
        tmp_path / "uniform" / "1",
        dropout="standard",
        seed=1,
        params_after=1_001_000,
        wer=wers(0.26, 0.5),
        extra={"method": "dense_uniform", "params_from": str(source)},
    )
    write_run(
        tmp_path / "magnitude" / "1",
        dropout="fixed_mask",
        seed=1,
        params_after=1_000_000,
        wer=wers(0.23, 0.45),
        extra={"method": "magnitude_finetune", "counts_from": str(source)},
    )
    for seed in (1, 2):
        write_run(
            tmp_path / "l0" / str(seed),
            dropout="hard_concrete",
            seed=seed,
            alpha=1e-3,
            params_after=900_000,
            wer=wers(0.28, 0.55),
            choices=False,
        )
    return tmp_path


def test_runs_group_by_method_and_alpha_over_seeds(sweep: Path) -> None:
    runs = find_runs([sweep])
    assert len(runs) == 3 + 9 + 3 + 1 + 1 + 2
    groups = {g.label: g for g in group_runs(runs)}
    assert set(groups) == {
        "dense (standard dropout)",
        "adaptive dropout α=0.0001",
        "adaptive dropout α=0.0003",
        "adaptive dropout α=0.001",
        "dense, same size ← adaptive dropout α=0.0003",
        "dense, uniform small ← adaptive dropout α=0.0003",
        "magnitude pruning + fine-tune ← adaptive dropout α=0.0003",
        "L0 hard-concrete α=0.001",  # no hydra.yaml: the method comes from the dropout targets
    }
    adaptive = groups["adaptive dropout α=0.0003"]
    assert sorted(adaptive.seeds) == [1, 2, 3]
    stat = adaptive.stat("wer", "test-clean")
    assert stat.mean == pytest.approx(0.215) and stat.std == pytest.approx(0.002) and stat.n == 3
    # the strategies' own logits are not part of the dense size
    assert adaptive.stat("params_before").mean == DENSE_PARAMS
    assert reference_group(list(groups.values())).label == "dense (standard dropout)"


def test_report_files_numbers_and_ties(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    files = make_report([sweep], out)
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and files["png"].stat().st_size > 10_000
    rows = {r["group"]: r for r in csv.DictReader(files["csv"].open())}
    assert len(rows) == 8
    small = rows["adaptive dropout α=0.0001"]
    assert float(small["removed_pct"]) == pytest.approx(20.0)
    assert float(small["wer_test-clean_mean"]) == pytest.approx(0.200)
    # 0.200 vs 0.200 ± 0.01: within the seed spread
    assert small["wer_test-clean_vs_ref_verdict"] == "tie"
    assert rows["adaptive dropout α=0.001"]["wer_test-clean_vs_ref_verdict"] == "worse"
    assert rows["dense (standard dropout)"]["is_reference"] == "True"
    assert len(list(csv.DictReader(files["runs"].open()))) == 19

    md = files["md"].read_text()
    assert "Reference: **dense (standard dropout)** (2,000,000 parameters)" in md
    assert "| adaptive dropout α=0.0003 | 3 (1, 2, 3) | 2,000,000 | 1,000,000 | 50.0 | 21.50 ± 0.20 |" in md
    assert "## Pruned model vs the baselines matched to it" in md
    # pruned 21.5 ± 0.2 vs same-size 25.2 ± 0.1: better beyond the spread
    pair = next(line for line in md.splitlines() if line.startswith("| adaptive dropout α=0.0003 | dense, same size"))
    assert "-3.70 (±0.20)" in pair and "better" in pair
    # a one-seed baseline is compared with the spread of the group that has one
    pair = next(line for line in md.splitlines() if "| magnitude pruning" in line and line.startswith("| adaptive"))
    assert "-1.50 (±0.20)" in pair and "better" in pair
    assert "fine-tuning only" in md


def test_greedy_metric_and_subset_selection(sweep: Path, tmp_path: Path) -> None:
    files = make_report([sweep / "sweep" / "dense"], tmp_path / "r", subsets=["test-other"], metric="wer_greedy")
    rows = list(csv.DictReader(files["csv"].open()))
    assert len(rows) == 1 and float(rows[0]["wer_test-other_mean"]) == pytest.approx(0.41)
    assert "wer_test-clean_mean" not in rows[0]
    with pytest.raises(ValueError, match="subsets"):
        make_report([sweep / "sweep" / "dense"], tmp_path / "r2", subsets=["dev-clean"])


def test_varying_overrides_split_groups(tmp_path: Path) -> None:
    for i, steps in enumerate((100, 100, 200)):
        write_run(
            tmp_path / str(i),
            dropout="adaptive",
            seed=i,
            wer=wers(0.3, 0.5),
            overrides=[f"trainer.max_steps={steps}", "debug=fast"],
        )
    labels = sorted(g.label for g in group_runs(find_runs([tmp_path])))
    assert labels == [
        "adaptive dropout α=0.0001 [trainer.max_steps=100]",
        "adaptive dropout α=0.0001 [trainer.max_steps=200]",
    ]


def test_an_override_equal_to_the_resolved_default_is_no_setting(tmp_path: Path) -> None:
    # 400 steps from the command line in one run and from a preset in the other: one group; the key that
    # does differ is shown with its resolved value, also where one run left it at its default
    for i, (overrides, scale) in enumerate(((["trainer.max_steps=400"], 10.0), (["pruning.logit_lr_scale=30"], 30))):
        write_run(
            tmp_path / str(i),
            dropout="adaptive",
            seed=1,
            wer=wers(0.3, 0.5),
            overrides=overrides,
            extra={"trainer": {"max_steps": 400}, "pruning": {"alpha": 1e-4, "logit_lr_scale": scale}},
        )
    labels = sorted(g.label for g in group_runs(find_runs([tmp_path])))
    # a label names what its run set; the other run is the plain recipe
    assert labels == ["adaptive dropout α=0.0001", "adaptive dropout α=0.0001 [pruning.logit_lr_scale=30]"]

    # a third run that also set nothing but resolved to another value: labels name every varying key
    write_run(
        tmp_path / "2",
        dropout="adaptive",
        seed=1,
        wer=wers(0.3, 0.5),
        extra={"trainer": {"max_steps": 400}, "pruning": {"alpha": 1e-4, "logit_lr_scale": 20.0}},
    )
    labels = sorted(g.label for g in group_runs(find_runs([tmp_path])))
    assert labels == [
        "adaptive dropout α=0.0001 [pruning.logit_lr_scale=10.0]",
        "adaptive dropout α=0.0001 [pruning.logit_lr_scale=20.0]",
        "adaptive dropout α=0.0001 [pruning.logit_lr_scale=30]",
    ]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such directory"):
        find_runs([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no results.json"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(ValueError, match="metric"):
        make_report([tmp_path], tmp_path / "out", metric="bleu")


def test_verdicts() -> None:
    assert verdict(-0.02, 0.01) == "better"
    assert verdict(0.02, 0.01) == "worse"
    assert verdict(0.005, 0.01) == "tie"
    assert verdict(0.005, None) == "n/a (1 seed)"
    diff, spread, word = compare(Stat.of([0.2, 0.22]), Stat.of([0.25]))
    assert diff == pytest.approx(-0.04) and spread == pytest.approx(0.0141421356) and word == "better"
    assert Stat.of([None]).mean is None


def test_sweep_objective_penalises_missing_the_budget() -> None:
    cfg = OmegaConf.create(
        {"objective": "wer/dev-clean", "optimize": {"param_budget": 1000, "over_budget_weight": 1.0}}
    )
    results = {"wer": {"dev-clean": 0.2}, "params": {"total": 3000, "compacted_total": 1500}}
    assert sweep_objective(results, cfg) == pytest.approx(0.2 + 0.5)
    results["params"]["compacted_total"] = 900
    assert sweep_objective(results, cfg) == pytest.approx(0.2)
    cfg.objective = "wer/test-other"
    with pytest.raises(ValueError, match=r"objective=wer/test-other.*'wer/test-other'.*\['dev-clean'\]"):
        sweep_objective(results, cfg)


def test_sweep_objective_reads_any_number_of_results_and_nothing_without_a_key() -> None:
    results = {"cer": {"test-clean": 0.31}, "params": {"total": 3000, "compacted_total": 1500}, "decoding": "beam4"}
    assert sweep_objective(results, OmegaConf.create({"objective": "cer/test-clean"})) == pytest.approx(0.31)
    assert sweep_objective(results, OmegaConf.create({"objective": "params/compacted_total"})) == 1500.0
    assert sweep_objective(results, OmegaConf.create({"objective": None})) is None
    assert sweep_objective({}, OmegaConf.create({"objective": "cer/test-clean"})) is None  # DDP rank > 0
    with pytest.raises(ValueError, match="not a number"):
        sweep_objective(results, OmegaConf.create({"objective": "decoding"}))


def test_evaluation_results_are_not_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "train", dropout="adaptive", seed=1, wer=wers(0.3, 0.5))
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "results.json").write_text(json.dumps({"model_path": "x", "wer": {"test-clean": 0.1}}))
    assert [r.path.name for r in find_runs([tmp_path])] == ["train"]


def test_comparisons_on_cer_and_the_decided_column(sweep: Path, tmp_path: Path) -> None:
    for job in ("0", "1", "2"):  # alpha 1e-4: 90 % of its retention probabilities near 0 or 1
        results_file = sweep / "sweep" / "adaptive" / job / "results.json"
        results = json.loads(results_file.read_text())
        results["retention"] = {"all": {"units": 100, "pruned": 0.5, "near_zero": 0.5, "near_one": 0.4, "decided": 0.9}}
        results_file.write_text(json.dumps(results))
    files = make_report([sweep], tmp_path / "report", compare_on="cer")
    rows = {r["group"]: r for r in csv.DictReader(files["csv"].open())}
    worst = rows["adaptive dropout α=0.001"]
    # CER = WER / 2 in these runs: 15.0 vs 10.0 ± 0.5
    assert worst["cer_test-clean_vs_ref_verdict"] == "worse" and "wer_test-clean_vs_ref_verdict" not in worst
    assert float(worst["cer_test-clean_vs_ref"]) == pytest.approx(0.05)
    assert float(rows["adaptive dropout α=0.0001"]["decided_mean"]) == pytest.approx(0.9)
    assert rows["adaptive dropout α=0.0003"]["decided_mean"] == ""
    md = files["md"].read_text()
    assert "ΔCER test-clean" in md and "ΔWER" not in md
    assert "*decided σ(β)*" in md
    line = next(row for row in md.splitlines() if row.startswith("| adaptive dropout α=0.0001 |"))
    assert line.endswith("| 90 ± 0 |")
    with pytest.raises(ValueError, match="compare_on"):
        make_report([sweep], tmp_path / "bad", compare_on="per")
