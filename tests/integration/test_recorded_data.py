"""Evaluating a run or its export uses exactly the data it was trained and tested on (issue #20), on any
machine and from any directory; an export needs only the subsets it evaluates (issue #18).

One tiny run on a tiny embedded corpus of its own (``engines: auto``), made where flite is not on ``PATH``
(hidden if this machine has it), so that flite can then "appear".
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from conformer_prune.cli.evaluate import evaluate
from conformer_prune.data.corpus import CorpusConfig, corpus_id, resolve_engines
from conformer_prune.data.record import RecordedDataMissingError, record_from_checkpoint
from conformer_prune.export import VerificationDataError, export_checkpoint
from conformer_prune.inference import load_model
from tests.helpers import path_without

ROOT = Path(__file__).resolve().parents[2]
CORPUS = {"train_minutes": 0.5, "eval_minutes": 0.15, "train_speakers": 2, "eval_speakers": 1,
          "chapters_per_speaker": 1}  # fmt: skip
SUBSETS = ["dev-clean", "dev-other", "test-clean", "test-other"]
NUMBERS = ("wer", "cer", "wer_greedy", "cer_greedy")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """8 training steps of the tiny encoder; evaluated (greedy + lexicon/LM beam search) and exported."""
    base = tmp_path_factory.mktemp("recorded")
    command = [
        sys.executable,
        "scripts/train.py",
        "debug=fast",
        "model/encoder=tiny",
        "trainer.max_steps=8",
        "eval_max_batches=null",
        "logger=csv",
        "threads=1",
        f"hydra.run.dir={base / 'run'}",
        f"paths.data_dir={base / 'data'}",
        "data.corpus.jobs=1",
        "data.corpus.progress=false",
        *(f"data.corpus.{k}={v}" for k, v in CORPUS.items()),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", path_without("flite", base / "bin"))  # eSpeak only, whatever this machine has
        assert resolve_engines("auto") == ["espeak"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return base / "run"


def trained(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def run_evaluate(overrides: list[str], out_dir: Path) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[*overrides, f"out_dir={out_dir}", "threads=1"])
    return evaluate(cfg)


def same_numbers(a: dict, b: dict, subsets: list[str]) -> None:
    for key in NUMBERS:
        assert {s: a[key][s] for s in subsets} == {s: b[key][s] for s in subsets}, key
    for subset in subsets:
        assert a["per_subset"][subset]["utterances"] == b["per_subset"][subset]["utterances"] > 0
        assert a["per_subset"][subset]["words"] == b["per_subset"][subset]["words"]


@pytest.fixture
def flite_appears(tmp_path: Path, monkeypatch) -> None:
    """A `flite` on PATH (it only answers --version: anything that tries to synthesise with it fails)."""
    fake = tmp_path / "bin" / "flite"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo 'flite-2.2-current Jul 2017' && exit 0\nexit 1\n")
    fake.chmod(0o755)
    hidden = path_without("flite", tmp_path / "shadow")  # the real one, if any, stays hidden
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{hidden}")
    assert resolve_engines("auto") == ["espeak", "flite"]


def test_the_run_records_its_data_everywhere(run: Path) -> None:
    results = trained(run)
    record = results["corpus"]["record"]
    corpus_dir = run.parent / "data" / "embedded" / results["corpus"]["corpus_id"]
    assert record["root"] == str(corpus_dir) and record["synthetic"] and record["corpus_id"] == corpus_dir.name
    assert record["settings"]["engines"] == "auto" and list(record["engines"]) == ["espeak"]
    assert record["datamodule"]["root"] == str(run.parent / "data" / "embedded")  # absolute, whatever the cwd
    assert set(results["corpus"]["evaluated"]) == set(SUBSETS)
    assert all(results["corpus"]["subsets"][s]["utterances"] > 0 for s in SUBSETS)
    assert results["corpus"]["skipped"] == {}
    ckpt = torch.load(results["checkpoint"], map_location="cpu", weights_only=False)
    assert record_from_checkpoint(ckpt) == record
    export_config = yaml.safe_load((run / "export" / "config.yaml").read_text())
    assert export_config["data"] == record
    assert export_config["decoding"]["evaluated"] == results["decoding"] == "beam_lm"
    assert export_config["decoding"]["beam_lm"]["lm_path"] == "lm.arpa"
    assert (run / "export" / "lm.arpa").read_bytes() == (run / "lm.arpa").read_bytes()
    assert (run / "export" / "lexicon.txt").read_bytes() == (run / "lexicon.txt").read_bytes()
    loaded = load_model(run / "export", decoder="beam_lm")  # the files are found beside the weights, from anywhere
    assert loaded.decoder.lm_path == str(run / "export" / "lm.arpa") and len(loaded.decoder.words) > 10


def test_another_engine_appearing_changes_nothing(run: Path, tmp_path: Path, flite_appears, monkeypatch) -> None:
    """The done-when of issue #20: same WER as at the end of training, same corpus id in both results.json."""
    results = trained(run)
    embedded = run.parent / "data" / "embedded"
    before = sorted(p.name for p in embedded.iterdir())
    auto = CorpusConfig(**CORPUS)
    assert corpus_id(auto) != results["corpus"]["corpus_id"]  # what a re-resolution of auto would pick now
    monkeypatch.chdir(tmp_path)  # and from another directory: nothing is resolved against the cwd
    for model_path in (run / "export", results["checkpoint"]):
        scored = run_evaluate([f"model_path={model_path}"], tmp_path / Path(model_path).name)
        same_numbers(scored, results, SUBSETS)
        assert scored["decoding"] == "beam_lm"
        assert scored["corpus"]["corpus_id"] == results["corpus"]["corpus_id"]
        assert scored["corpus"]["record"]["root"] == results["corpus"]["record"]["root"]
        on_disk = json.loads((tmp_path / Path(model_path).name / "results.json").read_text())
        assert on_disk["corpus"]["corpus_id"] == results["corpus"]["corpus_id"]
        assert {s: on_disk["corpus"]["subsets"][s]["utterances"] for s in SUBSETS} == {
            s: results["corpus"]["subsets"][s]["utterances"] for s in SUBSETS
        }
    assert sorted(p.name for p in embedded.iterdir()) == before  # no corpus generated
    assert not (tmp_path / "data").exists()

    # a fresh training run with engines: auto finds the corpus auto made, not a flite one
    from conformer_prune.data.datamodule import LibriSpeechDataModule

    dm = LibriSpeechDataModule(root=str(embedded), corpus={**CORPUS, "engines": "auto"})
    assert dm.data_root == Path(results["corpus"]["record"]["root"])


def test_an_export_needs_only_the_subsets_it_evaluates(run: Path, tmp_path: Path) -> None:
    results = trained(run)
    corpus = Path(results["corpus"]["record"]["root"]) / "LibriSpeech"
    tests_only = tmp_path / "tests_only"
    for subset in ("test-clean", "test-other"):
        shutil.copytree(corpus / subset, tests_only / "LibriSpeech" / subset)
    before = sorted(str(p) for p in tests_only.rglob("*"))
    export = run / "export"

    as_librispeech = run_evaluate(
        [f"model_path={export}", "data=librispeech", f"data.root={tests_only}"], tmp_path / "l"
    )
    assert list(as_librispeech["wer"]) == ["test-clean", "test-other"]  # the dev subsets are not there: skipped
    same_numbers(as_librispeech, results, ["test-clean", "test-other"])  # the export's own LM: no training text
    pointed = run_evaluate([f"model_path={export}", f"+data.root={tests_only}", "+data.corpus=null",
                            "data.eval_subsets=[test-clean]"], tmp_path / "p")  # fmt: skip
    same_numbers(pointed, results, ["test-clean"])
    assert pointed["corpus"]["corpus_id"] is None  # a plain tree (the copy holds no corpus.json), named by its root
    assert (
        pointed["corpus"]["root"]
        == str(tests_only / "LibriSpeech")
        == pointed["corpus"]["record"]["root"] + "/LibriSpeech"
    )
    assert sorted(str(p) for p in tests_only.rglob("*")) == before  # nothing was generated or written there

    with pytest.raises(ValueError, match=r"data.eval_subsets: \['dev-clean'\] not found"):
        run_evaluate([f"model_path={export}", f"+data.root={tests_only}", "+data.corpus=null",
                      "data.eval_subsets=[dev-clean]"], tmp_path / "d")  # fmt: skip
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no embedded corpus with the settings of data.corpus under .*/empty"):
        run_evaluate([f"model_path={export}", f"+data.root={empty}"], tmp_path / "e")  # root alone: no generation
    assert list(empty.iterdir()) == []


def test_gone_data_says_how_to_make_it_again_and_that_works(run: Path, tmp_path: Path) -> None:
    results = trained(run)
    corpus_dir = Path(results["corpus"]["record"]["root"])
    kept = tmp_path / "kept"
    shutil.move(corpus_dir, kept)
    try:
        with pytest.raises(
            RecordedDataMissingError, match=r"embedded corpus \w+ at .* is gone\. Fix: regenerate"
        ) as err:
            run_evaluate([f"model_path={run / 'export'}"], tmp_path / "a")
        assert not corpus_dir.exists()  # refused, not regenerated
        with pytest.raises(VerificationDataError, match=r"cannot verify the export on real utterances.*is gone"):
            export_checkpoint(results["checkpoint"], tmp_path / "export")
        assert not (tmp_path / "export").exists() and not corpus_dir.exists()
        report = export_checkpoint(results["checkpoint"], tmp_path / "export", allow_generated=True)
        assert report["verification"]["source"] == "generated features"

        command = str(err.value).split("`")[1]  # the command the message gives, as printed
        assert "engines=[espeak]" in command and "auto" not in command
        made = subprocess.run([*shlex.split(command.replace("python", sys.executable, 1)), "progress=false",
                               f"hydra.run.dir={tmp_path / 'h'}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
        again = run_evaluate([f"model_path={run / 'export'}"], tmp_path / "b")
        same_numbers(again, results, SUBSETS)  # the same corpus, made again from the record
        again_export = export_checkpoint(results["checkpoint"], tmp_path / "export2")
        assert again_export["verification"]["source"] == "real utterances: dev-clean"
    finally:
        shutil.rmtree(corpus_dir, ignore_errors=True)
        shutil.move(kept, corpus_dir)
