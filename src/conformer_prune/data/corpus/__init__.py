"""The embedded corpus: synthetic English speech in the exact LibriSpeech layout, made offline.

Speech comes from eSpeak NG (the pip wheel ``espeakng-loader``, driven through ctypes; always
there) plus the Debian ``flite`` voices kal16, rms, slt and awb when ``flite`` is on PATH (far more
natural). Text comes from WordNet 3.0 example sentences shipped in
``conformer_prune/resources/sentences_en.txt`` (licence notice beside it).

A *speaker* is (engine, voice family, variant, pitch, rate, pitch range or duration stretch,
spectral warp, noise level). The five subsets keep LibriSpeech's meaning:

* ``train-clean-100``: training speakers of the training voice families (eSpeak ``en-us``,
  ``en``, ``en-gb-x-rp``, ``en-029`` with the *seen* variants; flite kal16, rms, slt);
* ``dev-clean`` / ``test-clean``: new speakers of the training families (held-out eSpeak variants,
  fresh pitch / rate / warp / noise draws);
* ``dev-other`` / ``test-other``: voice families never used in training (eSpeak
  ``en-gb-scotland``, ``en-us-nyc`` / ``en-gb-x-gbclan``, ``en-gb-x-gbcwmd``; flite awb).

Speakers never overlap between subsets and evaluation sentences are drawn first, so no sentence of
a dev or test subset occurs anywhere else. Every utterance is a pure function of (seed, its id,
its speaker, its text): eSpeak keeps state between utterances, so each chapter is synthesised in a
freshly forked process. The same settings and seed therefore give a byte-identical tree, whatever
``jobs`` is.

Layout: ``<root>/LibriSpeech/<subset>/<spk>/<chap>/<spk>-<chap>-<utt:04d>.flac`` (16 kHz mono
PCM_16), ``<spk>-<chap>.trans.txt``, plus ``SPEAKERS.TXT``, ``CHAPTERS.TXT`` and ``corpus.json``
(engines, voices, parameters, seed, settings). The tree is built under a temporary name and
renamed when complete, so a half-written corpus is never mistaken for a finished one.

The package, by concern: :mod:`~conformer_prune.data.corpus.config` (settings, plan types, voice and subset
constants), :mod:`~conformer_prune.data.corpus.text`, :mod:`~conformer_prune.data.corpus.engines`,
:mod:`~conformer_prune.data.corpus.render`, :mod:`~conformer_prune.data.corpus.plan` and
:mod:`~conformer_prune.data.corpus.build` (ids, manifests, generation); the names are importable from
``conformer_prune.data.corpus``.
"""

from __future__ import annotations

from conformer_prune.data.corpus.build import (
    corpus_id,
    corpus_root,
    corpus_settings,
    default_root,
    find_corpus,
    generate_corpus,
    generate_from_config,
    missing_engines,
    read_manifest,
    regeneration_hint,
    sentences_digest,
)
from conformer_prune.data.corpus.config import (
    CORPUS_SUBSETS,
    ENGINE_COST,
    ENGINES,
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    ESPEAK_WORDS_PER_MINUTE_RATIO,
    EVAL_SUBSETS,
    FLITE_VOICES,
    FLITE_WORDS_PER_SECOND,
    GENERATOR_VERSION,
    MANIFEST_NAME,
    PAD_SECONDS,
    SUBSET_PLAN,
    ChapterTask,
    CorpusConfig,
    CorpusPlan,
    SpeakerSpec,
)
from conformer_prune.data.corpus.engines import (
    _Espeak,
    engine_versions,
    flite_available,
    resolve_engines,
)
from conformer_prune.data.corpus.plan import (
    plan_corpus,
)
from conformer_prune.data.corpus.render import (
    WARP_GRID,
    resample_fft,
    snap_warp,
    synthesize_chapter,
    utterance_seed,
)
from conformer_prune.data.corpus.text import (
    extract_wordnet_sentences,
    filter_vocabulary,
    load_sentences,
    merge_sentences,
    tts_text,
)

__all__ = [
    "CORPUS_SUBSETS",
    "ChapterTask",
    "CorpusConfig",
    "CorpusPlan",
    "ENGINES",
    "ENGINE_COST",
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "ESPEAK_WORDS_PER_MINUTE_RATIO",
    "EVAL_SUBSETS",
    "FLITE_VOICES",
    "FLITE_WORDS_PER_SECOND",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "PAD_SECONDS",
    "SUBSET_PLAN",
    "SpeakerSpec",
    "WARP_GRID",
    "_Espeak",
    "corpus_id",
    "corpus_root",
    "corpus_settings",
    "default_root",
    "engine_versions",
    "extract_wordnet_sentences",
    "filter_vocabulary",
    "find_corpus",
    "flite_available",
    "generate_corpus",
    "generate_from_config",
    "load_sentences",
    "merge_sentences",
    "missing_engines",
    "plan_corpus",
    "read_manifest",
    "regeneration_hint",
    "resample_fft",
    "resolve_engines",
    "sentences_digest",
    "snap_warp",
    "synthesize_chapter",
    "tts_text",
    "utterance_seed",
]
