"""Data benchmarks: embedded-corpus generation speed and feature-pipeline throughput.

    python benchmarks/bench_data.py [--train-minutes 10] [--eval-minutes 2] [--jobs 2] [--threads 1]

* ``gen_rtf``: audio seconds generated per wall second (eSpeak, plus flite when installed, with
  ``--jobs`` processes; planning, synthesis, FLAC writing and metadata included).
* ``feature_rtf``: audio seconds per wall second through FLAC decoding + 80-dim log-mel + CMVN, in
  one process with ``--threads`` torch threads (what the first training epoch pays per utterance).
* ``cached_epoch_rtf``: audio seconds per wall second of a training epoch served from the RAM
  feature cache (CMVN, padding, SpecAugment, batching).

The last line reads ``gen_rtf=<x> feature_rtf=<y>``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from conformer_prune.data.corpus import CORPUS_SUBSETS, CorpusConfig, generate_corpus
from conformer_prune.data.datamodule import LibriSpeechDataModule
from conformer_prune.data.features import FeatureExtractor
from conformer_prune.data.librispeech import load_audio, read_subsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-minutes", type=float, default=10.0)
    parser.add_argument("--eval-minutes", type=float, default=2.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the feature pipeline")
    parser.add_argument("--engines", default="auto", help="auto, or a comma list such as espeak")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    config = CorpusConfig(train_minutes=args.train_minutes, eval_minutes=args.eval_minutes, engines=args.engines)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        start = time.perf_counter()
        manifest = generate_corpus(config, tmp, jobs=args.jobs, progress=False)
        gen_wall = time.perf_counter() - start
        audio_s = sum(s["minutes"] for s in manifest["subsets"].values()) * 60
        size_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*.flac")) / 2**20
        gen_rtf = audio_s / gen_wall

        utts = read_subsets(tmp, list(CORPUS_SUBSETS), on_error="raise")
        extractor = FeatureExtractor()
        start = time.perf_counter()
        feats = []
        for utt in utts:
            audio, sr = load_audio(utt)
            feats.append(extractor.raw(audio, sr))
        extractor.cmvn.fit(feats)
        feats = [extractor.normalize(f) for f in feats]
        feature_wall = time.perf_counter() - start
        feature_audio = sum(u.duration for u in utts)
        feature_rtf = feature_audio / feature_wall

        dm = LibriSpeechDataModule(root=tmp, spec_augment={}, max_batch_seconds=60.0, cache_dir=f"{tmp}/cache")
        dm.setup("fit")  # fitting CMVN fills the feature cache
        loader = dm.train_dataloader()
        start = time.perf_counter()
        batches = sum(1 for _ in loader)
        cached_wall = time.perf_counter() - start
        train_audio = sum(dm._dataset("train").durations)

    print(f"engines: {manifest['engines']}")
    print(f"corpus: {audio_s / 60:.1f} min of audio, {size_mb:.1f} MB FLAC, minutes per subset "
          f"{ {k: v['minutes'] for k, v in manifest['subsets'].items()} }")  # fmt: skip
    print(f"generation: {gen_wall:.1f} s wall with jobs={args.jobs} -> {gen_rtf:.0f} audio s / wall s")
    print(f"features (decode + log-mel + CMVN, {args.threads} thread): {len(utts)} utts, {feature_audio:.0f} s of "
          f"audio in {feature_wall:.2f} s -> {feature_rtf:.0f} audio s / wall s")  # fmt: skip
    print(f"cached training epoch: {batches} batches, {train_audio:.0f} s of audio in {cached_wall:.2f} s -> "
          f"{train_audio / cached_wall:.0f} audio s / wall s")  # fmt: skip
    print(f"gen_rtf={gen_rtf:.1f} feature_rtf={feature_rtf:.1f}")


if __name__ == "__main__":
    main()
