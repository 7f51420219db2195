"""Text decoders, one protocol for CTC and Transducer models (:mod:`conformer_prune.decoding.base`): greedy and
beam search for both heads, lexicon + word n-gram LM beam search for CTC (:mod:`~conformer_prune.decoding.lm`
trains and reads the LM)."""

from conformer_prune.decoding.base import Decoder, TextTokenizer, greedy_texts
from conformer_prune.decoding.ctc import GreedyCTCDecoder, PrefixBeamCTCDecoder, ctc_prefix_beam_search
from conformer_prune.decoding.lexicon import LexiconLMCTCDecoder
from conformer_prune.decoding.lm import NGramLM, read_arpa, train_ngram_lm
from conformer_prune.decoding.transducer import TransducerBeamDecoder, TransducerGreedyDecoder

__all__ = [
    "Decoder",
    "GreedyCTCDecoder",
    "LexiconLMCTCDecoder",
    "NGramLM",
    "PrefixBeamCTCDecoder",
    "TextTokenizer",
    "TransducerBeamDecoder",
    "TransducerGreedyDecoder",
    "ctc_prefix_beam_search",
    "greedy_texts",
    "read_arpa",
    "train_ngram_lm",
]
