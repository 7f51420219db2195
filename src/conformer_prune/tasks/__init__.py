"""Lightning tasks: training loops around the plain-PyTorch models."""

from conformer_prune.tasks.base import ASRTask
from conformer_prune.tasks.ctc import CTCTask
from conformer_prune.tasks.transducer import TransducerTask

__all__ = ["ASRTask", "CTCTask", "TransducerTask"]
