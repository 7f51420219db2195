"""``scripts/transcribe.py``: transcribe audio files with an export (``conf/transcribe.yaml``)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import IO, Any

import torch

from conformer_prune.inference import load_model, read_audio

log = logging.getLogger(__name__)


def transcribe_files(cfg: Any, out: IO[str] | None = None) -> int:
    """Transcribe ``cfg.audio`` with the export at ``cfg.model_path``; one ``<path>\\t<text>`` line each.

    Files that cannot be read or transcribed are reported on stderr (logging) and skipped; the others
    are still transcribed.

    Args:
        cfg: ``model_path``, ``audio`` (a path or list of paths), ``decoder`` (name or null),
            ``device``, ``batch_size``, ``threads`` (null: torch's default), ``backend`` (``torch`` | ``onnx``).
        out: where the transcript lines go (default ``sys.stdout``).

    Returns:
        Exit status: 0 if every file was transcribed, 1 otherwise.
    """
    out = out or sys.stdout
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    audio = cfg.audio
    paths = [str(audio)] if isinstance(audio, str | Path) else [str(a) for a in audio]
    if not paths:
        raise ValueError("audio is empty: pass audio=[a.flac,b.wav]")
    batch_size = int(cfg.get("batch_size") or 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = load_model(
        cfg.model_path,
        device=cfg.get("device") or "cpu",
        decoder=cfg.get("decoder"),
        backend=cfg.get("backend") or "torch",
    )
    failed = 0
    for start in range(0, len(paths), batch_size):
        names, feats = [], []
        for p in paths[start : start + batch_size]:
            try:
                wave, rate = read_audio(p)
                feats.append(model.features(wave, rate, p))  # a bad file fails alone, not its batch
            except ValueError as err:
                log.error("%s", err)
                failed += 1
                continue
            names.append(p)
        for name, text in zip(names, model.decode_features(feats), strict=True):
            out.write(f"{name}\t{text}\n")
        out.flush()
    if failed:
        log.error("%d of %d files could not be transcribed", failed, len(paths))
    return 1 if failed else 0
