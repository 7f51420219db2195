"""Data: LibriSpeech-layout reader, embedded synthetic corpus, features, tokenizer, batching.

Imports are lazy so that corpus worker processes (and ``import conformer_prune.data.corpus``) do
not pay for torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LIBRISPEECH_SUBSETS": "librispeech",
    "SUBSET_ALIASES": "librispeech",
    "Utterance": "librispeech",
    "read_subsets": "librispeech",
    "download_subsets": "download",
    "CorpusConfig": "corpus",
    "generate_corpus": "corpus",
    "Tokenizer": "tokenizer",
    "LogMelFeatures": "features",
    "GlobalCMVN": "features",
    "SpecAugment": "features",
    "FeatureExtractor": "features",
    "DurationBucketSampler": "batching",
    "LibriSpeechDataModule": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
