"""Shared fixtures: a miniature LibriSpeech tree of real (eSpeak) speech, a finished tiny training run,
and torch seeded per test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conformer_prune.cli.resolvers import register_resolvers

register_resolvers()  # the cp.* resolvers some configs use (as scripts/train.py does)

# subset -> [(speaker, chapter, transcripts)]; short phrases give 0.3-1.0 s utterances.
TINY_TREE: dict[str, list[tuple[int, int, list[str]]]] = {
    "train-clean-100": [
        (19, 198, ["HELLO WORLD", "GOOD MORNING", "OPEN THE DOOR"]),
        (19, 227, ["THANK YOU", "COME HERE", "SIT DOWN"]),
        (26, 495, ["WELL DONE", "HOLD ON", "IT IS COLD"]),
        (26, 496, ["NOT NOW", "GO AWAY", "ALL RIGHT"]),
    ],
    "dev-clean": [(84, 121123, ["GOOD NIGHT", "I SEE", "QUITE SO"])],
    "dev-other": [(116, 288045, ["JUST A BIT", "YES PLEASE"])],
    "test-clean": [(121, 121726, ["COME BACK", "THE END"])],
    "test-other": [(1688, 142285, ["WAKE UP", "VERY GOOD"])],
}


class TinyTreeError(RuntimeError):
    """The tiny tree's speech could not be synthesised (the fixture fails rather than change the data)."""


def write_tiny_librispeech(root: Path, tree: dict[str, list[tuple[int, int, list[str]]]] = TINY_TREE) -> Path:
    """Write ``root/LibriSpeech`` with the utterances of ``tree``; returns the ``LibriSpeech`` directory."""
    from conformer_prune.data.corpus import SpeakerSpec, synthesize_chapter

    base = root / "LibriSpeech"
    voices = ["en-us+m3", "en+f2", "en-gb-x-rp+m5", "en-029+f4"]
    for s_index, (subset, chapters) in enumerate(tree.items()):
        for c_index, (speaker, chapter, texts) in enumerate(chapters):
            chapter_dir = base / subset / str(speaker) / str(chapter)
            chapter_dir.mkdir(parents=True, exist_ok=True)
            items = [(f"{speaker}-{chapter}-{i:04d}", text) for i, text in enumerate(texts)]
            lines = [f"{utt_id} {text}" for utt_id, text in items]
            (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
            family, variant = voices[(s_index + c_index) % len(voices)].split("+")
            spec = SpeakerSpec(speaker, subset, "espeak", family, variant, "M", warp=1.0, snr_db=40.0, rate=210,
                               pitch=50, pitch_range=50)  # fmt: skip
            tts = [(utt_id, text.lower()) for utt_id, text in items]
            try:
                synthesize_chapter(chapter_dir, spec, tts, seed=s_index * 100 + c_index, pad_seconds=(0.0, 0.04))
            except Exception as err:  # the tests that use the tree assume speech: never swap in other audio
                raise TinyTreeError(
                    f"the tiny LibriSpeech tree could not be synthesised with eSpeak NG ({type(err).__name__}: {err}); "
                    "the tests that read it need speech. Fix: pip install espeakng-loader (a declared dependency)"
                ) from err
    return base


@pytest.fixture(scope="session")
def tiny_librispeech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A miniature LibriSpeech tree (5 subsets, 8 chapters, 21 utterances of 0.3-1.0 s) -> its root.

    The returned path is the ``LibriSpeech`` directory; treat it as read-only (copy it to change it).
    """
    return write_tiny_librispeech(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(0)


ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FinishedRun:
    run_dir: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def finished_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """A finished 4-step tiny run (``scripts/train.py``, tensorboard logger): checkpoints, results.json,
    export/, and what it printed. Treat it as read-only."""
    from tests.helpers import TINY_TRAIN, run_scripts

    run_dir = tmp_path_factory.mktemp("finished")
    argv = [*TINY_TRAIN, "logger=tensorboard", "eval_subsets=[dev-clean,test-clean]", "eval_max_batches=1",
            f"hydra.run.dir={run_dir}"]  # fmt: skip
    (done,) = run_scripts(ROOT, [(argv, {"HYDRA_FULL_ERROR": None})], tmp_path_factory.mktemp("finished-output"))
    assert done["rc"] == 0, done["stderr"][-3000:]
    assert (run_dir / "results.json").is_file() and (run_dir / "export" / "config.yaml").is_file()
    return FinishedRun(run_dir, done["stdout"], done["stderr"])
