"""Plain-PyTorch models: Conformer encoder, CTC and Transducer heads, losses and decoders."""

from conformer_prune.models.attention import RelPositionMultiHeadAttention
from conformer_prune.models.conformer import ConformerBlock, ConformerEncoder, ConvModule, FeedForward
from conformer_prune.models.subsampling import Conv2dSubsampling

__all__ = [
    "ConformerBlock",
    "ConformerEncoder",
    "Conv2dSubsampling",
    "ConvModule",
    "FeedForward",
    "RelPositionMultiHeadAttention",
]
