"""What a run ends with on the console (and in its log file): a summary of ``results.json``.

* :func:`train_summary`: dense vs compacted parameters and multiply-accumulates per second of audio,
  WER/CER per subset for greedy decoding and the default decoder, steps and time, the export and the
  commands to run next (evaluate, transcribe, tensorboard);
* :func:`evaluate_summary`: the same table for ``scripts/evaluate.py``;
* :func:`print_summary`: print it with rich and write a plain-text copy to the log files.

Every number comes from the ``results.json`` content given, so the summary and the file agree.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from conformer_prune.errors import log_to_files

log = logging.getLogger(__name__)


def _python() -> str:
    """How to call this interpreter in a command line (``.venv/bin/python`` under the working dir)."""
    exe = Path(os.path.abspath(sys.executable))  # not resolved: a venv's python is a symlink
    return os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else "python"


def _relative(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies under it (shorter commands)."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)


def results_table(results: Mapping[str, Any], title: str | None = None) -> Table:
    """One row per subset and decoder: utterances, words, WER %, CER %, real-time factor."""
    decoding = str(results.get("decoding", "default"))
    if title is None and "model" in results:
        title = f"{results['model']} {results.get('model_path', '')} ({decoding} decoding)"
    table = Table(title=None if title is None else Text(title))
    for column in ("subset", "utts", "words", "decoder", "WER %", "CER %", "RTF"):
        table.add_column(column, justify="left" if column in ("subset", "decoder") else "right")
    for subset, entry in (results.get("per_subset") or {}).items():
        for decoder in ("greedy", "default"):
            label = decoding if decoder == "default" else "greedy"
            if decoder not in entry or (decoder == "default" and label == "greedy"):
                continue  # a greedy default is the greedy row
            numbers = entry[decoder]
            table.add_row(
                subset,
                str(entry["utterances"]),
                str(entry["words"]),
                label,
                f"{100 * numbers['wer']:.2f}",
                f"{100 * numbers['cer']:.2f}",
                f"{numbers['rtf']:.4f}",
            )
    return table


def _change(before: float, after: float) -> str:
    return f"{100 * (after - before) / before:+.1f} %" if before else ""


def _facts(rows: list[tuple[str, str]], title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    if title:
        table.title = title
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(Text(name), Text(value))  # Text: paths and `audio=[...]` are not rich markup
    return table


def _commands(commands: list[str]) -> Text:
    """``next:`` and one command per line (printed with ``soft_wrap``: never broken, so they copy whole)."""
    text = Text("next:", style="bold")
    for command in commands:
        text.append(f"\n  {command}", style="cyan")
    return text


def _model_rows(results: Mapping[str, Any], dense: str = " dense") -> list[tuple[str, str]]:
    """Parameters, MACs and units pruned; ``dense`` labels ``params.dense`` (the model with every unit and no
    keep logits; ``params.total`` in results written before it was recorded)."""
    params = results.get("params") or {}
    rows = []
    total, compacted = params.get("dense", params.get("total")), params.get("compacted_total")
    if total is not None:
        text = f"{total:,}{dense}"
        if compacted is not None:
            text += f" -> {compacted:,} compacted ({_change(total, compacted)})"
        rows.append(("parameters", text))
    macs = results.get("macs_per_second") or {}
    if macs.get("dense"):
        text = f"{macs['dense'] / 1e6:.1f} M dense"
        if macs.get("compacted"):
            text += f" -> {macs['compacted'] / 1e6:.1f} M compacted ({_change(macs['dense'], macs['compacted'])})"
        rows.append(("MACs / s of audio", text))
    retention = (results.get("retention") or {}).get("all")
    if retention and "pruned" in retention:
        rows.append(("units pruned", f"{100 * retention['pruned']:.1f} %"))
    return rows


def _tensorboard_dir(run_dir: Path) -> Path | None:
    board = run_dir / "tensorboard"
    return board if board.is_dir() else None


def _example_audio(results: Mapping[str, Any]) -> str:
    """A real test utterance for the transcribe command, if the corpus root is at hand."""
    subsets = list(results.get("per_subset") or {})
    roots = [(results.get("corpus") or {}).get("root"), results.get("data_root")]
    for root in (Path(r) for r in roots if r):
        for base in (root, root / "LibriSpeech"):
            for subset in reversed(subsets):  # test subsets come last
                found = next(iter(sorted((base / subset).glob("*/*/*.flac"))), None)
                if found is not None:
                    return _relative(found)
    return "<file.flac>"


def train_summary(results: Mapping[str, Any], run_dir: str | Path) -> RenderableType:
    """The end-of-training summary of ``results`` (the ``results.json`` content) for ``run_dir``."""
    run_dir = Path(run_dir)
    steps = results.get("global_step")
    rows = [("run", _relative(run_dir))]
    if steps is not None:
        text = f"{steps:,} steps, {timedelta(seconds=int(results.get('train_seconds') or 0))} of training"
        skipped = int(results.get("nonfinite_batches") or 0)
        if skipped:
            text += f" ({skipped} non-finite batches skipped: counted as steps, no update)"
        rows.append(("training", text))
    if results.get("checkpoint"):
        rows.append(("evaluated", _relative(results["checkpoint"])))
    rows += _model_rows(results)
    export = results.get("export")
    python = _python()
    next_steps: list[str] = []
    if export:
        rows.append(("export", _relative(export)))
        model = _relative(export)
        next_steps += [
            f"{python} scripts/evaluate.py model_path={model}",
            f"{python} scripts/transcribe.py model_path={model} audio=[{_example_audio(results)}]",
        ]
    elif results.get("export_error"):
        rows.append(("export", f"FAILED: {results['export_error']}"))
    elif results.get("checkpoint"):
        next_steps.append(f"{python} scripts/evaluate.py model_path={_relative(results['checkpoint'])}")
    board = _tensorboard_dir(run_dir)
    if board is not None:
        next_steps.append(f"tensorboard --logdir {_relative(board)}")
    table = results_table(results, title=f"WER / CER per subset (default decoder: {results.get('decoding')})")
    parts: list[RenderableType] = [_facts(rows, title="Run summary"), table]
    if next_steps:
        parts.append(_commands(next_steps))
    return Group(*parts)


def evaluate_summary(results: Mapping[str, Any], out_dir: str | Path) -> RenderableType:
    """The summary of ``scripts/evaluate.py``: the per-subset table, the model, where the results are."""
    rows = [("model", f"{results.get('model')} {_relative(results.get('model_path', ''))}")]
    rows += _model_rows(results, dense="")
    rows.append(("data", _relative(results.get("data_root", ""))))
    rows.append(("results", _relative(Path(out_dir) / "results.json")))
    python = _python()
    next_steps = []
    if results.get("model") == "export":
        model = _relative(results["model_path"])
        next_steps.append(f"{python} scripts/transcribe.py model_path={model} audio=[{_example_audio(results)}]")
    elif results.get("model_path"):
        next_steps.append(f"{python} scripts/export.py ckpt_path={_relative(results['model_path'])} out_dir=<dir>")
    parts: list[RenderableType] = [results_table(results), _facts(rows)]
    if next_steps:
        parts.append(_commands(next_steps))
    return Group(*parts)


def render_text(renderable: RenderableType, width: int = 120) -> str:
    """``renderable`` as plain text (no colour codes), as it goes into log files."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    console.print(renderable, soft_wrap=True)
    return buffer.getvalue()


def print_summary(renderable: RenderableType, console: Console | None = None) -> str:
    """Print ``renderable`` on the console and its plain text into the log files; returns that text."""
    text = render_text(renderable)
    log_to_files("\n" + text.rstrip(), name=__name__)
    (console or Console()).print(renderable, soft_wrap=True)
    return text
