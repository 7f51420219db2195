"""Lightning task for Conformer-Transducer (RNN-T)."""

from __future__ import annotations

from conformer_prune.tasks.base import ASRTask


class TransducerTask(ASRTask):
    """:class:`ASRTask` for a :class:`~conformer_prune.models.transducer.TransducerModel`;
    validation decodes greedily."""
