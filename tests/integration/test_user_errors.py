"""The user-error battery: bad configs, data, checkpoints and paths given to the entry points.

Every case runs the real script in its own process, as a user would (forked from a server that has
imported torch and Lightning once: :func:`tests.helpers.run_scripts`), and asserts: exit status 1; one
paragraph starting ``Error:`` on stderr that names the key or file (Hydra's own message for composition
errors); no ``Traceback``; nothing lost: a run refused by the config validator creates no run
directory, and the finished run that several cases point at is byte-for-byte unchanged afterwards. The
cases run two at a time in a module fixture; each test checks one case.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import TINY_TRAIN as TRAIN
from tests.helpers import run_scripts

ROOT = Path(__file__).resolve().parents[2]

TRAIN_TINY_TREE = (
    "data=librispeech",
    "data.root={broken}",
    "data.tokenizer.model_type=char",
    "data.cache_dir={tmp}/cache",
    "data.features.speed_perturb=null",
    "data.num_workers=0",
    "data.pin_memory=false",
    "data.dev_subsets=[dev-clean]",
    "data.test_subsets=[test-clean]",
)


@dataclass(frozen=True)
class Case:
    """One bad input. ``argv``: script and overrides (``{run}``, ``{ckpt}``, ``{tmp}``, ... are filled in by
    :func:`battery`); ``names``: what the message must name; ``run_dir``: the case may create its run
    directory (it fails after the data is read, still before training); ``hydra``: Hydra's composition
    message; ``paragraph``: our ``Error:`` paragraph (``False``: a per-file error report);
    ``env``: extra environment; ``traceback``: a traceback is expected (``HYDRA_FULL_ERROR=1``)."""

    name: str
    argv: tuple[str, ...]
    names: tuple[str, ...]
    run_dir: bool = False
    hydra: bool = False
    paragraph: bool = True
    env: dict = field(default_factory=dict)
    traceback: bool = False


CASES = [
    # -- types and ranges, named by key ---------------------------------------------------------
    Case("max_steps_not_an_integer", (*TRAIN, "trainer.max_steps=abc"), ("trainer.max_steps",)),
    Case("alpha_not_a_number", (*TRAIN, "pruning.alpha=abc"), ("pruning.alpha",)),
    Case("alpha_negative", (*TRAIN, "pruning.alpha=-1"), ("pruning.alpha",)),
    Case("val_check_interval_zero", (*TRAIN, "trainer.val_check_interval=0"), ("trainer.val_check_interval",)),
    Case("validation_after_the_budget", (*TRAIN, "trainer.val_check_interval=10"), ("trainer.val_check_interval",)),
    Case("no_validation_batches", (*TRAIN, "trainer.limit_val_batches=0"), ("trainer.limit_val_batches",)),
    Case("threads_zero", (*TRAIN, "threads=0"), ("threads",)),
    Case("eval_checkpoint_unknown", (*TRAIN, "eval_checkpoint=middle"), ("eval_checkpoint", "last", "best")),
    Case("batch_seconds_not_a_number", (*TRAIN, "data.max_batch_seconds=abc"), ("data.max_batch_seconds",)),
    Case("heads_do_not_divide_the_width", (*TRAIN, "model.net.encoder.num_heads=5"), ("model.net.encoder",)),
    Case("threshold_out_of_range", (*TRAIN, "pruning.threshold=1.5"), ("dropout",)),
    Case("unknown_key", (*TRAIN, "pruning.alfa=1"), ("pruning.alfa",), hydra=True),
    Case("unknown_option", (*TRAIN, "dropout=adaptve"), ("dropout", "adaptve"), hydra=True),
    # -- contradictions between groups --------------------------------------------------------------
    Case("ctc_decoder_on_a_transducer", (*TRAIN, "model=transducer", "decoding=ctc_greedy"), ("decoding",)),
    Case("transducer_decoder_on_ctc", (*TRAIN, "decoding=transducer"), ("decoding", "decoding=ctc")),
    Case("export_without_a_checkpoint", (*TRAIN, "callbacks=none"), ("export", "ModelCheckpoint")),
    # -- data ----------------------------------------------------------------------------------------
    Case("data_root_missing", (*TRAIN, "data=librispeech", "paths.data_dir={tmp}/nowhere"), ("data.root", "nowhere")),
    Case("eval_subset_missing", (*TRAIN, "eval_subsets=[test-nowhere]"), ("eval_subsets", "test-nowhere")),
    Case("train_subset_missing", (*TRAIN, "data.train_subsets=[train-other-500]"), ("data.train_subsets",)),
    Case("dev_subset_missing", (*TRAIN, "data.dev_subsets=[dev-nowhere]"), ("data.dev_subsets", "dev-nowhere")),
    Case("oov_policy_unknown", (*TRAIN, "data.tokenizer.oov_policy=maybe"), ("data.tokenizer.oov_policy",)),
    Case("on_error_unknown", (*TRAIN, "data.on_error=maybe"), ("data.on_error",)),
    Case("tokenizer_type_unknown", (*TRAIN, "data.tokenizer.model_type=words"), ("data.tokenizer.model_type",)),
    Case(
        "eval_subset_emptied_by_skips",
        (*TRAIN, *TRAIN_TINY_TREE, "eval_subsets=[test-other]"),
        ("test-other", "eval_subsets", "missing_audio"),
        run_dir=True,
    ),
    # -- checkpoints and run directories --------------------------------------------------------------
    Case("resume_checkpoint_missing", (*TRAIN, "ckpt_path={tmp}/missing.ckpt"), ("ckpt_path", "missing.ckpt")),
    Case("resume_checkpoint_corrupt", (*TRAIN, "ckpt_path={corrupt}"), ("ckpt_path", "corrupt.ckpt")),
    Case(
        "resume_with_another_architecture",
        ("scripts/train.py", "debug=fast", "threads=1", "ckpt_path={ckpt}"),
        ("ckpt_path", "last.ckpt", "model.net.encoder.d_model", "model/encoder="),
    ),
    Case("run_dir_holds_another_run", (*TRAIN, "hydra.run.dir={run}"), ("hydra.run.dir", "ckpt_path=")),
    # -- export ----------------------------------------------------------------------------------------
    Case("export_checkpoint_missing", ("scripts/export.py", "ckpt_path={tmp}/missing.ckpt"), ("ckpt_path",)),
    Case(
        "export_over_a_run_dir",
        ("scripts/export.py", "ckpt_path={ckpt}", "out_dir={run}", "overwrite=true"),
        ("out_dir", "not an export directory", "checkpoints/"),
    ),
    Case(
        "export_over_a_foreign_dir",
        ("scripts/export.py", "ckpt_path={ckpt}", "out_dir={foreign}", "overwrite=true"),
        ("out_dir", "notes.txt"),
    ),
    Case(
        "export_into_an_export_without_overwrite",
        ("scripts/export.py", "ckpt_path={ckpt}", "out_dir={run}/export"),
        ("out_dir", "overwrite=true"),
    ),
    Case("export_threshold_out_of_range", ("scripts/export.py", "ckpt_path={ckpt}", "threshold=1.5"), ("threshold",)),
    # -- evaluate, transcribe, summarize, bench_inference --------------------------------------------------
    Case("evaluate_model_missing", ("scripts/evaluate.py", "model_path={tmp}/nowhere"), ("model_path", "nowhere")),
    Case(
        "evaluate_subset_missing",
        ("scripts/evaluate.py", "model_path={run}", "data.eval_subsets=[test-nowhere]"),
        ("data.eval_subsets", "test-nowhere"),
        run_dir=True,
    ),
    Case(
        "transcribe_model_missing",
        ("scripts/transcribe.py", "model_path={tmp}/nowhere", "audio=[{tmp}/a.flac]"),
        ("nowhere", "export"),
    ),
    Case(
        "transcribe_audio_missing",
        ("scripts/transcribe.py", "model_path={run}/export", "audio=[{tmp}/missing.flac]"),
        ("missing.flac",),
        paragraph=False,
    ),
    Case("summarize_unknown_preset", ("scripts/summarize.py", "model/encoder=huge"), ("model/encoder",), hydra=True),
    Case("bench_without_a_model", ("scripts/bench_inference.py",), ("export=", "synthetic=true")),
    Case("bench_keep_out_of_range", ("scripts/bench_inference.py", "synthetic=true", "keep=2"), ("keep",)),
    # -- the traceback on request -------------------------------------------------------------------------
    Case(
        "full_error_shows_the_traceback",
        (*TRAIN, "trainer.max_steps=abc"),
        ("trainer.max_steps",),
        env={"HYDRA_FULL_ERROR": "1"},
        traceback=True,
    ),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def _command(case: Case, paths: dict[str, str]) -> tuple[list[str], dict[str, str | None], Path]:
    argv = [arg.format(**paths) for arg in case.argv]
    run_dir = Path(paths["tmp"]) / "runs" / case.name
    writes_nothing = case.argv[0] in ("scripts/transcribe.py", "scripts/bench_inference.py")  # run dir: .
    if not writes_nothing and not any(a.startswith("hydra.run.dir=") for a in argv):
        argv.append(f"hydra.run.dir={run_dir}")
    return argv, {"HYDRA_FULL_ERROR": None, **case.env}, run_dir


@pytest.fixture(scope="module")
def battery(finished_tiny_run, tiny_librispeech: Path, tmp_path_factory) -> dict[str, dict]:
    """Run every case (two at a time); returns case name -> ``rc``, ``stderr``, ``run_dir``; checks that
    the finished run is unchanged afterwards (``battery["_lost"]``: the files that changed)."""
    tmp = tmp_path_factory.mktemp("battery")
    finished_run = finished_tiny_run.run_dir
    ckpt = finished_run / "checkpoints" / "last.ckpt"
    corrupt = tmp / "corrupt.ckpt"
    corrupt.write_bytes(ckpt.read_bytes()[:100])
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not an export")
    broken = tmp / "tree"
    shutil.copytree(tiny_librispeech, broken / "LibriSpeech")
    for flac in (broken / "LibriSpeech" / "test-other").rglob("*.flac"):
        flac.unlink()  # its transcripts stay: every entry is skipped as missing_audio
    paths = {"tmp": str(tmp), "run": str(finished_run), "ckpt": str(ckpt), "corrupt": str(corrupt),
             "foreign": str(foreign), "broken": str(broken)}  # fmt: skip
    before = snapshot(finished_run)
    foreign_before = snapshot(foreign)
    commands = [_command(case, paths) for case in CASES]
    outcomes = run_scripts(ROOT, [(argv, env) for argv, env, _ in commands], tmp / "output")
    results = {
        case.name: {**outcome, "run_dir": run_dir}
        for case, (_, _, run_dir), outcome in zip(CASES, commands, outcomes, strict=True)
    }
    after, foreign_after = snapshot(finished_run), snapshot(foreign)
    results["_lost"] = sorted(k for k in before | after if before.get(k) != after.get(k)) + sorted(
        k for k in foreign_before | foreign_after if foreign_before.get(k) != foreign_after.get(k)
    )
    return results


ERROR_BLOCK = re.compile(r"^Error: .*?(?=\n\nSet the environment variable HYDRA_FULL_ERROR=1)", re.S | re.M)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_user_error_is_one_clear_paragraph(case: Case, battery: dict) -> None:
    result = battery[case.name]
    stderr = result["stderr"]
    assert result["rc"] == 1, stderr[-2000:]
    if case.traceback:
        assert "Traceback" in stderr and all(name in stderr for name in case.names)
        return
    assert "Traceback" not in stderr, stderr[-3000:]
    if case.hydra or not case.paragraph:
        assert all(name in stderr for name in case.names), stderr[-2000:]
    else:
        blocks = ERROR_BLOCK.findall(stderr)
        assert len(blocks) == 1, stderr[-2000:]
        message = blocks[0].strip()
        assert "\n\n" not in message  # one paragraph
        assert all(name in message for name in case.names), message
    if not case.run_dir and "hydra.run.dir={run}" not in case.argv:
        assert not result["run_dir"].exists(), "a refused run must not create its run directory"
    if case.run_dir and result["run_dir"].exists():
        assert not (result["run_dir"] / "checkpoints").exists(), "nothing may be trained before the error"


def test_nothing_was_deleted_or_changed(battery: dict) -> None:
    assert battery["_lost"] == []


def battery_counts(battery: dict) -> dict[str, int]:
    """Cases tried, clear errors (exit 1, no traceback), tracebacks, outputs lost (for the issue note)."""
    cases = [battery[c.name] for c in CASES if not c.traceback]
    return {
        "tried": len(cases),
        "clear": sum(r["rc"] == 1 and "Traceback" not in r["stderr"] for r in cases),
        "tracebacks": sum("Traceback" in r["stderr"] for r in cases),
        "lost": len(battery["_lost"]),
    }


def test_battery_counts(battery: dict) -> None:
    counts = battery_counts(battery)
    print(f"user-error battery: {counts}")  # noqa: T201 - the figures the issue note quotes (-s shows them)
    assert counts["clear"] == counts["tried"] and counts["tracebacks"] == 0 and counts["lost"] == 0, counts
