"""The corpus plan: speakers drawn per subset (never overlapping), evaluation sentences first, chapters
balanced over the workers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from conformer_prune.data.corpus.config import (
    ESPEAK_ACCENTS,
    ESPEAK_VARIANTS,
    EVAL_SUBSETS,
    FLITE_VOICES,
    PAD_SECONDS,
    SUBSET_PLAN,
    ChapterTask,
    CorpusConfig,
    CorpusPlan,
    SpeakerSpec,
)
from conformer_prune.data.corpus.engines import engine_versions, resolve_engines
from conformer_prune.data.corpus.render import snap_warp
from conformer_prune.data.corpus.text import filter_vocabulary, load_sentences, merge_sentences, tts_text

log = logging.getLogger(__name__)


def _warp(value: float) -> float:
    return round(float(snap_warp(value)), 6)


def _draw_speakers(subset: str, count: int, engines: Sequence[str], rng: np.random.Generator) -> list[SpeakerSpec]:
    """``count`` speakers of ``subset``, alternating between the engines."""
    role, variant_pool, first_id = SUBSET_PLAN[subset]
    pools: list[list[tuple[str, str, str]]] = []
    if "espeak" in engines:
        accents = ESPEAK_ACCENTS[role]
        # Cycle accents first and alternate sexes: any 2 x len(accents) consecutive slots cover all pairs.
        pools.append(
            [("espeak", accents[i % len(accents)], "MF"[(i + i // len(accents)) % 2]) for i in range(2 * len(accents))]
        )
    if "flite" in engines and FLITE_VOICES[role]:
        pools.append([("flite", voice, sex) for voice, sex in FLITE_VOICES[role]])
    slots = [pools[i % len(pools)][(i // len(pools)) % len(pools[i % len(pools)])] for i in range(count)]
    speakers = []
    for i, (engine, family, sex) in enumerate(slots):
        common = {
            "speaker": first_id + i,
            "subset": subset,
            "engine": engine,
            "family": family,
            "sex": sex,
            "snr_db": round(float(rng.uniform(25.0, 45.0)), 2),
        }
        if engine == "espeak":
            variant = str(rng.choice(ESPEAK_VARIANTS[sex][variant_pool]))
            speakers.append(
                SpeakerSpec(
                    variant=variant,
                    warp=_warp(rng.uniform(0.90, 1.10)),
                    rate=int(rng.integers(140, 186)),
                    pitch=int(rng.integers(25, 76)),
                    pitch_range=int(rng.integers(30, 91)),
                    **common,
                )
            )
        else:
            low, high = (0.95, 1.08) if sex == "F" else (0.90, 1.10)
            speakers.append(
                SpeakerSpec(
                    variant="",
                    warp=_warp(rng.uniform(low, high)),
                    stretch=round(float(rng.uniform(0.90, 1.15)), 3),
                    **common,
                )
            )
    return speakers


def plan_corpus(config: CorpusConfig) -> CorpusPlan:
    """Decide speakers, chapters and the text of every utterance (no audio yet)."""
    engines = resolve_engines(config.engines)
    sentences = load_sentences(config.sentences)
    pool = filter_vocabulary(sentences, config.vocab_top)
    if not pool:
        raise ValueError(f"corpus.vocab_top={config.vocab_top} leaves no sentence: raise it")
    order = np.random.default_rng([config.seed, 1]).permutation(len(pool))
    groups = merge_sentences([pool[i] for i in order], config.min_words)
    cursor = 0
    speakers: list[SpeakerSpec] = []
    tasks: list[ChapterTask] = []
    transcripts: dict[str, list[str]] = {}
    train_groups_used = 0
    # Evaluation subsets first: their sentences are taken from the pool before training sees any.
    for index, subset in enumerate((*EVAL_SUBSETS, "train-clean-100")):
        is_train = subset == "train-clean-100"
        count = config.train_speakers if is_train else config.eval_speakers
        minutes = config.train_minutes if is_train else config.eval_minutes
        subset_speakers = _draw_speakers(subset, count, engines, np.random.default_rng([config.seed, 2, index]))
        speakers.extend(subset_speakers)
        chapter_seconds = minutes * 60.0 / (count * config.chapters_per_speaker)
        train_start = cursor
        for spk in subset_speakers:
            for c in range(config.chapters_per_speaker):
                chapter = spk.speaker * 10 + c
                directory = f"{subset}/{spk.speaker}/{chapter}"
                items: list[tuple[str, str]] = []
                lines: list[str] = []
                seconds = next_seconds = 0.0
                # Stop when the next utterance would overshoot by more than half its length.
                while not items or seconds + next_seconds / 2 < chapter_seconds:
                    if is_train:
                        if cursor >= len(groups):
                            if train_start >= len(groups):
                                raise ValueError(
                                    f"corpus: the dev/test subsets used all {len(groups)} sentence groups; none is "
                                    "left for training. Fix: raise corpus.vocab_top or lower corpus.eval_minutes"
                                )
                            cursor = train_start  # training sentences may be re-read by other speakers
                        group = groups[cursor]
                        train_groups_used += 1
                    else:
                        if cursor >= len(groups):
                            raise ValueError(
                                f"corpus: only {len(groups)} sentence groups pass vocab_top={config.vocab_top}, too "
                                "few for four dev/test subsets of corpus.eval_minutes="
                                f"{config.eval_minutes}. Fix: raise corpus.vocab_top or lower corpus.eval_minutes"
                            )
                        group = groups[cursor]
                    cursor += 1
                    utt_id = f"{spk.speaker}-{chapter}-{len(items):04d}"
                    text = " ".join(group)
                    items.append((utt_id, tts_text(group)))
                    lines.append(f"{utt_id} {text}")
                    seconds += len(text.split()) / spk.words_per_second() + PAD_SECONDS
                    if cursor < len(groups):
                        upcoming = groups[cursor]
                    else:  # training wraps around; evaluation would stop with an error
                        upcoming = groups[train_start] if is_train and train_start < len(groups) else group
                    next_seconds = sum(len(g.split()) for g in upcoming) / spk.words_per_second() + PAD_SECONDS
                transcripts[directory] = lines
                tasks.append(ChapterTask(spk, directory, items, config.seed, seconds))
    train_distinct = min(max(1, len(groups) - _eval_groups(tasks)), max(1, train_groups_used))
    text_stats = {
        "source": "WordNet 3.0 example sentences" if config.sentences is None else str(config.sentences),
        "sentences_in_list": len(sentences),
        "sentences_after_vocab_filter": len(pool),
        "utterance_groups": len(groups),
        "eval_groups": _eval_groups(tasks),
        "train_reads_per_group": round(train_groups_used / train_distinct, 3),
    }
    return CorpusPlan(config, engine_versions(engines), speakers, tasks, transcripts, text_stats)


def _eval_groups(tasks: Sequence[ChapterTask]) -> int:
    return sum(len(t.items) for t in tasks if t.speaker.subset != "train-clean-100")
