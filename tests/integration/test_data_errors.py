"""The data cases of issue #18 end to end: a damaged tree does not abort training under ``on_error=skip``
and every ``results.json`` counts what was skipped; an interrupted corpus generation leaves no process.
(The unit cases, one per defect, are in ``tests/unit/data/test_data_checks.py``.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from conformer_prune.cli.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[2]
TRAIN_FLAC = Path("train-clean-100") / "19" / "198" / "19-198-0001.flac"
TEST_FLAC = Path("test-other") / "1688" / "142285" / "1688-142285-0000.flac"


def truncate(flac: Path) -> None:
    """Keep the header (its frame count still reads) and cut the audio, so decoding fails."""
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 2])
    assert sf.info(str(flac)).frames > 0


@pytest.fixture(scope="module")
def damaged_run(tiny_librispeech: Path, tmp_path_factory) -> Path:
    """A tiny run on a LibriSpeech tree with a truncated training FLAC and a truncated test FLAC."""
    base = tmp_path_factory.mktemp("damaged")
    tree = Path(shutil.copytree(tiny_librispeech, base / "data" / "LibriSpeech"))
    truncate(tree / TRAIN_FLAC)
    truncate(tree / TEST_FLAC)
    command = [
        sys.executable,
        "scripts/train.py",
        "data=librispeech",
        f"data.root={tree.parent}",
        f"data.cache_dir={base / 'cache'}",
        "data.on_error=skip",
        "data.tokenizer.model_type=char",
        "data.max_batch_seconds=2.5",
        "data.num_workers=0",
        "data.pin_memory=false",
        "debug=fast",
        "model/encoder=tiny",
        "eval_max_batches=null",
        "logger=csv",
        "threads=1",
        f"hydra.run.dir={base / 'run'}",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logged = done.stdout + done.stderr
    assert str(tree / TRAIN_FLAC) in logged and "(skipped)" in logged  # named
    return base / "run"


def test_truncated_flacs_do_not_abort_training_and_are_counted(damaged_run: Path) -> None:
    results = json.loads((damaged_run / "results.json").read_text())
    corpus = results["corpus"]
    assert corpus["skipped"] == {"undecodable_audio": 2}
    assert corpus["subsets"]["train-clean-100"]["utterances"] == 11  # 12 on disk, 1 undecodable
    assert results["per_subset"]["test-other"]["utterances"] == 1  # 2 on disk, 1 undecodable
    assert corpus["subsets"]["test-other"]["undecodable"] == 1
    assert (damaged_run / "export" / "config.yaml").is_file()


def test_evaluate_counts_skipped_utterances_in_its_results(damaged_run: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"model_path={damaged_run}", f"out_dir={tmp_path}", "threads=1"])
    results = evaluate(cfg)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["corpus"]["skipped"] == results["corpus"]["skipped"] == {"undecodable_audio": 1}
    assert on_disk["per_subset"]["test-other"]["utterances"] == 1
    assert set(on_disk["corpus"]["evaluated"]) == {"dev-clean", "dev-other", "test-clean", "test-other"}
    trained = json.loads((damaged_run / "results.json").read_text())
    assert on_disk["cer"] == trained["cer"] and on_disk["wer"] == trained["wer"]


# -- an interrupted corpus generation -----------------------------------------------------------------
_GENERATE = """
import sys
from conformer_prune.data.corpus import CorpusConfig, generate_corpus
config = CorpusConfig(train_minutes=20, eval_minutes=1, train_speakers=8, eval_speakers=2, chapters_per_speaker=1,
                      engines=("espeak",))
generate_corpus(config, sys.argv[1], jobs=2, progress=False)
"""


def _session(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "-s", str(sid)], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("target", ["group", "main"], ids=["ctrl-c", "sigint-to-main-started-ignoring-it"])
def test_interrupted_generation_leaves_no_process_and_no_partial_tree(target: str, tmp_path: Path) -> None:
    ignore = target == "main"  # as a script's `cmd &` starts it: SIGINT ignored, yet `kill -INT` must stop it
    proc = subprocess.Popen(
        [sys.executable, "-c", _GENERATE, str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN if ignore else signal.SIG_DFL),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".LibriSpeech.partial-*/**/*.flac")):  # workers are rendering
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        workers = len(_session(proc.pid))
        assert workers >= 3  # main + 2 pool workers (+ their forked renderers, the resource tracker)
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode != 0
        for _ in range(50):  # children go with their parents within moments
            if not _session(proc.pid):
                break
            time.sleep(0.1)
        assert _session(proc.pid) == []
        assert not list(tmp_path.glob(".LibriSpeech.partial-*")) and not (tmp_path / "LibriSpeech").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for line in _session(proc.pid):  # anything left over is this test's
            os.kill(int(line.split()[0]), signal.SIGKILL)
