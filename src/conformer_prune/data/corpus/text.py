"""The corpus's text: WordNet example sentences, filtered to a vocabulary and merged into utterances."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from conformer_prune.data.librispeech import normalize_transcript

log = logging.getLogger(__name__)

_WORDNET_QUOTE = re.compile(r'"([^"]+)"')
_WORDNET_OK = re.compile(r"[A-Za-z' ,.?!;:-]+")
_FIRST_PERSON = {"I", "I'm", "I'd", "I'll", "I've"}


def extract_wordnet_sentences(wordnet_dir: str | Path = "/usr/share/wordnet") -> list[str]:
    """The curated sentence list shipped as ``resources/sentences_en.txt``.

    Quoted examples of the WordNet 3.0 glosses (``data.{adj,adv,noun,verb}`` from Debian
    ``wordnet-base``) made only of letters and punctuation (no digits), with no proper noun (a
    capitalised word after the first, other than "I"), 6-25 words once normalised to LibriSpeech
    style, de-duplicated, in file order.
    """
    files = sorted(Path(wordnet_dir).glob("data.*"))
    if not files:
        raise ValueError(f"no WordNet data files in {wordnet_dir}: apt-get install wordnet-base")
    seen: set[str] = set()
    out: list[str] = []
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "|" not in line:  # licence header, or no gloss
                continue
            for quote in _WORDNET_QUOTE.findall(line.split("|", 1)[1]):
                quote = quote.strip().rstrip(";").strip()
                if not _WORDNET_OK.fullmatch(quote):
                    continue
                raw = quote.replace("-", " ").split()
                if any(w[0].isupper() and w.strip(".,;:?!'") not in _FIRST_PERSON for w in raw[1:]):
                    continue
                text = normalize_transcript(quote)
                if 6 <= len(text.split()) <= 25 and text not in seen:
                    seen.add(text)
                    out.append(text)
    return out


def load_sentences(path: str | Path | None = None) -> list[str]:
    """Sentences (LibriSpeech-normalised) from ``path`` or the packaged WordNet list."""
    if path is None:
        text = resources.files("conformer_prune").joinpath("resources/sentences_en.txt").read_text("utf-8")
    else:
        if not Path(path).is_file():
            raise ValueError(f"corpus.sentences: {path} does not exist (one sentence per line expected)")
        text = Path(path).read_text(encoding="utf-8")
    sentences = [normalize_transcript(line) for line in text.splitlines()]
    return list(dict.fromkeys(s for s in sentences if s))


def filter_vocabulary(sentences: Sequence[str], vocab_top: int | None) -> list[str]:
    """Sentences whose words are all among the ``vocab_top`` most frequent (ties: alphabetical)."""
    if vocab_top is None:
        return list(sentences)
    counts = Counter(w for s in sentences for w in s.split())
    top = {w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_top]}
    return [s for s in sentences if all(w in top for w in s.split())]


def merge_sentences(sentences: Sequence[str], min_words: int) -> list[list[str]]:
    """Group consecutive sentences until each group has at least ``min_words`` words."""
    groups: list[list[str]] = []
    current: list[str] = []
    words = 0
    for sentence in sentences:
        current.append(sentence)
        words += len(sentence.split())
        if words >= min_words:
            groups.append(current)
            current, words = [], 0
    if current:
        groups.append(current)
    return groups


def tts_text(group: Sequence[str]) -> str:
    """What the engine reads: lowercase sentences (no letter-by-letter acronyms), with full stops."""
    return " ".join(s.lower().capitalize() + "." for s in group)
