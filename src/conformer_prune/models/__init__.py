"""Plain-PyTorch models: Conformer encoder, CTC and Transducer heads, losses, decoders, n-gram LM."""

from conformer_prune.models.attention import RelPositionMultiHeadAttention
from conformer_prune.models.conformer import ConformerBlock, ConformerEncoder, ConvModule, FeedForward
from conformer_prune.models.ctc import CTCModel, ctc_greedy_ids
from conformer_prune.models.decoding import GreedyCTCDecoder, LexiconLMCTCDecoder, PrefixBeamCTCDecoder
from conformer_prune.models.lm import NGramLM, read_arpa, train_ngram_lm
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
    "GreedyCTCDecoder",
    "Joiner",
    "LexiconLMCTCDecoder",
    "NGramLM",
    "Predictor",
    "PrefixBeamCTCDecoder",
    "RelPositionMultiHeadAttention",
    "TransducerModel",
    "ctc_greedy_ids",
    "read_arpa",
    "rnnt_loss",
    "train_ngram_lm",
]
