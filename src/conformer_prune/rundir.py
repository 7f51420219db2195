"""Run directories: where a run's files are, what a path points at, and one run per directory.

Layout: ``<run>/.hydra/config.yaml`` (the composed config), ``checkpoints/*.ckpt``, ``tokenizer.model``,
``results.json``, ``export/`` (``config.yaml``, ``model.safetensors``, ``tokenizer.model``, ``report.json``),
and the word LM of a run that decoded with one (``lm.arpa``, ``lexicon.txt``). The locators below say what
a path a user gives points at (:func:`run_dir_of`, :func:`run_dir_of_checkpoint`, :func:`export_dir_of`,
:func:`checkpoint_of`, :func:`locate_model`); what the files hold is :mod:`conformer_prune.checkpoint`'s.

A directory holds one training run: its artefacts (``checkpoints/``, ``results.json``, ``export/``)
always come from the same run, at the same step.

* :func:`check_run_dir` (before the run starts, from the config validator): a directory that already
  holds a run may only be continued from its own checkpoint (``ckpt_path=<run>/checkpoints/...``);
  anything else would mix the artefacts of two runs, so it is refused up front.
* :func:`set_aside_previous_results` (when a run continues in its own directory): the ``results.json``
  and ``export/`` of the earlier, shorter run move to ``previous/step<N>/``, so until the continued
  run writes its own, the directory never shows results of another step than its checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from conformer_prune.errors import UserError

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
EXPORT_DIR = "export"
CHECKPOINT_DIR = "checkpoints"
PREVIOUS_DIR = "previous"
RUN_CONFIG = Path(".hydra") / "config.yaml"
RUN_ARTEFACTS = (CHECKPOINT_DIR, RESULTS_FILE, EXPORT_DIR)
"""What makes a directory a (started or finished) training run; Hydra's ``.hydra/`` and log do not."""
CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.model"
REPORT_FILE = "report.json"
LM_FILE = "lm.arpa"
LEXICON_FILE = "lexicon.txt"


# -- what a path points at ----------------------------------------------------------------------------
def run_dir_of(path: str | Path) -> Path | None:
    """The training run directory of a run dir, its export dir, or a checkpoint/report file inside it."""
    p = Path(str(path)).expanduser()
    if p.is_file():
        p = p.parent
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / RUN_CONFIG).is_file():
            return candidate
    return None


def read_run_config(*run_dirs: Path) -> tuple[Any, Path | None]:
    """The composed config (an OmegaConf ``DictConfig``, interpolations kept) of the first of ``run_dirs`` that
    has one, and its file; ``(None, None)`` when none has."""
    from omegaconf import OmegaConf

    for run_dir in run_dirs:
        file = Path(run_dir) / RUN_CONFIG
        if file.is_file():
            return OmegaConf.load(file), file
    return None, None


def run_dir_of_checkpoint(file: str | Path) -> Path:
    """``<run>`` of ``<run>/checkpoints/<name>.ckpt`` (where the run's tokenizer, config and LM are)."""
    return Path(file).parent.parent


def export_dir_of(path: str | Path, key: str) -> Path:
    """The export directory behind ``path``: an export dir, a file in it, or a run dir (``<run>/export``).

    Raises:
        ValueError: nothing usable at ``path``; the message names ``key`` and what to pass.
    """
    source = Path(str(path)).expanduser()
    if source.is_file():
        source = source.parent
    for candidate in (source, source / EXPORT_DIR):
        if (candidate / CONFIG_FILE).is_file() and (candidate / REPORT_FILE).is_file():
            return candidate
    raise ValueError(
        f"{key}={path}: not an export directory (no {CONFIG_FILE} + {REPORT_FILE} there or in "
        f"{source / EXPORT_DIR}); pass the <run>/export directory of a finished training run, or a "
        "scripts/export.py out_dir"
    )


def checkpoint_of(path: str | Path, key: str = "init_from") -> Path:
    """A training checkpoint: ``path``, or a run dir's evaluated checkpoint (``results.json``) or ``last.ckpt``.

    Raises:
        ValueError: no checkpoint there; the message names ``key``.
    """
    source = Path(str(path)).expanduser()
    if source.is_file():
        return source
    if source.is_dir():
        results = source / RESULTS_FILE
        if results.is_file():
            best = json.loads(results.read_text()).get("checkpoint")
            if best and Path(best).is_file():
                return Path(best)
        if (source / CHECKPOINT_DIR / "last.ckpt").is_file():
            return source / CHECKPOINT_DIR / "last.ckpt"
    raise ValueError(
        f"{key}={path}: no training checkpoint there; pass a <run>/checkpoints/*.ckpt file or a finished run dir"
    )


def locate_model(model_path: str | Path | None) -> tuple[str, Path]:
    """What ``model_path`` points at, without loading it: ``("checkpoint", file)`` or ``("export", dir)``.

    Raises:
        ValueError: nothing usable at ``model_path``; the message says what to pass.
    """
    if model_path in (None, "", "???"):
        raise ValueError("model_path is required: a <run>/checkpoints/*.ckpt file, an export dir or a run dir")
    path = Path(str(model_path)).expanduser()
    if path.is_file():
        return "checkpoint", path
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return "export", path
        if (path / EXPORT_DIR / CONFIG_FILE).is_file():
            return "export", path / EXPORT_DIR
        if (path / CHECKPOINT_DIR).is_dir():
            return "checkpoint", checkpoint_of(path, key="model_path")
    raise ValueError(
        f"model_path={model_path}: no checkpoint, export directory or run directory there (pass "
        "<run>/checkpoints/<best>.ckpt, <run>/export, or the run directory)"
    )


# -- one run per directory ----------------------------------------------------------------------------


def _present(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def run_artefacts(run_dir: str | Path) -> list[str]:
    """The :data:`RUN_ARTEFACTS` present (non-empty) in ``run_dir``."""
    run_dir = Path(run_dir)
    return [name for name in RUN_ARTEFACTS if _present(run_dir / name)]


def continues(run_dir: str | Path, ckpt_path: str | Path | None) -> bool:
    """Whether ``ckpt_path`` is one of ``run_dir``'s own checkpoints (a run continued in place)."""
    if not ckpt_path:
        return False
    try:
        return Path(ckpt_path).expanduser().resolve().is_relative_to((Path(run_dir) / CHECKPOINT_DIR).resolve())
    except OSError:
        return False


def check_run_dir(run_dir: str | Path, ckpt_path: str | Path | None) -> None:
    """Refuse to train in a directory that holds another run.

    Raises:
        UserError: ``run_dir`` holds checkpoints, results or an export, and ``ckpt_path`` is not one of
            its checkpoints.
    """
    present = run_artefacts(run_dir)
    if not present or continues(run_dir, ckpt_path):
        return
    raise UserError(
        f"`hydra.run.dir`={run_dir} already holds a run ({', '.join(present)}): training there would mix the "
        "artefacts of two runs. Fix: choose another hydra.run.dir, or continue that run with "
        f"ckpt_path={Path(run_dir) / CHECKPOINT_DIR / 'last.ckpt'}"
    )


def set_aside_previous_results(run_dir: str | Path) -> Path | None:
    """Move ``results.json`` and ``export/`` of an earlier run of ``run_dir`` to ``previous/step<N>/``.

    Returns:
        Where they went, or ``None`` when there was nothing to move.
    """
    run_dir = Path(run_dir)
    stale = [run_dir / name for name in (RESULTS_FILE, EXPORT_DIR) if (run_dir / name).exists()]
    if not stale:
        return None
    step = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        step = json.loads((run_dir / RESULTS_FILE).read_text()).get("global_step")
    name = f"step{int(step):06d}" if isinstance(step, int) else "unknown-step"
    dest = run_dir / PREVIOUS_DIR / name
    suffix = 1
    while dest.exists():
        dest, suffix = run_dir / PREVIOUS_DIR / f"{name}-{suffix}", suffix + 1
    dest.mkdir(parents=True)
    for path in stale:
        path.rename(dest / path.name)
    log.warning(
        "continuing the run in %s: the results and export of its earlier run (step %s) moved to %s",
        run_dir,
        step if step is not None else "?",
        dest,
    )
    return dest
