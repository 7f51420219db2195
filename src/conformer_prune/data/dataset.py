"""Utterances to batches: :class:`UtteranceDataset` (an utterance -> raw log-mel features and token ids, cached,
speed-perturbed in training) and :class:`Collate` (CMVN, padding, SpecAugment in training).

Batches are dicts::

    features      (B, T, F) float32, CMVN-normalised, zero-padded (SpecAugment in training only)
    feature_lens  (B,) int64
    tokens        (B, U) int64, padded with 0 (the blank)
    token_lens    (B,) int64
    texts         list[str]  reference transcripts
    ids           list[str]  utterance ids

Shapes: ``B`` batch, ``T`` frames, ``F`` mel bins, ``U`` tokens.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from conformer_prune.data.batching import DurationBucketSampler
from conformer_prune.data.features import FeatureExtractor, GlobalCMVN, SpecAugment, speed_perturb
from conformer_prune.data.librispeech import DataError, Utterance, load_audio
from conformer_prune.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

Batch = dict[str, Any]


class UtteranceDataset(Dataset):
    """Utterances -> ``{"features": raw log-mel (T, F), "tokens", "text", "id"}``.

    Args:
        utterances: what to serve.
        tokenizer: encodes the transcripts (once, here).
        extractor: computes the raw log-mel features (CMVN is applied in the collate function).
        cache: keep computed features in RAM, so later epochs skip FLAC decoding.
        speeds: speed-perturbation factors drawn uniformly per item (``(1.0,)``: none).
        seed: base seed of the speed draws.
        skip_errors: an item whose audio cannot be decoded is served as ``None`` (dropped from its batch,
            logged once, listed in :attr:`failed`); ``False``: its ``ValueError`` propagates.

    The speed of an item is a function of (``seed``, the epoch of :attr:`sampler`, the item's index), as
    the SpecAugment masks are: a run resumed mid-epoch perturbs every utterance as the uninterrupted
    run does. The data module sets :attr:`sampler` to the training batch sampler.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        tokenizer: Tokenizer,
        extractor: FeatureExtractor,
        *,
        cache: bool = True,
        speeds: Sequence[float] = (1.0,),
        seed: int = 0,
        skip_errors: bool = True,
    ) -> None:
        self.utterances = list(utterances)
        self.extractor = extractor
        self.tokens = [torch.tensor(tokenizer.encode(u.text), dtype=torch.long) for u in self.utterances]
        self.cache = cache
        self.speeds = tuple(float(s) for s in speeds) or (1.0,)
        self.seed = int(seed)
        self.sampler: DurationBucketSampler | None = None
        self.skip_errors = skip_errors
        self._features: dict[tuple[int, float], Tensor] = {}
        self.failed: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utterances]

    def features(self, index: int, speed: float = 1.0) -> Tensor:
        """Raw log-mel ``(T, F)`` of item ``index`` at ``speed`` (cached when enabled)."""
        key = (index, speed)
        cached = self._features.get(key)
        if cached is not None:
            return cached
        utt = self.utterances[index]
        try:
            audio, sample_rate = load_audio(utt)
        except (RuntimeError, OSError) as err:
            raise DataError(
                f"{utt.path}: cannot decode the audio ({err}). Fix: re-extract the subset, or delete the file and "
                "its transcript line"
            ) from err
        waveform = torch.from_numpy(np.ascontiguousarray(audio.T if audio.ndim == 2 else audio))
        waveform = self.extractor.prepare(waveform, sample_rate)
        feats = self.extractor.logmel(speed_perturb(waveform, speed, self.extractor.sample_rate))
        if self.cache:
            self._features[key] = feats
        return feats

    def drop(self, indices: Sequence[int]) -> None:
        """Remove items ``indices`` (e.g. undecodable ones) before a sampler is built; the cache follows."""
        gone = set(indices)
        keep = [i for i in range(len(self.utterances)) if i not in gone]
        new_index = {old: new for new, old in enumerate(keep)}
        self.utterances = [self.utterances[i] for i in keep]
        self.tokens = [self.tokens[i] for i in keep]
        self._features = {(new_index[i], s): f for (i, s), f in self._features.items() if i in new_index}

    def precompute(self) -> None:
        """Compute every item's features now (before DataLoader workers fork, so they share them)."""
        for index in range(len(self)):
            for speed in self.speeds:
                self.features(index, speed)

    def speed(self, index: int) -> float:
        """Speed factor of item ``index`` in the sampler's current epoch."""
        if len(self.speeds) == 1:
            return self.speeds[0]
        epoch = getattr(self.sampler, "epoch", 0)
        return self.speeds[int(np.random.default_rng([self.seed, epoch, index]).integers(len(self.speeds)))]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        utt = self.utterances[index]
        try:
            feats = self.features(index, self.speed(index))
        except ValueError as err:
            if not self.skip_errors:
                raise
            if utt.utt_id not in self.failed:
                log.warning("%s (skipped)", err)
            self.failed[utt.utt_id] = str(err)
            return None
        return {"features": feats, "tokens": self.tokens[index], "text": utt.text, "id": utt.utt_id}


class Collate:
    """Pads a list of items into a batch dict, applies CMVN and (training) SpecAugment.

    SpecAugment draws from a generator seeded by (``seed``, the sampler's epoch, the batch's utterance
    ids): the masks of a batch do not depend on what ran before it, so a resumed run sees the same ones.

    Args:
        cmvn: global normalisation.
        spec_augment: masks for training batches; ``None`` for evaluation.
        seed: base seed of the masks.
        sampler: the batch sampler (its ``epoch`` enters the seed); ``None``: epoch 0.
    """

    def __init__(
        self,
        cmvn: GlobalCMVN,
        spec_augment: SpecAugment | None = None,
        seed: int = 0,
        sampler: DurationBucketSampler | None = None,
    ) -> None:
        self.cmvn = cmvn
        self.seed = seed
        self.sampler = sampler
        self.spec_augment = spec_augment
        if self.spec_augment is not None:
            self.spec_augment.train()

    def __call__(self, items: Sequence[dict[str, Any] | None]) -> Batch:
        kept = [item for item in items if item is not None]
        if not kept:
            raise DataError(
                "every utterance of a batch failed to decode (see the warnings above for the files). Fix: re-extract "
                "the data"
            )
        feature_lens = torch.tensor([item["features"].shape[0] for item in kept], dtype=torch.long)
        features = pad_sequence([item["features"] for item in kept], batch_first=True)  # (B, T, F)
        valid = torch.arange(features.shape[1])[None, :] < feature_lens[:, None]  # (B, T)
        features = self.cmvn(features) * valid[:, :, None]
        if self.spec_augment is not None:
            epoch = getattr(self.sampler, "epoch", 0)
            key = f"{self.seed}/{epoch}/" + "|".join(item["id"] for item in kept)
            generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
            features = self.spec_augment(features, feature_lens, generator=generator)
        tokens = pad_sequence([item["tokens"] for item in kept], batch_first=True, padding_value=0)  # (B, U)
        token_lens = torch.tensor([len(item["tokens"]) for item in kept], dtype=torch.long)
        return {
            "features": features.float().contiguous(),
            "feature_lens": feature_lens,
            "tokens": tokens.long(),
            "token_lens": token_lens,
            "texts": [item["text"] for item in kept],
            "ids": [item["id"] for item in kept],
        }
