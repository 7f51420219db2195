"""One training run per run directory: its artefacts (``checkpoints/``, ``results.json``, ``export/``)
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

from conformer_prune.errors import UserError

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
EXPORT_DIR = "export"
CHECKPOINT_DIR = "checkpoints"
PREVIOUS_DIR = "previous"
RUN_ARTEFACTS = (CHECKPOINT_DIR, RESULTS_FILE, EXPORT_DIR)
"""What makes a directory a (started or finished) training run; Hydra's ``.hydra/`` and log do not."""


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
