"""Plain-PyTorch models: Conformer encoder, CTC and Transducer heads, losses (the decoders: ``decoding/``)."""

from conformer_prune.models.attention import RelPositionMultiHeadAttention
from conformer_prune.models.conformer import ConformerBlock, ConformerEncoder, ConvModule, FeedForward
from conformer_prune.models.ctc import CTCModel, ctc_greedy_ids
from conformer_prune.models.losses import rnnt_loss
from conformer_prune.models.subsampling import Conv2dSubsampling
from conformer_prune.models.transducer import Joiner, Predictor, TransducerModel

__all__ = [
    "CTCModel",
    "ConformerBlock",
    "ConformerEncoder",
    "Conv2dSubsampling",
    "ConvModule",
    "FeedForward",
    "Joiner",
    "Predictor",
    "RelPositionMultiHeadAttention",
    "TransducerModel",
    "ctc_greedy_ids",
    "rnnt_loss",
]
