"""Log-mel shapes, CMVN, SpecAugment (training only), speed perturbation, config round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conformer_prune.data.features import FeatureExtractor, GlobalCMVN, LogMelFeatures, SpecAugment, speed_perturb
from conformer_prune.data.librispeech import load_audio, read_subsets


def test_log_mel_shapes_and_frame_count() -> None:
    logmel = LogMelFeatures()
    for n in (400, 16000, 16123):
        feats = logmel(torch.randn(n))
        assert feats.shape == (n // 160 + 1, 80) == (logmel.num_frames(n), 80)
        assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert logmel(torch.randn(3, 8000)).shape == (3, 51, 80)
    assert logmel(torch.randn(100)).shape == (1, 80)  # shorter than a window: still one frame


def test_batched_equals_single(tiny_librispeech: Path) -> None:
    logmel = LogMelFeatures()
    utt = read_subsets(tiny_librispeech, ["dev-clean"])[0]
    audio, _ = load_audio(utt)
    x = torch.from_numpy(audio)
    torch.testing.assert_close(logmel(torch.stack([x, x]))[1], logmel(x))


def test_cmvn_fit_normalises_and_round_trips() -> None:
    feats = [torch.randn(50, 4) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 5 for _ in range(6)]
    cmvn = GlobalCMVN(4).fit(feats)
    assert cmvn.fitted and int(cmvn.num_frames) == 300
    out = torch.cat([cmvn(f) for f in feats])
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="no frames"):
        GlobalCMVN(4).fit([])


def test_spec_augment_masks_only_in_training_and_within_lengths() -> None:
    aug = SpecAugment(num_freq_masks=2, freq_mask_width=10, num_time_masks=2, time_mask_width=20, time_mask_ratio=0.2)
    x = torch.randn(4, 120, 80) + 10.0  # no natural zeros
    lens = torch.tensor([120, 100, 60, 30])
    aug.eval()
    assert torch.equal(aug(x, lens), x)
    aug.train()
    out = aug(x, lens)
    masked = out == 0
    assert masked.any()
    for b, n in enumerate(lens.tolist()):
        time_masked = masked[b].all(dim=1)  # whole frames masked: time masks
        assert not time_masked[n:].any()  # never in padding
        assert int(time_masked.sum()) <= 2 * min(20, int(0.2 * n))
        freq_masked = masked[b, :n].all(dim=0)
        assert int(freq_masked.sum()) <= 20
    assert not torch.equal(out, aug(x, lens))  # fresh masks each call


def test_spec_augment_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="spec_augment.freq_mask_width"):
        SpecAugment(freq_mask_width=-1)
    with pytest.raises(ValueError, match="time_mask_ratio"):
        SpecAugment(time_mask_ratio=1.5)


def test_speed_perturbation_changes_length() -> None:
    x = torch.randn(16000)
    assert speed_perturb(x, 1.0) is x
    assert abs(len(speed_perturb(x, 1.1)) - 16000 / 1.1) <= 2
    assert abs(len(speed_perturb(x, 0.9)) - 16000 / 0.9) <= 2


def test_extractor_resamples_downmixes_and_round_trips_config(tiny_librispeech: Path) -> None:
    utt = read_subsets(tiny_librispeech, ["dev-clean"])[0]
    audio, sr = load_audio(utt)
    fx = FeatureExtractor()
    fx.cmvn.fit([fx.raw(audio, sr)])
    feats = fx(audio, sr)
    assert feats.shape == (utt.num_samples // 160 + 1, 80)
    stereo = np.stack([audio, audio])  # (C, N)
    torch.testing.assert_close(fx(stereo, sr), feats)
    x = torch.from_numpy(audio)
    at_8k = fx(torch.from_numpy(audio[::2].copy()), 8000)  # resampled to 16 kHz first
    assert abs(at_8k.shape[0] - feats.shape[0]) <= 2
    config = json.loads(json.dumps(fx.config()))  # plain JSON
    again = FeatureExtractor.from_config(config)
    torch.testing.assert_close(again(x, sr), feats)
    assert config["cmvn"]["mean"] == pytest.approx(fx.cmvn.mean.tolist())
    with pytest.raises(ValueError, match="n_mels"):
        FeatureExtractor.from_config({**config, "n_mels": 40})


def test_the_frame_rate_follows_the_hop() -> None:
    """What MACs per second and real-time factors divide by comes from the features, not a constant."""
    from conformer_prune.data.features import FeatureSettings

    assert FeatureSettings().frames_per_second == 100.0
    coarse = FeatureExtractor(FeatureSettings(hop_ms=20.0))
    assert coarse.frames_per_second == 50.0
    assert FeatureSettings.of(coarse.config()) == coarse.settings  # the config records what rebuilds it
    assert coarse.raw(torch.zeros(16000)).shape[0] == 16000 // 320 + 1
