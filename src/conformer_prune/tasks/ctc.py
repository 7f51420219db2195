"""Lightning task for Conformer-CTC."""

from __future__ import annotations

from conformer_prune.tasks.base import ASRTask


class CTCTask(ASRTask):
    """:class:`ASRTask` for a :class:`~conformer_prune.models.ctc.CTCModel`; validation decodes greedily."""
