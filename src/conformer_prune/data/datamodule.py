"""LightningDataModule: LibriSpeech-layout tree -> tokenizer + features -> duration-bucketed batches
(:mod:`conformer_prune.data.dataset`: the dataset, the collation and the batch layout).

About 700 lines, one class: the data module's settings, stages, checks, loaders, resume state and data record
are one Lightning object's (its dataset and collation live in ``dataset.py``, the defaults of its settings
in dataclasses: :class:`DataFeatures`, :class:`~conformer_prune.data.tokenizer.TokenizerSettings`).

With ``corpus`` set, the tree is the embedded synthetic corpus, generated on first use under
``<root>/<corpus id>`` (the id hashes the corpus settings and the engines, so a changed corpus config
makes a new tree instead of overwriting one; ``engines: auto`` means what it resolved to when the
corpus was made, see :func:`~conformer_prune.data.corpus.find_corpus`).

Paths are made absolute when the module is built. :meth:`data_record` names exactly what was read;
it travels in checkpoints (:meth:`state_dict`), exports and ``results.json`` so that evaluation reads
the same data again (:mod:`conformer_prune.data.record`). :meth:`check` verifies, before anything is
trained or written, that the data can serve a stage.

The tokenizer and the CMVN statistics are trained / fitted on the training subsets and cached in
``cache_dir``; :meth:`state_dict` carries them (and the sampler position) into checkpoints.
Under DDP, run the Trainer with ``use_distributed_sampler=False``: the batch sampler splits
batches across ranks itself.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from conformer_prune.data.batching import DurationBucketSampler
from conformer_prune.data.corpus import (
    CORPUS_SUBSETS,
    GENERATOR_VERSION,
    CorpusConfig,
    corpus_root,
    generate_corpus,
    read_manifest,
    resolve_engines,
)
from conformer_prune.data.dataset import Batch, Collate, UtteranceDataset  # noqa: F401 - Batch: importable here as before
from conformer_prune.data.features import FeatureExtractor, FeatureSettings, SpecAugment
from conformer_prune.data.librispeech import (
    DataError,
    SkipReport,
    Utterance,
    available_subsets,
    expand_subsets,
    find_corpus_root,
    read_subsets,
)
from conformer_prune.data.tokenizer import (
    MODEL_TYPES,
    OOV_POLICIES,
    Tokenizer,
    TokenizerSettings,
    apply_alphabet_policy,
    out_of_alphabet,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataFeatures(FeatureSettings):
    """``data.features``: the front end (:class:`~conformer_prune.data.features.FeatureSettings`) and what the
    data module does with it; the one copy of their defaults.

    Args:
        speed_perturb: speed factors, one drawn per training utterance and epoch (``None``: none).
        cmvn_utterances: training utterances the CMVN statistics are fitted on.
    """

    speed_perturb: Sequence[float] | None = None
    cmvn_utterances: int = 2000


def _defaults(cls: type) -> dict[str, Any]:
    """Field -> default of a settings dataclass."""
    return {f.name: f.default for f in fields(cls)}


SPEC_AUGMENT_KEYS = tuple(p for p in inspect.signature(SpecAugment).parameters if p != "mask_value")
"""``data.spec_augment`` keys: :class:`~conformer_prune.data.features.SpecAugment`'s arguments (its signature
holds their defaults)."""


def _plain(value: Any) -> Any:
    """DictConfig / ListConfig / tuples -> dicts and lists (no omegaconf import)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """``given`` on top of ``defaults`` (plain values); an unknown key is an error naming ``data.<key>``."""
    given = _plain(given) or {}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DataError(f"data.{key}: unknown key(s) {unknown}; known keys are {sorted(defaults)}")
    return {**defaults, **given}


def _spec_augment_defaults() -> dict[str, Any]:
    return {k: inspect.signature(SpecAugment).parameters[k].default for k in SPEC_AUGMENT_KEYS}


def _subset_list(value: str | Sequence[str] | None, key: str) -> list[str]:
    if value is None:
        return []
    names = [value] if isinstance(value, str) else [str(v) for v in _plain(value)]
    if not all(names):
        raise DataError(f"data.{key} holds an empty subset name")
    return names


class LibriSpeechDataModule(L.LightningDataModule):
    """LibriSpeech (real, or the embedded synthetic corpus) for CTC / RNN-T training.

    Args:
        root: directory holding ``LibriSpeech/`` (or the ``LibriSpeech`` directory itself); with
            ``corpus`` set, the parent of the per-settings corpus directories.
        train_subsets: subsets (or aliases like ``train-960``) to train on.
        dev_subsets: validation subsets (one combined validation loader).
        test_subsets: test subsets (one combined test loader; see :meth:`eval_dataloader` for one
            subset at a time).
        tokenizer: ``model_type`` (char / unigram / bpe), ``vocab_size``, ``alphabet``,
            ``oov_policy`` (error / unk / drop: transcripts with characters outside the alphabet).
        features: ``sample_rate``, ``n_mels``, ``win_ms``, ``hop_ms``, ``n_fft``, ``log_floor``,
            ``speed_perturb`` (e.g. ``[0.9, 1.0, 1.1]``, training only; ``null`` for none),
            ``cmvn_utterances`` (training utterances the CMVN statistics are fitted on).
        spec_augment: SpecAugment settings (see :class:`SpecAugment`); ``null`` disables it.
        max_batch_seconds: bound on padded audio seconds per training batch.
        eval_max_batch_seconds: the same for dev/test batches (default: ``max_batch_seconds``).
        max_duration: training utterances longer than this (seconds) are malformed entries
            (``on_error`` decides); dev/test utterances are never dropped for length.
        num_workers: DataLoader workers (0 on a 2-core machine).
        on_error: ``skip`` (count and log malformed entries) or ``raise``.
        cache_dir: where tokenizer models and CMVN statistics are cached (default: ``<root>/cache``).
        cache_features: keep features in RAM after the first epoch.
        seed: batch-order seed.
        corpus: settings of the embedded corpus (:class:`CorpusConfig` fields plus ``jobs`` and
            ``progress``); ``None`` for a tree that already exists.
        pin_memory: pin batches (GPU training).
        eval_subsets: subsets evaluated one by one after training (:meth:`eval_subsets`); default:
            the dev and test subsets.
    """

    def __init__(
        self,
        root: str,
        train_subsets: str | Sequence[str] = ("train-clean-100",),
        dev_subsets: str | Sequence[str] = ("dev-clean",),
        test_subsets: str | Sequence[str] = ("test-clean",),
        tokenizer: Mapping[str, Any] | None = None,
        features: Mapping[str, Any] | None = None,
        spec_augment: Mapping[str, Any] | None = None,
        max_batch_seconds: float = 60.0,
        eval_max_batch_seconds: float | None = None,
        max_duration: float | None = None,
        num_workers: int = 0,
        on_error: str = "skip",
        cache_dir: str | None = None,
        cache_features: bool = True,
        seed: int = 0,
        corpus: Mapping[str, Any] | None = None,
        pin_memory: bool = False,
        eval_subsets: str | Sequence[str] | None = None,
        monitor_train_utterances: int = 0,
    ) -> None:
        super().__init__()
        root = os.path.abspath(Path(str(root)).expanduser())  # saved absolute: a run never depends on its cwd
        cache_dir = None if cache_dir is None else os.path.abspath(Path(str(cache_dir)).expanduser())
        self.save_hyperparameters()
        if on_error not in ("skip", "raise"):
            raise DataError(f"data.on_error must be 'skip' or 'raise', got {on_error!r}")
        if max_batch_seconds <= 0:
            raise DataError(f"data.max_batch_seconds must be > 0, got {max_batch_seconds}")
        self.base_root = Path(root)
        self.train_subsets = _subset_list(train_subsets, "train_subsets")
        self.dev_subsets = _subset_list(dev_subsets, "dev_subsets")
        self.test_subsets = _subset_list(test_subsets, "test_subsets")
        self._eval_subset_names = _subset_list(eval_subsets, "eval_subsets")
        self.tokenizer_cfg = _merge(_defaults(TokenizerSettings), tokenizer, "tokenizer")
        for key, allowed in (("model_type", MODEL_TYPES), ("oov_policy", OOV_POLICIES)):
            if self.tokenizer_cfg[key] not in allowed:
                raise DataError(f"data.tokenizer.{key} must be one of {list(allowed)}, got {self.tokenizer_cfg[key]!r}")
        self.feature_cfg = _merge(_defaults(DataFeatures), features, "features")
        self.spec_augment_cfg = (
            None if spec_augment is None else _merge(_spec_augment_defaults(), spec_augment, "spec_augment")
        )
        self.max_batch_seconds = float(max_batch_seconds)
        self.eval_max_batch_seconds = float(eval_max_batch_seconds or max_batch_seconds)
        self.max_duration = None if max_duration is None else float(max_duration)
        self.num_workers = int(num_workers)
        self.on_error = on_error
        self.cache_features = bool(cache_features)
        self.seed = int(seed)
        self.pin_memory = bool(pin_memory)
        if monitor_train_utterances < 0:
            raise DataError(f"data.monitor_train_utterances must be >= 0, got {monitor_train_utterances}")
        self.monitor_train_utterances = int(monitor_train_utterances)
        corpus = _plain(corpus)
        self._corpus_runtime: dict[str, Any] = {}
        self.corpus_config: CorpusConfig | None = None
        if corpus is not None:
            self._corpus_runtime = {k: corpus.pop(k) for k in ("jobs", "progress") if k in corpus}
            self.corpus_config = CorpusConfig.from_mapping(corpus, what="data.corpus")
        self._cache_dir = None if cache_dir is None else Path(cache_dir)
        self._data_root: Path | None = None
        self._tokenizer: Tokenizer | None = None
        self._extractor: FeatureExtractor | None = None
        self._train_utts: list[Utterance] | None = None
        self._datasets: dict[str, UtteranceDataset] = {}
        self._eval_sets: dict[str, UtteranceDataset] = {}
        self._skips = SkipReport()
        self._train_sampler: DurationBucketSampler | None = None
        self._pending_sampler_state: dict[str, Any] | None = None
        self._count_epoch = 0
        self._batches_done = 0

    # -- where the data is ---------------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        """The directory that holds ``LibriSpeech/`` (for the embedded corpus: its own directory), absolute."""
        if self._data_root is None:
            if self.corpus_config is not None:
                self._data_root = corpus_root(self.base_root, self.corpus_config)
            else:
                self._data_root = self.base_root
        return self._data_root

    @property
    def cache_dir(self) -> Path:
        return self._cache_dir if self._cache_dir is not None else self.data_root / "cache"

    def prepare_data(self) -> None:
        """Generate the embedded corpus if it is configured and missing (runs on one process)."""
        if self.corpus_config is None:
            return
        if read_manifest(self.data_root) is None:
            generate_corpus(
                self.corpus_config,
                self.data_root,
                jobs=int(self._corpus_runtime.get("jobs", 2)),
                progress=bool(self._corpus_runtime.get("progress", True)),
            )

    # -- artefacts ------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            raise RuntimeError("the tokenizer is made in setup(): call datamodule.setup('fit') first")
        return self._tokenizer

    @property
    def feature_extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            raise RuntimeError("the feature extractor is made in setup(): call datamodule.setup('fit') first")
        return self._extractor

    def restore(
        self, tokenizer: Tokenizer | bytes | None = None, feature_config: Mapping[str, Any] | None = None
    ) -> None:
        """Use a run's own tokenizer / features (from a checkpoint) instead of training / fitting them."""
        if tokenizer is not None:
            self._tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_bytes(tokenizer)
        if feature_config is not None:
            self._extractor = FeatureExtractor.from_config(feature_config)
        self._datasets.clear()
        self._eval_sets.clear()

    def _read(self, subsets: Sequence[str], *, max_duration: float | None) -> list[Utterance]:
        return read_subsets(
            self.data_root, subsets, max_duration=max_duration, on_error=self.on_error, report=self._skips
        )

    def _training_utterances(self) -> list[Utterance]:
        if self._train_utts is None:
            if not self.train_subsets:
                raise DataError("data.train_subsets is empty: name the subsets to train on")
            utts = self._read(self.train_subsets, max_duration=self.max_duration)
            self._train_utts = self._apply_alphabet(utts, "training set")
            if not self._train_utts:
                raise DataError(f"no training utterances left in {self.train_subsets} under {self.data_root}")
        return self._train_utts

    def _make_tokenizer(self) -> Tokenizer:
        texts = [u.text for u in self._training_utterances()]
        cfg = self.tokenizer_cfg
        return Tokenizer.load_or_train(
            texts, self.cache_dir, cfg["model_type"], int(cfg["vocab_size"]), alphabet=cfg["alphabet"]
        )

    def _fit_cmvn(self) -> None:
        """Load the cached CMVN statistics of this training set and feature config, or fit them."""
        extractor = self._new_extractor()
        utts = self._training_utterances()
        limit = int(self.feature_cfg["cmvn_utterances"])
        chosen = np.arange(len(utts))
        if 0 < limit < len(utts):
            chosen = np.sort(np.random.default_rng(self.seed).choice(len(utts), limit, replace=False))
        digest = hashlib.sha256(json.dumps(self._extractor_settings(), sort_keys=True).encode())
        for i in chosen.tolist():
            digest.update(f"{utts[i].path}:{utts[i].num_samples}\n".encode())
        path = self.cache_dir / f"cmvn-{digest.hexdigest()[:16]}.json"
        if path.is_file():
            cached = FeatureExtractor.from_config(json.loads(path.read_text()))
            extractor.cmvn.load_state_dict(cached.cmvn.state_dict())
            log.info("CMVN: using cached %s", path)
            return
        train_set = self._dataset("train")  # fitting warms its feature cache
        undecodable: list[int] = []

        def frames() -> Any:  # the on_error policy holds here too: an undecodable file is skipped, not fatal
            for i in chosen.tolist():
                try:
                    yield train_set.features(i)
                except ValueError as err:
                    if self.on_error == "raise":
                        raise DataError(f"{err}; or set data.on_error=skip to skip and count such files") from err
                    log.warning("%s (skipped)", err)
                    train_set.failed[train_set.utterances[i].utt_id] = str(err)
                    undecodable.append(i)

        extractor.cmvn.fit(frames())
        if undecodable:  # out of the training set before any sampler sees it
            train_set.drop(undecodable)
            self._train_utts = list(train_set.utterances)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # several DDP ranks may fit at once
        tmp.write_text(json.dumps(extractor.config()))
        tmp.replace(path)
        log.info("CMVN fitted on %d training utterances -> %s", len(chosen), path)

    def _extractor_settings(self) -> dict[str, Any]:
        return {k: self.feature_cfg[k] for k in FeatureSettings.names()}

    def _new_extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = FeatureExtractor(FeatureSettings(**self._extractor_settings()))
        return self._extractor

    def _speeds(self) -> tuple[float, ...]:
        speeds = self.feature_cfg.get("speed_perturb")
        if not speeds:
            return (1.0,)
        speeds = tuple(float(s) for s in speeds)
        if any(not 0.5 <= s <= 2.0 for s in speeds):
            raise DataError(f"data.features.speed_perturb factors must lie in [0.5, 2], got {list(speeds)}")
        return speeds

    def _dataset(self, split: str) -> UtteranceDataset:
        if split in self._datasets:
            return self._datasets[split]
        extractor = self._new_extractor()  # raw features do not need the CMVN statistics
        if split == "train":
            utts, speeds = self._training_utterances(), self._speeds()
        elif split == "train_monitor":  # a fixed sample of training utterances, scored like dev (no augmentation)
            train = self._training_utterances()
            pick = np.random.default_rng(self.seed).permutation(len(train))[: self.monitor_train_utterances]
            utts, speeds = [train[i] for i in sorted(pick)], (1.0,)
        else:
            names = self.dev_subsets if split == "dev" else self.test_subsets
            if not names:
                raise DataError(f"data.{split}_subsets is empty: name at least one subset")
            utts, speeds = self._eval_utterances(names, split), (1.0,)
        dataset = UtteranceDataset(
            utts,
            self.tokenizer,
            extractor,
            cache=self.cache_features,
            speeds=speeds,
            seed=self.seed,
            skip_errors=self.on_error == "skip",
        )
        self._datasets[split] = dataset
        return dataset

    def _eval_utterances(self, names: Sequence[str], what: str) -> list[Utterance]:
        return self._apply_alphabet(self._read(names, max_duration=None), f"{what} {list(names)}")

    def _apply_alphabet(self, utts: list[Utterance], what: str) -> list[Utterance]:
        """``tokenizer.oov_policy`` on transcripts with characters outside the alphabet (counted)."""
        alphabet, policy = self.tokenizer_cfg["alphabet"], self.tokenizer_cfg["oov_policy"]
        kept, _ = apply_alphabet_policy(utts, alphabet, policy, what=what)
        affected = sum(1 for u in utts if out_of_alphabet(u.text, alphabet))
        if affected:
            self._skips.counts[f"out_of_alphabet_{'unk' if policy == 'unk' else 'dropped'}"] += affected
        return kept

    def check(
        self,
        stage: str = "fit",
        *,
        generate: bool = True,
        eval_subsets: str | Sequence[str] | None = None,
        eval_key: str = "data.eval_subsets",
    ) -> None:
        """Check that the data can serve ``stage`` before anything is trained or written.

        ``fit``: the root (or the embedded corpus, or that it can be generated), the train, dev, test and
        eval subsets on disk, and the dev, test and eval subsets non-empty after ``on_error`` (their
        headers are read: seconds; the training subsets are only listed). ``evaluate``: the eval subsets
        alone. Nothing is generated or cached.

        Args:
            stage: ``fit`` or ``evaluate``.
            generate: whether a missing embedded corpus may be generated (``False``: a missing one is an error).
            eval_subsets: the subsets evaluated (after training: the training config's top-level
                ``eval_subsets``) when they are not :meth:`eval_subsets`; ``[]``: none.
            eval_key: the config key that names them, for the messages (e.g. ``eval_subsets``).

        Raises:
            DataError: naming the key or file and the fix.
        """
        if stage not in ("fit", "evaluate"):
            raise ValueError(f"check(stage={stage!r}): use 'fit' or 'evaluate'")
        model_type = self.tokenizer_cfg["model_type"]
        if model_type not in MODEL_TYPES:
            raise DataError(f"data.tokenizer.model_type must be one of {list(MODEL_TYPES)}, got {model_type!r}")
        apply_alphabet_policy([], self.tokenizer_cfg["alphabet"], self.tokenizer_cfg["oov_policy"])  # the policy name
        if eval_subsets is None:
            evaluated = self.eval_subsets()
        else:
            evaluated = expand_subsets(_subset_list(eval_subsets, eval_key.removeprefix("data.")))
        groups = [(eval_key, evaluated)]
        if stage == "fit":
            groups = [
                ("data.train_subsets", expand_subsets(self.train_subsets)),
                ("data.dev_subsets", expand_subsets(self.dev_subsets)),
                ("data.test_subsets", expand_subsets(self.test_subsets)),
                *groups,
            ]
            if not self.train_subsets:
                raise DataError("data.train_subsets is empty: name the subsets to train on")
        if self.corpus_config is not None and read_manifest(self.data_root) is None:
            if not generate:
                raise DataError(
                    f"no embedded corpus with the settings of data.corpus under {self.base_root} (looked for "
                    f"{self.data_root.name}), and this step does not generate one. Fix: make it with "
                    f"`python scripts/make_corpus.py root={self.data_root}` and the same settings, or point data.root "
                    "at the directory that holds it"
                )
            resolve_engines(self.corpus_config.engines)  # names an engine that is not installed
            for key, names in groups:
                unknown = [n for n in names if n not in CORPUS_SUBSETS]
                if unknown:
                    raise DataError(
                        f"{key}: {unknown} are not subsets of the embedded corpus; it has {list(CORPUS_SUBSETS)}"
                    )
            return
        base = find_corpus_root(self.data_root)
        on_disk = set(available_subsets(base))
        for key, names in groups:
            missing = [n for n in names if n not in on_disk]
            if missing:
                raise DataError(
                    f"{key}: {missing} not found under {base}; available there: {sorted(on_disk) or 'none'}. Fix: "
                    "pick from those, point data.root at a tree that has them, or download them with "
                    "scripts/prepare_librispeech.py"
                )
        for key, names in groups:
            for name in names:
                if key == "data.train_subsets":
                    if next(base.glob(f"{name}/*/*/*.trans.txt"), None) is None:
                        raise DataError(f"{key}: {base / name} holds no <speaker>/<chapter>/*.trans.txt")
                    continue
                report = SkipReport()
                utts = read_subsets(base, [name], on_error=self.on_error, report=report)
                kept, _ = apply_alphabet_policy(utts, self.tokenizer_cfg["alphabet"], self.tokenizer_cfg["oov_policy"])
                if not kept:
                    skipped = ", ".join(f"{r}: {n}" for r, n in report.as_dict().items()) or "none skipped"
                    raise DataError(
                        f"{key}: {base / name} has no usable utterance ({len(utts)} read, {skipped}). Fix: repair "
                        "the subset (see the warnings above for the files) or leave it out of " + key
                    )

    def setup(self, stage: str | None = None) -> None:
        """Read the subsets, train / load the tokenizer, fit / load the CMVN statistics."""
        if self.corpus_config is not None and read_manifest(self.data_root) is None:
            self.prepare_data()
        find_corpus_root(self.data_root)  # a clear error if the root does not exist
        if self._tokenizer is None:
            self._tokenizer = self._make_tokenizer()
        if self._extractor is None or not self._extractor.cmvn.fitted:
            self._fit_cmvn()
        if stage in (None, "fit"):
            self._dataset("train")
        if stage in (None, "fit", "validate") and self.dev_subsets:
            self._dataset("dev")
        if stage in (None, "test") and self.test_subsets:
            self._dataset("test")

    # -- loaders ----------------------------------------------------------------------------------------
    def _placement(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _loader(self, dataset: UtteranceDataset, sampler: DurationBucketSampler, collate: Collate) -> DataLoader:
        if self.cache_features and self.num_workers > 0:
            dataset.precompute()
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def _eval_loader(self, dataset: UtteranceDataset, *, shard: bool) -> DataLoader:
        """Dev/test batches; ``shard``: this DDP rank's share, each batch on exactly one rank (no padding)."""
        replicas, rank = self._placement() if shard else (1, 0)
        sampler = DurationBucketSampler(
            dataset.durations,
            self.eval_max_batch_seconds,
            shuffle=False,
            seed=self.seed,
            num_replicas=replicas,
            rank=rank,
            pad=False,
        )
        return self._loader(dataset, sampler, Collate(self.feature_extractor.cmvn))

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        replicas, rank = self._placement()
        sampler = DurationBucketSampler(
            dataset.durations, self.max_batch_seconds, shuffle=True, seed=self.seed, num_replicas=replicas, rank=rank
        )
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            sampler.set_epoch(int(trainer.current_epoch))
        if self._pending_sampler_state is not None:
            sampler.load_state_dict(self._pending_sampler_state)
            self._pending_sampler_state = None
        self._train_sampler = sampler
        dataset.sampler = sampler  # its epoch enters the speed draws
        spec_augment = SpecAugment(**self.spec_augment_cfg) if self.spec_augment_cfg else None
        return self._loader(dataset, sampler, Collate(self.feature_extractor.cmvn, spec_augment, self.seed, sampler))

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader over all ``dev_subsets`` (per-subset numbers: :meth:`eval_dataloader`); with
        ``monitor_train_utterances``, a second one over that many training utterances (no augmentation),
        for the learning curve of the training set beside the dev set's."""
        dev = self._eval_loader(self._dataset("dev"), shard=True)
        if not self.monitor_train_utterances:
            return dev
        return [dev, self._eval_loader(self._dataset("train_monitor"), shard=True)]

    def test_dataloader(self) -> DataLoader:
        """One loader over all ``test_subsets`` (per-subset numbers: :meth:`eval_dataloader`)."""
        return self._eval_loader(self._dataset("test"), shard=True)

    def eval_dataloader(self, subset: str) -> DataLoader:
        """A loader over the whole of one subset (or alias) by name, without SpecAugment, on this process
        whatever the DDP placement (the end-of-training evaluation runs on global rank zero alone).

        Raises:
            ValueError: if the subset is not on disk (the message lists those that are).
        """
        if subset not in self._eval_sets:
            utts = self._eval_utterances(expand_subsets(subset), "eval")
            self._eval_sets[subset] = UtteranceDataset(
                utts,
                self.tokenizer,
                self.feature_extractor,
                cache=self.cache_features,
                skip_errors=self.on_error == "skip",
            )
        return self._eval_loader(self._eval_sets[subset], shard=False)

    def eval_subsets(self) -> list[str]:
        """Subsets to evaluate one by one (``eval_subsets``, else the dev then the test subsets)."""
        names = self._eval_subset_names or [*self.dev_subsets, *self.test_subsets]
        return list(dict.fromkeys(expand_subsets(names)))

    def train_texts(self) -> list[str]:
        """Transcripts of the training utterances (e.g. for a decoding lexicon or language model)."""
        return [u.text for u in self._training_utterances()]

    @property
    def available_subsets(self) -> list[str]:
        """Subsets present under the data root."""
        return available_subsets(self.data_root)

    # -- resume ---------------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            if int(trainer.current_epoch) != self._count_epoch:
                self._count_epoch, self._batches_done = int(trainer.current_epoch), 0
            self._batches_done += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Sampler position (``epoch``, ``batches_done``), tokenizer model, feature config and :meth:`data_record`."""
        return {
            "epoch": self._count_epoch,
            "batches_done": self._batches_done,
            "seed": self.seed,
            "tokenizer_model": None if self._tokenizer is None else self._tokenizer.model_bytes,
            "feature_config": None if self._extractor is None else self._extractor.config(),
            "data": self.data_record() if self._tokenizer is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the run's tokenizer, features and the exact position in the training epoch."""
        recorded = state_dict.get("data") or {}
        if recorded.get("root") and self._data_root is not None and str(self.data_root) != recorded["root"]:
            log.warning(
                "the checkpoint was trained on %s, this run reads %s: the resumed run mixes data",
                recorded["root"],
                self.data_root,
            )
        if state_dict.get("tokenizer_model") is not None or state_dict.get("feature_config") is not None:
            self.restore(state_dict.get("tokenizer_model"), state_dict.get("feature_config"))
        sampler_state = {k: state_dict[k] for k in ("epoch", "batches_done", "seed") if k in state_dict}
        self._count_epoch = int(sampler_state.get("epoch", 0))
        self._batches_done = int(sampler_state.get("batches_done", 0))
        if self._batches_done:
            # Lightning warns that a mid-epoch resume is unreliable unless the DataLoader is stateful; the
            # batch sampler resumes exactly from this state, so the warning does not apply here.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        if self._train_sampler is not None:
            self._train_sampler.load_state_dict(sampler_state)
        else:
            self._pending_sampler_state = sampler_state

    # -- description ----------------------------------------------------------------------------------
    def data_record(self) -> dict[str, Any]:
        """Exactly what this module reads (see :mod:`conformer_prune.data.record`); JSON-able, absolute paths."""
        manifest = read_manifest(self.data_root) or {}
        synthetic = bool(manifest.get("synthetic"))
        return {
            "root": str(self.data_root),
            "corpus_id": manifest.get("corpus_id") if synthetic else None,
            "synthetic": synthetic,
            "engines": manifest.get("engines") if synthetic else None,
            "settings": manifest.get("settings") if synthetic else None,
            "generator_version": manifest.get("generator_version", GENERATOR_VERSION) if synthetic else None,
            "datamodule": {
                "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
                "_convert_": "all",
                **_plain(self.hparams_initial),
            },
        }

    def corpus_description(self) -> dict[str, Any]:
        """What the data is: root, subsets (hours, utterances, speakers, undecodable files), what was skipped,
        engines and voices when synthetic, and :meth:`data_record` (``record``).

        ``subsets`` covers the train / dev / test sets read so far and every subset evaluated one by one
        (:meth:`eval_dataloader`); ``evaluated`` lists the latter; ``skipped`` counts every entry left out,
        by reason, files that failed to decode (``undecodable_audio``) included.
        """
        subsets: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for split, dataset in (
            ("train", self._datasets.get("train")),
            ("dev", self._datasets.get("dev")),
            ("test", self._datasets.get("test")),
            *(("eval", d) for d in self._eval_sets.values()),
        ):
            if dataset is None:
                continue
            failed.update(dataset.failed)
            by_subset: dict[str, list[Utterance]] = {}
            for utt in dataset.utterances:
                by_subset.setdefault(utt.subset, []).append(utt)
            for name, utts in by_subset.items():
                if name in subsets and split == "eval":
                    continue  # already described as a train / dev / test subset
                subsets[name] = {
                    "split": split,
                    "hours": round(sum(u.duration for u in utts) / 3600, 4),
                    "utterances": len(utts),
                    "speakers": len({u.speaker for u in utts}),
                    "undecodable": sum(1 for u in utts if u.utt_id in dataset.failed),
                }
        skipped = self._skips.as_dict()
        if failed:
            skipped["undecodable_audio"] = skipped.get("undecodable_audio", 0) + len(failed)
        description: dict[str, Any] = {
            "root": str(find_corpus_root(self.data_root)),
            "corpus_id": None,
            "train_subsets": self.train_subsets,
            "dev_subsets": self.dev_subsets,
            "test_subsets": self.test_subsets,
            "evaluated": list(self._eval_sets),
            "subsets": subsets,
            "skipped": dict(sorted(skipped.items())),
            "record": self.data_record(),
        }
        manifest = read_manifest(self.data_root)
        description["synthetic"] = bool(manifest and manifest.get("synthetic"))
        if manifest is not None:
            description["corpus_id"] = manifest.get("corpus_id")
            description["engines"] = manifest.get("engines")
            description["voices"] = {name: s.get("voices") for name, s in manifest.get("subsets", {}).items()}
            description["corpus_settings"] = manifest.get("settings")
            description["text"] = manifest.get("text")
        return description
