"""DDP with two CPU processes (gloo, tiny encoder, 4 steps) scores the whole set, once, on rank zero.

``scripts/train.py trainer=ddp_cpu`` on the tiny LibriSpeech tree, with one utterance per evaluation batch
so that the five dev batches split 3/2 between the ranks. The validation numbers the DDP run logged
(``val/loss``, ``val/wer``, ``val/cer``) must equal a single-process pass of the same checkpoint over the
whole dev set, and the end-of-training results (written by rank zero alone) must equal
``scripts/evaluate.py``'s numbers for the checkpoint. About 25-35 s on 2 cores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conformer_prune.cli.evaluate import evaluate, load_source
from conformer_prune.decoding import GreedyCTCDecoder
from conformer_prune.evaluate import evaluate_net
from conformer_prune.tasks.metrics import edit_counts
from tests.helpers import tiny_tree_overrides

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ddp_run(tiny_librispeech: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    command = [
        sys.executable,
        "scripts/train.py",
        *tiny_tree_overrides(tiny_librispeech, run_dir.parent / "cache"),
        "trainer=ddp_cpu",
        "trainer.precision=32-true",  # validated as the single-process reference below computes: in fp32
        "data.eval_max_batch_seconds=1",  # one utterance per dev/test batch
        "model.optimizer.lr=0.02",  # a few steps of a high rate: the hypotheses are not all empty
        "decoding=ctc_greedy",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        f"hydra.run.dir={run_dir}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return run_dir


def last_validation(run_dir: Path) -> dict[str, float]:
    rows = [r for f in run_dir.rglob("metrics.csv") for r in csv.DictReader(f.open()) if r.get("val/wer")]
    return {k: float(rows[-1][k]) for k in ("val/loss", "val/wer", "val/cer")}


def test_rank_zero_alone_writes_the_results_and_the_export(ddp_run: Path) -> None:
    assert [p.relative_to(ddp_run) for p in ddp_run.rglob("results.json")] == [Path("results.json")]
    assert [p.relative_to(ddp_run) for p in ddp_run.rglob("report.json")] == [Path("export/report.json")]
    results = json.loads((ddp_run / "results.json").read_text())
    assert results["world_size"] == 2 and results["eval_device"] == "cpu" and results["global_step"] == 4
    # every subset whole: the tiny tree has 3 + 2 dev and 2 + 2 test utterances
    counts = {s: e["utterances"] for s, e in results["per_subset"].items()}
    assert counts == {"dev-clean": 3, "dev-other": 2, "test-clean": 2, "test-other": 2}
    assert "rank 1: training done" in (ddp_run / "train_ddp_process_1.log").read_text()


def test_validation_numbers_are_those_of_the_whole_dev_set(ddp_run: Path) -> None:
    logged = last_validation(ddp_run)
    source = load_source(ddp_run / "checkpoints" / "last.ckpt")
    datamodule = instantiate(OmegaConf.load(ddp_run / ".hydra" / "config.yaml").data)
    datamodule.restore(source.tokenizer_bytes, source.feature_config)
    datamodule.setup("validate")
    net = source.net.eval()
    batches = list(datamodule.val_dataloader())  # no trainer: one process, every batch
    assert len(batches) == 5
    decoder = GreedyCTCDecoder(datamodule.tokenizer)
    fps = datamodule.feature_extractor.frames_per_second
    single = evaluate_net(net, {"dev": batches}, {"greedy": decoder}, frames_per_second=fps)["dev"]["greedy"]
    with torch.no_grad():
        losses = [net.loss(b["features"], b["feature_lens"], b["tokens"], b["token_lens"]) for b in batches]
    sizes = [len(b["texts"]) for b in batches]
    single_loss = sum(float(loss) * n for loss, n in zip(losses, sizes)) / sum(sizes)

    assert 0.0 < logged["val/cer"] < 1.0  # the hypotheses are not empty, so the comparison means something
    assert logged["val/wer"] == pytest.approx(single["wer"], abs=1e-6)
    assert logged["val/cer"] == pytest.approx(single["cer"], abs=1e-6)
    assert logged["val/loss"] == pytest.approx(single_loss, rel=1e-5)

    # what the old per-rank averaging reports for the same hypotheses (rank 0: batches 0, 2, 4; rank 1: 1, 3)
    with torch.no_grad():
        hyps = [decoder(net, *(t.float() for t in net(b["features"], b["feature_lens"]))) for b in batches]
    per_rank = []
    for rank in (0, 1):
        refs = [t for b in batches[rank::2] for t in b["texts"]]
        errors, chars = edit_counts(refs, [h for hs in hyps[rank::2] for h in hs], "char")
        per_rank.append(errors / chars)
    assert sum(per_rank) / 2 != pytest.approx(single["cer"], abs=1e-6)  # so this test can tell them apart


def test_final_results_equal_a_single_process_evaluation(ddp_run: Path, tmp_path: Path) -> None:
    trained = json.loads((ddp_run / "results.json").read_text())
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "evaluate",
            overrides=[
                f"model_path={trained['checkpoint']}",
                "data.eval_subsets=[test-clean,test-other]",
                f"out_dir={tmp_path}",
                "threads=1",
            ],
        )
    single = evaluate(cfg)
    for key in ("wer", "cer", "wer_greedy", "cer_greedy"):
        assert {s: single[key][s] for s in ("test-clean", "test-other")} == {
            s: trained[key][s] for s in ("test-clean", "test-other")
        }, key
    assert any(trained["wer"][s] != 1.0 for s in ("test-clean", "test-other"))  # not all-empty hypotheses
