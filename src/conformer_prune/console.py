"""What the entry points print: known-harmless third-party noise filtered by name (installed by
:func:`conformer_prune.cli.entry.entry_point`) and C-level chatter silenced (:func:`quiet_fds`).

Each filter names what it drops and why it is harmless; nothing is filtered by category or module
wholesale, so a new warning from the same library still shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence

log = logging.getLogger(__name__)

KNOWN_WARNINGS: tuple[tuple[str, str], ...] = (
    # lightning's _pytree helper on torch >= 2.10: a deprecation inside Lightning, nothing a user can act on
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", "lightning.pytorch.utilities._pytree on recent torch"),
    # bf16-mixed (the CPU default): the summary sizes the weights in fp32, which is what they are stored in
    (r"Precision bf16-mixed is not supported by the model summary", "Lightning's model summary under bf16-mixed"),
)
"""``(message regex, where it comes from)`` of warnings ignored at the entry points."""

KNOWN_LOG_LINES: tuple[tuple[str, str], ...] = (
    (r"💡 Tip: For seamless cloud logging", "Lightning's LitLogger advertisement"),
    (r"Trainer already configured with model summary callbacks", "our callbacks bring their own model summary"),
    (r"TPU available: False, using: 0 TPU cores", "no TPU: nothing to act on (GPU availability is still shown)"),
    (
        r"`Trainer\(limit_val_batches=1\.0\)` was configured so 100% of the batches will be used",
        "the default restated (conf/trainer sets it so that it can be overridden)",
    ),
)
"""``(message regex, what it is)`` of Lightning info lines dropped at the entry points."""

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                     "lightning.fabric.utilities.rank_zero")  # fmt: skip

LM_LOADER_CHATTER: tuple[str, ...] = (
    r"Loading the LM will be faster if you build a binary file\.",
    r"Reading .*",
    r"-*5-*10-*15-*20.*100\s*",  # KenLM's progress ruler ...
    r"\*+\s*",  # ... and its 100 stars
)
"""Lines KenLM (in flashlight-text) prints to stdout/stderr while it reads an ARPA file."""


class _DropMessages(logging.Filter):
    def __init__(self, patterns: Sequence[str]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return self.pattern.match(record.getMessage()) is None


def quiet_third_party() -> None:
    """Ignore :data:`KNOWN_WARNINGS` and drop :data:`KNOWN_LOG_LINES` (idempotent)."""
    for pattern, _ in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    drop = _DropMessages([pattern for pattern, _ in KNOWN_LOG_LINES])
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(drop)


@contextlib.contextmanager
def quiet_fds(drop: Sequence[str] = LM_LOADER_CHATTER) -> Iterator[None]:
    """Capture what C/C++ code writes to file descriptors 1 and 2 inside; re-emit the lines not matching ``drop``.

    For libraries that print with ``printf``/``std::cerr`` (Python-level redirection cannot catch
    them). If the code inside raises, everything captured is re-emitted, so no error text is lost.
    """
    pattern = re.compile("|".join(f"(?:{p})" for p in drop))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fds = [1, 2]  # what C code writes to, whatever sys.stdout / sys.stderr are
    with tempfile.TemporaryFile(mode="w+b") as capture:
        saved = [os.dup(fd) for fd in fds]
        failed = True
        try:
            for fd in fds:
                os.dup2(capture.fileno(), fd)
            yield
            failed = False
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = text if failed else "".join(
                line for line in text.splitlines(keepends=True) if not pattern.fullmatch(line.rstrip("\r\n"))
            )  # fmt: skip
            if kept.strip():
                sys.stderr.write(kept)
                sys.stderr.flush()
