"""Lightning task for Conformer-CTC."""

from __future__ import annotations

from conformer_prune.models.decoding import GreedyCTCDecoder
from conformer_prune.tasks.base import ASRTask, Batch


class CTCTask(ASRTask):
    """:class:`ASRTask` for a :class:`~conformer_prune.models.ctc.CTCModel`; validation decodes greedily."""

    def greedy_transcribe(self, batch: Batch) -> list[str]:
        log_probs, lens = self.net(batch["features"], batch["feature_lens"])
        return GreedyCTCDecoder(self.tokenizer)(log_probs.float().cpu(), lens.cpu())
