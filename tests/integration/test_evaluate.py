"""scripts/evaluate.py gives the end-of-training numbers for the same model and subset (tiny run)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conformer_prune.cli.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]
SUBSETS = "[dev-clean,test-clean]"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 4-step tiny run on the embedded corpus, evaluated (greedy + LM beam search) on two subsets."""
    run_dir = tmp_path_factory.mktemp("run")
    command = [
        sys.executable,
        "scripts/train.py",
        "debug=fast",
        "model/encoder=tiny",
        f"eval_subsets={SUBSETS}",
        "logger=csv",
        "threads=1",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def run_evaluate(overrides: list[str], out_dir: Path) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[*overrides, f"out_dir={out_dir}", "threads=1"])
    return evaluate(cfg)


def same_numbers(a: dict, b: dict, subsets: list[str], beam_atol: float = 0.0) -> None:
    for key in ("wer_greedy", "cer_greedy"):
        assert {s: a[key][s] for s in subsets} == {s: b[key][s] for s in subsets}, key
    for key in ("wer", "cer"):
        assert {s: a[key][s] for s in subsets} == pytest.approx({s: b[key][s] for s in subsets}, abs=beam_atol), key


# The compacted model matches the masked one to ~1e-6 (gates folded into the weights), and the greedy
# transcripts are identical; after 4 steps its outputs are nearly flat, so a 1e-6 change can flip a tie in
# the LM beam search: the export's beam numbers may differ from the masked model's by a character or two.
EXPORT_BEAM_ATOL = 1e-3


def test_checkpoint_and_export_give_the_training_numbers(tiny_run: Path, tmp_path: Path) -> None:
    trained = json.loads((tiny_run / "results.json").read_text())
    subsets = ["dev-clean", "test-clean"]
    overrides = [f"data.eval_subsets={SUBSETS}", "max_batches=2"]  # debug=fast evaluates 2 batches per subset

    from_ckpt = run_evaluate([f"model_path={trained['checkpoint']}", *overrides, "hypotheses=true"], tmp_path / "c")
    same_numbers(from_ckpt, trained, subsets)
    assert from_ckpt["decoding"] == trained["decoding"] == "beam_lm"
    entry = from_ckpt["per_subset"]["test-clean"]
    assert entry["utterances"] > 0 and entry["words"] > entry["utterances"] and entry["default"]["rtf"] > 0
    on_disk = json.loads((tmp_path / "c" / "results.json").read_text())
    assert on_disk["wer"] == from_ckpt["wer"]
    lines = (tmp_path / "c" / "hypotheses" / "test-clean.default.tsv").read_text().splitlines()
    assert lines[0] == "id\treference\thypothesis" and len(lines) == entry["utterances"] + 1

    # the compacted export (found through the run dir) decodes the same transcripts
    from_export = run_evaluate([f"model_path={tiny_run}", *overrides], tmp_path / "e")
    assert from_export["model"] == "export"
    same_numbers(from_export, trained, subsets, beam_atol=EXPORT_BEAM_ATOL)


def test_unknown_subset_names_the_available_ones(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"data.eval_subsets: \['test-nope'\] not found.*available subsets: \[.*test-clean"
    ):
        run_evaluate([f"model_path={tiny_run / 'export'}", "data.eval_subsets=[test-nope]"], tmp_path)


def test_a_moved_export_scores_like_its_run_and_without_a_record_needs_a_data_config(
    tiny_run: Path, tmp_path: Path
) -> None:
    trained = json.loads((tiny_run / "results.json").read_text())
    export = shutil.copytree(tiny_run / "export", tmp_path / "moved")
    report = json.loads((export / "report.json").read_text())
    report["checkpoint"] = str(tmp_path / "gone.ckpt")
    (export / "report.json").write_text(json.dumps(report))
    assert (export / "lm.arpa").is_file() and (export / "lexicon.txt").is_file()
    # no run next to it: its own record (the data) and its own LM and lexicon (the decoder) give the run's numbers
    moved = run_evaluate([f"model_path={export}", f"data.eval_subsets={SUBSETS}", "max_batches=2"], tmp_path / "m")
    assert moved["run_config"] is None and moved["decoding"] == "beam_lm"
    same_numbers(moved, trained, ["dev-clean", "test-clean"], beam_atol=EXPORT_BEAM_ATOL)
    assert moved["corpus"]["corpus_id"] == trained["corpus"]["corpus_id"] is not None
    assert moved["corpus"]["record"]["root"] == trained["corpus"]["record"]["root"]

    config = yaml.safe_load((export / "config.yaml").read_text())
    del config["data"]  # an export of an older version
    (export / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="pass data=embedded"):
        run_evaluate([f"model_path={export}"], tmp_path / "a")
    results = run_evaluate(
        [f"model_path={export}", "data=embedded", "data.eval_subsets=[test-clean]", "max_batches=1"], tmp_path / "b"
    )
    assert results["decoding"] == "beam_lm" and set(results["wer"]) == {"test-clean"}
