"""Lightning task for Conformer-Transducer (RNN-T)."""

from __future__ import annotations

from conformer_prune.tasks.base import ASRTask, Batch


class TransducerTask(ASRTask):
    """:class:`ASRTask` for a :class:`~conformer_prune.models.transducer.TransducerModel`;
    validation decodes greedily."""

    def greedy_transcribe(self, batch: Batch) -> list[str]:
        enc, lens = self.net(batch["features"], batch["feature_lens"])
        return [self.tokenizer.decode(ids) for ids in self.net.greedy_decode(enc, lens)]
