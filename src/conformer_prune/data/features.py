"""Waveform -> 80-dim log-mel -> global CMVN -> SpecAugment (training only).

Shapes: ``N`` samples, ``C`` channels, ``B`` batch, ``T`` frames, ``F`` mel bins.

The CMVN statistics are fitted once on the training set and travel with the run inside
``FeatureExtractor.config()`` (a plain JSON-able dict), so a checkpoint or an export can rebuild the
exact front end with ``FeatureExtractor.from_config``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import Tensor, nn

from conformer_prune.data.librispeech import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureSettings:
    """The front end's settings, and the one copy of their defaults (log-mel with 25 ms Hann windows every
    10 ms at :data:`~conformer_prune.data.librispeech.SAMPLE_RATE`).

    Args:
        sample_rate: expected input rate in Hz.
        n_mels: number of mel bins ``F``.
        win_ms: window length in milliseconds.
        hop_ms: hop in milliseconds (it sets :attr:`frames_per_second`).
        n_fft: FFT size (at least the window length in samples).
        log_floor: added to the power before the log.
    """

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    log_floor: float = 1e-6

    def __post_init__(self) -> None:
        for name, kind in (("sample_rate", int), ("n_mels", int), ("win_ms", float), ("hop_ms", float),
                           ("n_fft", int), ("log_floor", float)):  # fmt: skip
            object.__setattr__(self, name, kind(getattr(self, name)))
        if self.n_fft < self.win_length:
            raise ValueError(
                f"data.features.n_fft={self.n_fft} is shorter than the {self.win_ms} ms window ({self.win_length} "
                "samples): raise n_fft"
            )

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Hop in samples."""
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def frames_per_second(self) -> float:
        """Feature frames per second of audio (100 for a 10 ms hop)."""
        return self.sample_rate / self.hop_length

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The setting names (what :meth:`FeatureExtractor.config` holds besides ``cmvn``)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> FeatureSettings:
        """The settings of a feature config (:meth:`FeatureExtractor.config`; other keys are ignored)."""
        return cls(**{k: config[k] for k in cls.names() if k in config})


class LogMelFeatures(nn.Module):
    """Log mel filterbank energies (:class:`FeatureSettings`)."""

    def __init__(self, settings: FeatureSettings | None = None) -> None:
        super().__init__()
        settings = settings or FeatureSettings()
        self.sample_rate = settings.sample_rate
        self.n_mels = settings.n_mels
        self.win_length = settings.win_length
        self.hop_length = settings.hop_length
        self.log_floor = settings.log_floor
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate,
            n_fft=settings.n_fft,
            win_length=self.win_length,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            power=2.0,
            center=True,
            pad_mode="constant",  # zero padding: works for inputs shorter than half a window too
        )

    def num_frames(self, num_samples: Tensor | int) -> Tensor | int:
        """Frames ``T`` produced from ``num_samples`` samples (``N // hop + 1``)."""
        return num_samples // self.hop_length + 1

    def forward(self, waveform: Tensor) -> Tensor:
        """``(N,)`` -> ``(T, F)``, or ``(B, N)`` -> ``(B, T, F)``."""
        power = self.mel(waveform.float())  # (..., F, T)
        return torch.log(power + self.log_floor).transpose(-1, -2).contiguous()


class GlobalCMVN(nn.Module):
    """Global mean and variance normalisation of ``(..., F)`` features.

    Args:
        num_features: ``F``.
    """

    def __init__(self, num_features: int = 80) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))
        self.register_buffer("num_frames", torch.zeros((), dtype=torch.long))

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` has seen any frame."""
        return bool(self.num_frames > 0)

    @torch.no_grad()
    def fit(self, features: Iterable[Tensor], min_std: float = 1e-5) -> GlobalCMVN:
        """Set mean and std from every frame of ``features`` (each ``(T, F)``); returns ``self``."""
        total = torch.zeros(self.mean.numel(), dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for feats in features:
            feats = feats.reshape(-1, feats.shape[-1]).double()
            total += feats.sum(0)
            total_sq += (feats * feats).sum(0)
            count += feats.shape[0]
        if count == 0:
            raise ValueError("cannot fit CMVN on no frames: the training subsets are empty")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(min_std**2)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().float())
        self.num_frames.fill_(count)
        return self

    def forward(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.std


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019) on ``(B, T, F)``; identity in eval mode.

    Masked cells are set to ``mask_value`` (0 = the mean after CMVN). Time masks stay inside each
    utterance's valid length.

    Args:
        num_freq_masks: frequency masks per utterance.
        freq_mask_width: widest frequency mask in bins.
        num_time_masks: time masks per utterance.
        time_mask_width: widest time mask in frames.
        time_mask_ratio: also at most this fraction of the utterance's length.
        mask_value: value written into masked cells.
    """

    def __init__(
        self,
        num_freq_masks: int = 2,
        freq_mask_width: int = 15,
        num_time_masks: int = 2,
        time_mask_width: int = 40,
        time_mask_ratio: float = 0.05,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        for key, value in (
            ("num_freq_masks", num_freq_masks),
            ("freq_mask_width", freq_mask_width),
            ("num_time_masks", num_time_masks),
            ("time_mask_width", time_mask_width),
        ):
            if value < 0:
                raise ValueError(f"data.spec_augment.{key} must be >= 0, got {value}")
        if not 0.0 <= time_mask_ratio <= 1.0:
            raise ValueError(f"data.spec_augment.time_mask_ratio must be in [0, 1], got {time_mask_ratio}")
        self.num_freq_masks = num_freq_masks
        self.freq_mask_width = freq_mask_width
        self.num_time_masks = num_time_masks
        self.time_mask_width = time_mask_width
        self.time_mask_ratio = time_mask_ratio
        self.mask_value = mask_value

    @staticmethod
    def _band(size: int, start: Tensor, width: Tensor) -> Tensor:
        """``(B, size)`` bool: ``start <= i < start + width``."""
        idx = torch.arange(size, device=start.device)
        return (idx >= start[:, None]) & (idx < (start + width)[:, None])

    def forward(self, features: Tensor, lengths: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Mask ``features`` ``(B, T, F)`` with valid lengths ``lengths`` ``(B,)``; ``generator`` makes
        the masks a function of its seed alone (exact resume)."""
        if not self.training:
            return features
        B, T, F = features.shape
        device = features.device
        gen = {"generator": generator} if generator is not None else {}
        mask = torch.zeros(B, T, F, dtype=torch.bool, device=device)
        for _ in range(self.num_freq_masks):
            width = torch.randint(0, self.freq_mask_width + 1, (B,), device=device, **gen).clamp_max(F)
            start = (torch.rand(B, device=device, **gen) * (F - width + 1)).floor().long()
            mask |= self._band(F, start, width)[:, None, :]
        lengths = lengths.to(device)
        max_width = torch.minimum(
            torch.full_like(lengths, self.time_mask_width), (lengths.float() * self.time_mask_ratio).floor().long()
        )
        for _ in range(self.num_time_masks):
            width = (torch.rand(B, device=device, **gen) * (max_width + 1)).floor().long()
            start = (torch.rand(B, device=device, **gen) * (lengths - width + 1).clamp_min(1)).floor().long()
            mask |= self._band(T, start, width)[:, :, None]
        return features.masked_fill(mask, self.mask_value)


def speed_perturb(waveform: Tensor, factor: float, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """Play ``waveform`` ``(N,)`` ``factor`` times faster (pitch follows, as in Kaldi's speed perturbation)."""
    if factor == 1.0:
        return waveform
    orig = round(sample_rate * factor)
    g = math.gcd(orig, sample_rate)
    return torchaudio.functional.resample(waveform, orig // g, sample_rate // g)


def to_mono(waveform: Tensor | np.ndarray) -> tuple[Tensor, int]:
    """``(N,)`` or ``(C, N)`` samples -> mono ``(N,)`` float32 (the channels' mean) and the input's channel count."""
    x = torch.as_tensor(np.asarray(waveform) if not isinstance(waveform, Tensor) else waveform).float()
    if x.dim() == 1:
        return x, 1
    if x.dim() == 2:
        return x.mean(0), x.size(0)
    raise ValueError(f"expected a waveform of shape (N,) or (C, N), got {tuple(x.shape)}")


class FeatureExtractor(nn.Module):
    """Log-mel + global CMVN: what the model sees, minus SpecAugment.

    Args:
        settings: the front end (:class:`FeatureSettings`); other input rates are resampled.
    """

    def __init__(self, settings: FeatureSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or FeatureSettings()
        self.logmel = LogMelFeatures(self.settings)
        self.cmvn = GlobalCMVN(self.settings.n_mels)

    @property
    def sample_rate(self) -> int:
        return self.logmel.sample_rate

    @property
    def num_features(self) -> int:
        """``F``."""
        return self.logmel.n_mels

    @property
    def frames_per_second(self) -> float:
        """Feature frames per second of audio (from the hop)."""
        return self.settings.frames_per_second

    def num_frames(self, num_samples: Tensor | int) -> Tensor | int:
        """Frames ``T`` for ``num_samples`` samples at :attr:`sample_rate`."""
        return self.logmel.num_frames(num_samples)

    def prepare(self, waveform: Tensor | np.ndarray, sample_rate: int) -> Tensor:
        """Downmix ``(C, N)`` to mono and resample to :attr:`sample_rate`: returns ``(N',)``."""
        x, _ = to_mono(waveform)
        if sample_rate != self.sample_rate:
            g = math.gcd(int(sample_rate), self.sample_rate)
            x = torchaudio.functional.resample(x, int(sample_rate) // g, self.sample_rate // g)
        return x

    @torch.no_grad()
    def raw(self, waveform: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> Tensor:
        """Log-mel ``(T, F)`` before CMVN (what the feature cache stores)."""
        return self.logmel(self.prepare(waveform, sample_rate))

    def normalize(self, features: Tensor) -> Tensor:
        """Apply CMVN to ``(..., F)`` features."""
        return self.cmvn(features)

    @torch.no_grad()
    def forward(self, waveform: Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> Tensor:
        """``waveform`` ``(N,)`` or ``(C, N)`` at ``sample_rate`` -> normalised ``(T, F)``."""
        return self.cmvn(self.raw(waveform, sample_rate))

    def config(self) -> dict[str, Any]:
        """Plain JSON-able settings + CMVN statistics (``from_config`` rebuilds the extractor)."""
        return {
            **asdict(self.settings),
            "cmvn": {
                "mean": [float(v) for v in self.cmvn.mean],
                "std": [float(v) for v in self.cmvn.std],
                "num_frames": int(self.cmvn.num_frames),
            },
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FeatureExtractor:
        """Rebuild from :meth:`config` output (a config without ``cmvn`` gives identity CMVN)."""
        settings = {k: v for k, v in dict(config).items() if k != "cmvn"}
        extractor = cls(FeatureSettings(**settings))
        cmvn = config.get("cmvn")
        if cmvn is not None:
            mean = torch.tensor(list(cmvn["mean"]), dtype=torch.float32)
            std = torch.tensor(list(cmvn["std"]), dtype=torch.float32)
            if mean.numel() != extractor.num_features or std.numel() != extractor.num_features:
                raise ValueError(
                    f"feature config: CMVN has {mean.numel()} values but n_mels={extractor.num_features}; the "
                    "config was edited by hand or comes from another model"
                )
            extractor.cmvn.mean.copy_(mean)
            extractor.cmvn.std.copy_(std)
            extractor.cmvn.num_frames.fill_(int(cmvn.get("num_frames", 1)))
        return extractor
