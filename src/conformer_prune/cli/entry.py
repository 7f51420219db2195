"""The context every ``scripts/*.py`` runs its function in: known noise filtered, user errors reported.

A user error (:mod:`conformer_prune.errors`) raised inside :func:`entry_point` is logged to the run's
log file and re-raised as :class:`UserErrorReport`, a Hydra ``CompactHydraException``: Hydra prints its
message alone (one paragraph, then "Set the environment variable HYDRA_FULL_ERROR=1 ..."), exits with
status 1, and in a multirun marks that job failed while the others still run. ``HYDRA_FULL_ERROR=1``
lets the original exception through with its traceback; any other exception keeps its traceback.

Imported by the scripts only (it imports Hydra).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from hydra.errors import CompactHydraException

from conformer_prune.console import quiet_third_party
from conformer_prune.errors import format_user_error, full_error, log_to_files, user_error


class UserErrorReport(CompactHydraException):
    """A user error, for Hydra to print as its message alone; ``__cause__`` is the error itself."""


@contextlib.contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Re-raise a user error raised inside as :class:`UserErrorReport` (see the module doc)."""
    try:
        yield
    except Exception as err:
        found = user_error(err)
        if found is None or full_error():
            raise
        text = format_user_error(found)
        log_to_files(text, logging.ERROR)
        raise UserErrorReport(text) from found


@contextlib.contextmanager
def entry_point() -> Iterator[None]:
    """:func:`~conformer_prune.console.quiet_third_party`, then :func:`exit_on_user_error`."""
    quiet_third_party()
    with exit_on_user_error():
        yield
