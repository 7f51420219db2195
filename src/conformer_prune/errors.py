"""User errors: what they are, and how they read.

A *user error* is a bad config value, data file or checkpoint: a :class:`UserError`, or a
``ValueError`` raised by this package's own code (the house style raises ``ValueError`` naming the
key or file and the fix, and keeps ``assert`` for internal invariants). Hydra's ``instantiate`` wraps
what a constructor raises in an ``InstantiationException``; the error inside counts.

:func:`format_user_error` makes the one paragraph the entry points print (``Error: <what, where, the
fix>``); the boundary that prints it, with exit status 1 and no traceback, is
:func:`conformer_prune.cli.entry.entry_point` (and, before the run directory exists, the config validator).
``HYDRA_FULL_ERROR=1`` shows the traceback instead. Anything else (an internal bug, a ``ValueError``
raised inside a third-party library) keeps its traceback.

No Hydra import at module level: library code (down to :func:`conformer_prune.load_model`) imports this.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
FULL_ERROR_ENV = "HYDRA_FULL_ERROR"


class UserError(ValueError):
    """A bad config value, data file or checkpoint; the message names the key or file and the fix."""


def _raised_in_package(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is this package's code."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    try:
        return Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def user_error(err: BaseException | None) -> BaseException | None:
    """The user error behind ``err`` (itself, or what Hydra's ``instantiate`` wrapped), else ``None``."""
    from hydra.errors import InstantiationException

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, UserError) or (isinstance(err, ValueError) and _raised_in_package(err)):
            return err
        if not isinstance(err, InstantiationException):
            return None
        err = err.__cause__
    return None


def one_paragraph(message: str) -> str:
    """``message`` without blank lines or trailing spaces (a multi-line message stays readable)."""
    lines = [line.rstrip() for line in str(message).strip().splitlines()]
    return "\n".join(line for line in lines if line)


def log_to_files(text: str, level: int = logging.INFO, name: str = __name__) -> None:
    """Write ``text`` to the log *files* of the root logger only (e.g. Hydra's ``<run>/<job>.log``).

    For what is already printed on the console in another form (a rich table, an error message).
    """
    record = logging.LogRecord(name, level, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
            handler.handle(record)


FULL_ERROR_HINT = f"Set the environment variable {FULL_ERROR_ENV}=1 for a complete stack trace."
"""What follows the message (Hydra's own wording, so every error of an entry point ends the same way)."""


def format_user_error(err: BaseException) -> str:
    """``Error: <message>`` as one paragraph."""
    return f"Error: {one_paragraph(str(err))}"


def report_user_error(err: BaseException) -> str:
    """Print ``err`` as ``Error: ...`` (then :data:`FULL_ERROR_HINT`) on stderr and into the log files;
    returns the message. For code that ends the process itself (the config validator)."""
    text = format_user_error(err)
    log_to_files(text, logging.ERROR)
    sys.stderr.write(f"{text}\n\n{FULL_ERROR_HINT}\n")
    sys.stderr.flush()
    return text


def full_error() -> bool:
    """Whether the user asked for tracebacks (``HYDRA_FULL_ERROR=1``, as Hydra reads it)."""
    return os.environ.get(FULL_ERROR_ENV) == "1"
