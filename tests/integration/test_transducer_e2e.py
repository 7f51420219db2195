"""The Transducer end to end through the pipeline a user runs: ``scripts/train.py model=transducer``
(Lightning, tiny encoder, 6 steps on the tiny tree) -> end-of-training evaluation (beam search and greedy)
-> export -> ``scripts/evaluate.py`` numbers -> ``load_model`` -> ``transcribe`` of the audio files.

Six steps at a high learning rate leave a model that emits long, wrong transcripts with greedy search
(which makes the comparisons below mean something); about 15-25 s on 2 cores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conformer_prune.cli.evaluate import evaluate
from conformer_prune.inference import load_model, read_audio
from tests.helpers import tiny_tree_overrides

ROOT = Path(__file__).resolve().parents[2]
SUBSETS = ("test-clean", "test-other")


@pytest.fixture(scope="module")
def transducer_run(tiny_librispeech: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("transducer") / "run"
    command = [
        sys.executable,
        "scripts/train.py",
        *tiny_tree_overrides(tiny_librispeech, run_dir.parent / "cache"),
        "model=transducer",
        "model.net.pred_dim=16",
        "model.net.joint_dim=16",
        "model.net.ctc_weight=0.3",  # the auxiliary CTC head travels through export and load_model
        "model.optimizer.lr=0.02",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir


def run_evaluate(model_path: Path, out_dir: Path) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"model_path={model_path}",
                f"data.eval_subsets=[{','.join(SUBSETS)}]",
                "hypotheses=true",
                f"out_dir={out_dir}",
                "threads=1",
            ],
        )
    return evaluate(cfg)


def hypotheses(out_dir: Path, subset: str, decoder: str) -> dict[str, str]:
    rows = csv.DictReader((out_dir / "hypotheses" / f"{subset}.{decoder}.tsv").open(), delimiter="\t")
    return {r["id"]: r["hypothesis"] for r in rows}


def test_training_logs_validation_and_writes_beam_and_greedy_results(transducer_run: Path) -> None:
    results = json.loads((transducer_run / "results.json").read_text())
    assert results["decoding"] == "beam4" and results["global_step"] == 6
    assert results["checkpoint"].endswith("last.ckpt") and (transducer_run / "export" / "model.safetensors").is_file()
    for subset in SUBSETS:
        entry = results["per_subset"][subset]
        assert entry["utterances"] == 2 and {"greedy", "default"} <= set(entry)
        assert results["cer_greedy"][subset] > 1.0  # greedy emits (wrong) labels: not an all-blank model
    rows = [r for f in transducer_run.rglob("metrics.csv") for r in csv.DictReader(f.open()) if r.get("val/wer")]
    assert len(rows) == 2 and all(float(r["val/loss"]) > 0 for r in rows)  # validated at steps 3 and 6


def test_checkpoint_export_and_load_model_give_the_same_transcripts(
    transducer_run: Path, tiny_librispeech: Path, tmp_path: Path
) -> None:
    trained = json.loads((transducer_run / "results.json").read_text())
    from_ckpt = run_evaluate(Path(trained["checkpoint"]), tmp_path / "ckpt")
    from_export = run_evaluate(transducer_run / "export", tmp_path / "export")
    assert from_export["model"] == "export" and from_export["decoding"] == trained["decoding"] == "beam4"
    for key in ("wer", "cer", "wer_greedy", "cer_greedy"):
        expected = {s: trained[key][s] for s in SUBSETS}
        assert {s: from_ckpt[key][s] for s in SUBSETS} == expected, key
        assert {s: from_export[key][s] for s in SUBSETS} == expected, key

    greedy_model = load_model(transducer_run / "export")
    beam_model = load_model(transducer_run / "export", decoder="beam")
    for subset in SUBSETS:
        greedy = hypotheses(tmp_path / "ckpt", subset, "greedy")
        beam = hypotheses(tmp_path / "ckpt", subset, "default")
        assert hypotheses(tmp_path / "export", subset, "greedy") == greedy
        for utt_id, expected in greedy.items():
            speaker, chapter, _ = utt_id.split("-")
            audio, rate = read_audio(tiny_librispeech / subset / speaker / chapter / f"{utt_id}.flac")
            assert expected and greedy_model.transcribe(audio, rate) == expected, utt_id
            assert beam_model.transcribe(audio, rate) == beam[utt_id], utt_id
