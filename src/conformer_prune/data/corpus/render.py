"""Rendering a chapter: synthesis, spectral warp (FFT resampling on a grid of smooth sizes), padding and noise;
every utterance a pure function of (seed, its id, its speaker, its text)."""

from __future__ import annotations

import logging
import os
import tempfile
import zlib
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from conformer_prune.data.corpus.config import ChapterTask, SpeakerSpec
from conformer_prune.data.corpus.engines import _Espeak, _flite_synthesize, _run_forked
from conformer_prune.data.librispeech import SAMPLE_RATE

log = logging.getLogger(__name__)


def _is_smooth(n: int) -> bool:
    for prime in (2, 3, 5, 7):
        while n % prime == 0:
            n //= prime
    return n == 1


def _next_smooth(n: int) -> int:
    """Smallest 7-smooth integer >= ``n`` (a fast FFT size)."""
    while not _is_smooth(n):
        n += 1
    return n


def _warp_grid(low: float = 0.88, high: float = 1.12, limit: int = 256) -> list[Fraction]:
    """Warps ``a/b`` with 7-smooth ``a, b <= limit``: every FFT in :func:`resample_fft` stays fast."""
    smooth = [n for n in range(1, limit + 1) if _is_smooth(n)]
    return sorted({Fraction(a, b) for a in smooth for b in smooth if low <= a / b <= high})


WARP_GRID: list[Fraction] = _warp_grid()


def snap_warp(value: float) -> Fraction:
    """The grid warp nearest to ``value`` (grid steps are below 1 %)."""
    return min(WARP_GRID, key=lambda w: (abs(float(w) - value), w))


def resample_fft(audio: np.ndarray, ratio: Fraction) -> np.ndarray:
    """Band-limited resampling by FFT: ``(N,)`` -> ``(~N * ratio,)``, ``ratio = new rate / old rate``.

    The input is zero-padded to ``q * k`` samples (``ratio = p / q``, ``k`` 7-smooth), so both
    transforms have smooth sizes; keep ``p`` and ``q`` 7-smooth (see :data:`WARP_GRID`).
    """
    p, q = ratio.numerator, ratio.denominator
    margin = 1024  # zero margins keep the circular wrap-around out of the signal
    k = _next_smooth(-(-(len(audio) + 2 * margin) // q))
    n_in, n_out = q * k, p * k
    x = np.zeros(n_in)
    x[margin : margin + len(audio)] = audio
    spectrum = np.fft.rfft(x)
    keep = min(len(spectrum), n_out // 2 + 1)
    out = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    out[:keep] = spectrum[:keep]
    taper = max(1, keep // 20)  # raised-cosine roll-off over the top 5 % of the band
    out[keep - taper : keep] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, taper)))
    y = np.fft.irfft(out, n_out) * (n_out / n_in)
    start = int(round(margin * ratio))
    return y[start : start + int(round(len(audio) * ratio))].astype(np.float32)


def _finish(
    audio: np.ndarray,
    sample_rate: int,
    speaker: SpeakerSpec,
    rng: np.random.Generator,
    pad_seconds: tuple[float, float] = (0.05, 0.35),
) -> np.ndarray:
    """Warp + resample to 16 kHz, LibriSpeech-like silence margins, level and noise floor -> int16."""
    warp = Fraction(speaker.warp).limit_denominator(256)  # exact grid value (see snap_warp)
    y = resample_fft(audio, Fraction(SAMPLE_RATE, sample_rate) / warp)
    lead = np.zeros(int(SAMPLE_RATE * rng.uniform(*pad_seconds)), np.float32)
    trail = np.zeros(int(SAMPLE_RATE * rng.uniform(*pad_seconds)), np.float32)
    y = np.concatenate([lead, y, trail]).astype(np.float64)
    y *= 10 ** (rng.uniform(-12.0, -3.0) / 20) / (np.abs(y).max() + 1e-9)
    noise_std = np.sqrt(np.mean(y**2) / 10 ** (speaker.snr_db / 10))
    y += rng.standard_normal(len(y)) * noise_std
    return np.round(np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)


def utterance_seed(seed: int, utt_id: str) -> list[int]:
    """Seed material of one utterance (independent of order and of ``jobs``)."""
    return [int(seed), zlib.crc32(utt_id.encode())]


def _render_items(
    out_dir: str,
    speaker: SpeakerSpec,
    items: Sequence[tuple[str, str]],
    seed: int,
    pad_seconds: tuple[float, float] = (0.05, 0.35),
) -> list[int]:
    """Synthesise ``items`` (utterance id, text) of one chapter into ``out_dir``; returns sample counts."""
    sizes: list[int] = []
    with tempfile.TemporaryDirectory(prefix="corpus-") as workdir:
        for utt_id, text in items:
            rng = np.random.default_rng(utterance_seed(seed, utt_id))
            jitter = rng.uniform(0.93, 1.07)  # per-utterance tempo variation
            if speaker.engine == "espeak":
                audio, sr = _Espeak.get().synthesize(
                    text, speaker.voice, speaker.rate / speaker.warp * jitter, speaker.pitch, speaker.pitch_range
                )
            elif speaker.engine == "flite":
                audio, sr = _flite_synthesize(text, speaker.voice, speaker.stretch * speaker.warp / jitter, workdir)
            else:
                raise ValueError(f"unknown engine {speaker.engine!r}")
            pcm = _finish(audio, sr, speaker, rng, pad_seconds)
            sf.write(os.path.join(out_dir, f"{utt_id}.flac"), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            sizes.append(len(pcm))
    return sizes


def synthesize_chapter(
    out_dir: str | Path,
    speaker: SpeakerSpec,
    items: Sequence[tuple[str, str]],
    seed: int = 0,
    pad_seconds: tuple[float, float] = (0.05, 0.35),
) -> list[int]:
    """Write ``<out_dir>/<utt_id>.flac`` for each (utterance id, text); returns sample counts.

    Each utterance gets leading and trailing silence drawn from ``pad_seconds``, a random level and
    the speaker's noise floor.

    eSpeak chapters run in a forked process so that the result does not depend on what the
    calling process synthesised before.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    args = (str(out_dir), speaker, [tuple(i) for i in items], int(seed), tuple(pad_seconds))
    if speaker.engine == "espeak":
        return list(_run_forked(_render_items, *args))
    return _render_items(*args)


def _render_task(job: tuple[str, ChapterTask]) -> tuple[str, list[int]]:
    base, task = job
    sizes = synthesize_chapter(os.path.join(base, task.directory), task.speaker, task.items, task.seed)
    return task.directory, sizes
