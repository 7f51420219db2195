"""Read corpora in the LibriSpeech layout (downloading them: :mod:`conformer_prune.data.download`).

Layout (openslr.org resource 12, and the embedded synthetic corpus)::

    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

``read_subsets`` walks the tree, pairs every FLAC with its transcript line and checks the audio
header. Malformed entries never crash a run with a traceback: with ``on_error="raise"`` the first
one raises a ``ValueError`` naming the file and the fix; with ``on_error="skip"`` each is skipped,
counted, and the counts are logged once per call.

"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import soundfile as sf

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""The audio rate of LibriSpeech, of the embedded corpus and of the features (the one copy)."""

LIBRISPEECH_SUBSETS: tuple[str, ...] = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
"""The seven official subset names."""

SUBSET_ALIASES: dict[str, tuple[str, ...]] = {
    "train-960": ("train-clean-100", "train-clean-360", "train-other-500"),
    "train-clean-460": ("train-clean-100", "train-clean-360"),
    "dev-all": ("dev-clean", "dev-other"),
    "test-all": ("test-clean", "test-other"),
}
"""Names for the usual combinations of official subsets."""

OnError = Literal["skip", "raise"]


class DataError(ValueError):
    """A user error in the data or the data config; the message names the file or key and the fix."""


_UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass(frozen=True)
class Utterance:
    """One utterance of a LibriSpeech-layout tree.

    Attributes:
        utt_id: ``<speaker>-<chapter>-<utt>``, e.g. ``"1089-134686-0000"``.
        path: the FLAC file.
        text: the transcript line's text, as written (LibriSpeech: uppercase ``A-Z``, ``'`` and spaces).
        speaker: speaker id.
        chapter: chapter id.
        num_samples: length of the audio in samples.
        sample_rate: sample rate of the audio in Hz.
        subset: the subset directory the utterance was read from.
    """

    utt_id: str
    path: Path
    text: str
    speaker: int
    chapter: int
    num_samples: int
    sample_rate: int
    subset: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


@dataclass
class SkipReport:
    """Counts of skipped entries by reason, with a few example files per reason."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: Path | str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3:
            self.examples[reason].append(str(where))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: SkipReport) -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            mine = self.examples.setdefault(reason, [])
            mine.extend(other.examples.get(reason, [])[: max(0, 3 - len(mine))])

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def log_summary(self, what: str) -> None:
        """Log one warning that lists every reason, its count and example files (nothing if clean)."""
        if not self.counts:
            return
        parts = [
            f"{reason}: {n} (e.g. {', '.join(self.examples.get(reason, []))})"
            for reason, n in sorted(self.counts.items())
        ]
        log.warning("%s: skipped %d entries -- %s", what, self.total, "; ".join(parts))


_FIXES: dict[str, str] = {
    "unreadable_audio": "the file is corrupt: re-extract the subset (scripts/prepare_librispeech.py) or delete it",
    "empty_audio": "the file holds no samples: re-extract the subset or delete the file and its transcript line",
    "wrong_sample_rate": f"resample the file to {SAMPLE_RATE} Hz or delete it",
    "wrong_channels": "convert the file to mono or delete it",
    "missing_transcript": "add a '<utt-id> TEXT' line to the chapter's .trans.txt or delete the FLAC",
    "missing_audio": "restore the FLAC or delete the transcript line",
    "bad_transcript_line": "each line must read '<speaker>-<chapter>-<utt> TEXT' with the chapter's ids",
    "duplicate_transcript": "keep one line per utterance id in the .trans.txt",
    "too_long": "raise data.max_duration or leave data.on_error=skip to drop long utterances",
    "not_flac": "the LibriSpeech layout holds FLAC only: convert the file (e.g. `ffmpeg -i in.wav out.flac` or "
    "`sox in.wav out.flac`, 16 kHz mono) and delete the original",
}

OTHER_AUDIO_SUFFIXES: tuple[str, ...] = (
    ".wav",
    ".mp3",
    ".ogg",
    ".opus",
    ".m4a",
    ".aac",
    ".sph",
    ".aiff",
    ".aif",
    ".wma",
)
"""Audio files that are not FLAC: reported as such (``not_flac``), never as a missing FLAC."""


class _Issues:
    """Applies the ``on_error`` policy to each malformed entry."""

    def __init__(self, on_error: OnError, report: SkipReport) -> None:
        if on_error not in ("skip", "raise"):
            raise DataError(f"data.on_error must be 'skip' or 'raise', got {on_error!r}")
        self.on_error = on_error
        self.report = report

    def __call__(self, reason: str, where: Path | str, detail: str) -> None:
        if self.on_error == "raise":
            raise DataError(
                f"{where}: {detail}. Fix: {_FIXES[reason]}; or set data.on_error=skip to skip and count such entries"
            )
        self.report.add(reason, where)


def find_corpus_root(root: str | Path) -> Path:
    """Return the ``LibriSpeech`` directory for ``root`` (which may be it or its parent).

    Raises:
        ValueError: if ``root`` does not exist.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data root {str(root)!r} does not exist: set data.root to the directory that holds LibriSpeech/ "
            "(download it with scripts/prepare_librispeech.py, or use data=embedded to generate a corpus)"
        )
    if (root / "LibriSpeech").is_dir():
        return root / "LibriSpeech"
    return root


def available_subsets(root: str | Path) -> list[str]:
    """Subset directories present under ``root`` (sorted; hidden entries ignored)."""
    base = find_corpus_root(root)
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def expand_subsets(subsets: str | Iterable[str]) -> list[str]:
    """Expand aliases (``train-960``...) and de-duplicate, keeping order."""
    names = [subsets] if isinstance(subsets, str) else list(subsets)
    out: list[str] = []
    for name in names:
        for sub in SUBSET_ALIASES.get(name, (name,)):
            if sub not in out:
                out.append(sub)
    return out


def _numeric_key(p: Path) -> tuple[int, str]:
    return (int(p.name), p.name) if p.name.isdigit() else (1 << 62, p.name)


def _read_transcripts(trans: Path, speaker: str, chapter: str, issue: _Issues) -> dict[str, tuple[str, int]]:
    """``utt_id -> (text, line number)`` of one ``.trans.txt``."""
    out: dict[str, tuple[str, int]] = {}
    try:
        lines = trans.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        issue("bad_transcript_line", trans, f"not UTF-8 text ({err})")
        return out
    for lineno, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        utt_id, _, text = line.partition(" ")
        text = " ".join(text.split())
        match = _UTT_ID.match(utt_id)
        if not text or match is None or match.group(1) != speaker or match.group(2) != chapter:
            issue("bad_transcript_line", f"{trans}:{lineno}", f"malformed transcript line {line[:60]!r}")
            continue
        if utt_id in out:
            issue("duplicate_transcript", f"{trans}:{lineno}", f"second transcript line for {utt_id}")
            continue
        out[utt_id] = (text, lineno)
    return out


def _read_chapter(chapter_dir: Path, subset: str, issue: _Issues, max_duration: float | None) -> list[Utterance]:
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    texts = _read_transcripts(trans, speaker, chapter, issue) if trans.is_file() else {}
    flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
    others = {p.stem: p for p in chapter_dir.iterdir() if p.suffix.lower() in OTHER_AUDIO_SUFFIXES}
    out: list[Utterance] = []
    for utt_id in sorted(set(flacs) | set(texts) | set(others)):
        if utt_id not in flacs and utt_id in others:
            other = others[utt_id]
            issue("not_flac", other, f"{other.suffix} audio, but the reader takes FLAC ({utt_id}.flac)")
            continue
        if utt_id not in texts:
            where = trans if trans.is_file() else chapter_dir
            issue("missing_transcript", flacs[utt_id], f"no transcript line for {utt_id} in {where}")
            continue
        if utt_id not in flacs:
            issue("missing_audio", f"{trans}:{texts[utt_id][1]}", f"no audio file {utt_id}.flac for this line")
            continue
        path = flacs[utt_id]
        if path.stat().st_size == 0:
            issue("empty_audio", path, "the file is empty (0 bytes)")
            continue
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as err:
            issue("unreadable_audio", path, f"cannot read the audio ({err})")
            continue
        if info.frames <= 0:
            issue("empty_audio", path, "the file holds no samples")
            continue
        if info.samplerate != SAMPLE_RATE:
            issue("wrong_sample_rate", path, f"sample rate {info.samplerate} Hz, expected {SAMPLE_RATE}")
            continue
        if info.channels != 1:
            issue("wrong_channels", path, f"{info.channels} channels, expected mono")
            continue
        duration = info.frames / info.samplerate
        if max_duration is not None and duration > max_duration:
            issue("too_long", path, f"{duration:.1f} s is longer than data.max_duration={max_duration}")
            continue
        match = _UTT_ID.match(utt_id)
        assert match is not None  # checked when its transcript line was read
        out.append(
            Utterance(
                utt_id=utt_id,
                path=path,
                text=texts[utt_id][0],
                speaker=int(match.group(1)),
                chapter=int(match.group(2)),
                num_samples=int(info.frames),
                sample_rate=int(info.samplerate),
                subset=subset,
            )
        )
    return out


def read_subsets(
    root: str | Path,
    subsets: str | Sequence[str],
    *,
    max_duration: float | None = None,
    on_error: OnError = "skip",
    report: SkipReport | None = None,
) -> list[Utterance]:
    """Read the utterances of one or more subsets.

    Args:
        root: the ``LibriSpeech`` directory or its parent.
        subsets: official names (``LIBRISPEECH_SUBSETS``), aliases (``SUBSET_ALIASES``, e.g.
            ``"train-960"``) or any other subset directory present under ``root``.
        max_duration: utterances longer than this many seconds are treated as malformed entries.
        on_error: ``"skip"`` skips and counts malformed entries (one log line per call);
            ``"raise"`` raises at the first, naming the file and the fix.
        report: collects the skip counts for the caller (e.g. to describe the corpus).

    Returns:
        Utterances sorted by subset (in the order given), speaker, chapter and utterance id.

    Raises:
        ValueError: if ``root`` does not exist, a subset is not on disk (the message lists the
            subsets that are), or ``on_error="raise"`` and an entry is malformed.
    """
    base = find_corpus_root(root)
    names = expand_subsets(subsets)
    if not names:
        raise DataError(f"no subsets requested from {base}: name at least one of {list(LIBRISPEECH_SUBSETS)}")
    missing = [name for name in names if not (base / name).is_dir()]
    if missing:
        on_disk = available_subsets(base)
        hint = (
            "download them with scripts/prepare_librispeech.py subsets=[...]"
            if any(m in LIBRISPEECH_SUBSETS for m in missing)
            else f"valid names are the official {list(LIBRISPEECH_SUBSETS)} and aliases {sorted(SUBSET_ALIASES)}"
        )
        raise DataError(
            f"subset(s) {missing} not found under {base}; available there: {on_disk or 'none'}. Fix: pick from "
            f"those, or {hint}"
        )
    local = SkipReport()
    issue = _Issues(on_error, local)
    out: list[Utterance] = []
    for name in names:
        for speaker_dir in sorted((p for p in (base / name).iterdir() if p.is_dir()), key=_numeric_key):
            for chapter_dir in sorted((p for p in speaker_dir.iterdir() if p.is_dir()), key=_numeric_key):
                out.extend(_read_chapter(chapter_dir, name, issue, max_duration))
    local.log_summary(f"{base} {names} (data.on_error=skip)")
    if report is not None:
        report.merge(local)
    return out


def load_audio(utt: Utterance | str | Path) -> tuple[Any, int]:
    """Read a FLAC as a float32 numpy array ``(N,)`` (mono) or ``(N, C)``, and its sample rate."""
    path = utt.path if isinstance(utt, Utterance) else Path(utt)
    audio, sr = sf.read(str(path), dtype="float32", always_2d=False)
    return audio, int(sr)


_NON_ALPHA = re.compile(r"[^A-Z' ]")


def normalize_transcript(text: str) -> str:
    """LibriSpeech-style text: uppercase, ``-`` as a space, only ``A-Z``, ``'`` and single spaces."""
    text = _NON_ALPHA.sub(" ", text.upper().replace("-", " "))
    words = (w.strip("'") for w in text.split())
    return " ".join(w for w in words if w)
