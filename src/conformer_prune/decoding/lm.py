"""Word n-gram language model: interpolated modified Kneser-Ney training, ARPA write/read, queries.

The estimate follows Chen & Goodman (1998), "An empirical study of smoothing techniques for language
modeling", section 3.5 (interpolated Kneser-Ney with three discounts), with the count conventions of
KenLM's ``lmplz`` (Heafield et al., 2013) and no pruning:

* Each sentence is padded as ``<s> w_1 ... w_k </s>``. ``<s>`` is never predicted; ``</s>`` is.
* Adjusted counts ``a(g)``: the raw count for n-grams of the highest order ``N`` and for n-grams that
  start with ``<s>`` (nothing can precede them); for every other n-gram of order ``n < N``, the number
  of distinct words seen to its left (the continuation count ``N1+(. g)``).
* Discounts per order from the counts-of-counts ``n_k`` (n-grams whose adjusted count is ``k``):
  ``Y = n_1 / (n_1 + 2 n_2)``, ``D_1 = 1 - 2Y n_2/n_1``, ``D_2 = 2 - 3Y n_3/n_2``, ``D_3+ = 3 - 4Y n_4/n_3``.
  A discount that cannot be estimated (some ``n_k = 0``, as in tiny corpora) or falls outside
  ``(0, k)`` is replaced by ``k / 2`` and logged.
* For a context ``h`` with followers ``x``, ``S(h) = sum_x a(h x)``, ``N_k(h)`` the number of followers
  with ``a = k`` (``k = 3`` meaning ``>= 3``), and
  ``gamma(h) = (D_1 N_1(h) + D_2 N_2(h) + D_3+ N_3+(h)) / S(h)``::

      p(w | h) = max(a(h w) - D(a(h w)), 0) / S(h) + gamma(h) p(w | h')      (h' = h without its first word)
      p(w)     = max(a(w) - D(a(w)), 0) / S()  + gamma() / |V|             (|V|: predictable words)

  where the predictable vocabulary ``V`` is the training words plus ``</s>`` and ``<unk>``.
* In ARPA terms the stored probability of ``h w`` is ``p(w | h)`` above and the back-off weight of
  ``h`` is ``gamma(h)`` (log10 both); ``p(<s>)`` is written as ``-99``, as SRILM and KenLM do. A query
  of an unseen ``h w`` backs off: ``p(w | h) = bow(h) p(w | h')``, which reproduces the interpolated
  formula, so every conditional distribution sums to one over ``V``.

Words are whitespace-separated strings taken as given (normalise case and punctuation before).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
_LOG10_ZERO = -99.0  # ARPA convention for "never predicted" (p(<s>))

Ngram = tuple[str, ...]


@dataclass
class NGramLM:
    """A back-off n-gram model in ARPA form (log10 probabilities and back-off weights).

    Attributes:
        order: highest n-gram order ``N``.
        log10_probs: ``log10_probs[n - 1][g]`` is the stored log10 probability of the n-gram ``g``.
        log10_backoffs: ``log10_backoffs[n - 1][g]`` is the log10 back-off weight of the n-gram ``g`` as a
            context (missing means 0, i.e. weight 1).
    """

    order: int
    log10_probs: list[dict[Ngram, float]]
    log10_backoffs: list[dict[Ngram, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.order < 1 or len(self.log10_probs) != self.order:
            raise ValueError(f"NGramLM: need order >= 1 and one table per order, got order={self.order}")
        if UNK not in self.vocab:
            self.log10_probs[0][(UNK,)] = _LOG10_ZERO
        while len(self.log10_backoffs) < self.order:
            self.log10_backoffs.append({})

    @property
    def vocab(self) -> list[str]:
        """Every unigram, ``<s>``, ``</s>`` and ``<unk>`` included."""
        return [g[0] for g in self.log10_probs[0]]

    def log10_prob(self, word: str, history: Sequence[str] = ()) -> float:
        """``log10 p(word | history)`` by ARPA back-off; unknown words map to ``<unk>``.

        Args:
            word: the predicted word (``</s>`` for the sentence end).
            history: preceding words, oldest first (start with ``<s>`` for a sentence start); only the
                last ``order - 1`` matter.
        """
        unigrams = self.log10_probs[0]
        word = word if (word,) in unigrams else UNK
        keep = self.order - 1
        recent = history[max(0, len(history) - keep) :] if keep else ()
        context = tuple(w if (w,) in unigrams else UNK for w in recent)
        backoff = 0.0
        for start in range(len(context) + 1):  # longest context first
            ctx = context[start:]
            prob = self.log10_probs[len(ctx)].get((*ctx, word))
            if prob is not None:
                return backoff + prob
            backoff += self.log10_backoffs[len(ctx) - 1].get(ctx, 0.0)
        raise AssertionError(f"unigram {word!r} missing")  # unreachable: word is a unigram or <unk>

    def log10_sentence(self, words: Sequence[str]) -> float:
        """``log10 p(words </s> | <s>)``."""
        history = [BOS]
        total = 0.0
        for word in [*words, EOS]:
            total += self.log10_prob(word, history)
            history.append(word)
        return total

    def write_arpa(self, path: str | Path) -> Path:
        """Write the model as an ARPA text file (sorted, 7 decimals) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            f.write("\n\\data\\\n")
            for n, table in enumerate(self.log10_probs, start=1):
                f.write(f"ngram {n}={len(table)}\n")
            for n, table in enumerate(self.log10_probs, start=1):
                f.write(f"\n\\{n}-grams:\n")
                backoffs = self.log10_backoffs[n - 1]
                for gram in sorted(table):
                    line = f"{table[gram]:.7f}\t{' '.join(gram)}"
                    if n < self.order and gram in backoffs:
                        line += f"\t{backoffs[gram]:.7f}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")
        return path


def train_ngram_lm(sentences: Iterable[str | Sequence[str]], order: int = 3) -> NGramLM:
    """Estimate an interpolated modified Kneser-Ney model (see the module docstring).

    Args:
        sentences: transcripts, each a string (split on whitespace) or a sequence of words.
        order: highest n-gram order ``N`` (3 = trigram).

    Returns:
        The model; ``.write_arpa(path)`` saves it.

    Raises:
        ValueError: ``order < 1``, no words at all, or a sentence holding ``<s>``/``</s>``.
    """
    if order < 1:
        raise ValueError(f"train_ngram_lm: order must be >= 1, got {order}")
    counts: list[dict[Ngram, int]] = [defaultdict(int) for _ in range(order)]  # adjusted counts a(.)
    n_words = 0
    for sentence in sentences:
        words = sentence.split() if isinstance(sentence, str) else list(sentence)
        if BOS in words or EOS in words:
            raise ValueError(f"train_ngram_lm: a transcript holds {BOS} or {EOS}: {' '.join(words)!r}")
        n_words += len(words)
        tokens = [BOS, *words, EOS]
        for i in range(1, len(tokens)):
            gram = tuple(tokens[max(0, i - order + 1) : i + 1])  # full order, or left-truncated at <s>
            counts[len(gram) - 1][gram] += 1  # raw counts
    if n_words == 0:
        raise ValueError("train_ngram_lm: the transcripts hold no words")
    for n in range(order - 1, 0, -1):  # continuation counts for order n from the distinct (n+1)-grams
        for gram in counts[n]:
            if gram[1] != BOS:
                counts[n - 1][gram[1:]] += 1

    vocab = sorted({g[0] for g in counts[0]} | {EOS, UNK})  # the predictable words V
    probs: list[dict[Ngram, float]] = [{} for _ in range(order)]  # natural probabilities first
    gammas: list[dict[Ngram, float]] = [{} for _ in range(order)]
    for n in range(1, order + 1):
        discounts = _discounts(counts[n - 1].values(), n)
        followers: dict[Ngram, list[tuple[str, int]]] = defaultdict(list)
        for gram, count in counts[n - 1].items():
            followers[gram[:-1]].append((gram[-1], count))
        if n == 1:
            followers[()] += [(w, 0) for w in vocab if (w,) not in counts[0]]  # <unk>: gamma / |V| only
        for context, words in followers.items():
            total = sum(count for _, count in words)
            gamma = sum(discounts[min(count, 3)] for _, count in words if count > 0) / total
            gammas[n - 1][context] = gamma
            for word, count in words:
                lower = 1.0 / len(vocab) if n == 1 else probs[n - 2][(*context[1:], word)]
                discounted = max(count - discounts[min(count, 3)], 0.0)
                probs[n - 1][(*context, word)] = discounted / total + gamma * lower

    log10_probs = [{g: math.log10(p) for g, p in table.items()} for table in probs]
    log10_probs[0][(BOS,)] = _LOG10_ZERO
    # the back-off weight of h (an n-gram of order n < N) is the gamma of h as a context at order n + 1
    log10_backoffs = [
        {g: math.log10(gammas[n][g]) for g in log10_probs[n - 1] if g in gammas[n] and gammas[n][g] > 0}
        for n in range(1, order)
    ]
    return NGramLM(order, log10_probs, log10_backoffs)


def _discounts(adjusted_counts: Iterable[int], order: int) -> tuple[float, float, float, float]:
    """``(0, D_1, D_2, D_3+)`` from counts-of-counts, with the ``k / 2`` fallback (module docstring)."""
    n = [0] * 5
    for count in adjusted_counts:
        if 1 <= count <= 4:
            n[count] += 1
    estimate = [math.nan] * 3
    if n[1] > 0 and n[2] > 0:
        y = n[1] / (n[1] + 2 * n[2])
        for k in (1, 2, 3):
            if n[k] > 0:
                estimate[k - 1] = k - (k + 1) * y * n[k + 1] / n[k]
    out = [0.0]
    for k, d in enumerate(estimate, start=1):
        if not 0.0 < d < k:  # also catches nan
            log.warning("n-gram order %d: discount D_%d not estimable (%s); using %.1f", order, k, d, k / 2)
            d = k / 2
        out.append(d)
    return out[0], out[1], out[2], out[3]


def read_arpa(path: str | Path) -> NGramLM:
    """Read an ARPA file (as written by :meth:`NGramLM.write_arpa`, KenLM or SRILM).

    Raises:
        ValueError: if the file is not ARPA (no ``\\data\\`` header, malformed lines, count mismatch).
    """
    path = Path(path)
    declared: dict[int, int] = {}
    probs: list[dict[Ngram, float]] = []
    backoffs: list[dict[Ngram, float]] = []
    section = 0  # 0: before \data\, -1: in \data\, n: in \n-grams:
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = -1
            elif line == "\\end\\":
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                while len(probs) < section:
                    probs.append({})
                    backoffs.append({})
            elif section == -1 and line.startswith("ngram "):
                n, count = line[len("ngram ") :].split("=")
                declared[int(n)] = int(count)
            elif section > 0:
                parts = line.split()
                if len(parts) not in (section + 1, section + 2):
                    raise ValueError(f"{path}:{lineno}: not an ARPA {section}-gram line: {line!r}")
                gram = tuple(parts[1 : section + 1])
                probs[section - 1][gram] = float(parts[0])
                if len(parts) == section + 2:
                    backoffs[section - 1][gram] = float(parts[-1])
            elif section == 0:
                continue  # free text before \data\ is allowed
            else:
                raise ValueError(f"{path}:{lineno}: unexpected line in the ARPA header: {line!r}")
    if not declared or not probs:
        raise ValueError(f"{path}: not an ARPA file (no \\data\\ header or no n-gram sections)")
    for n, count in declared.items():
        if n > len(probs) or len(probs[n - 1]) != count:
            got = len(probs[n - 1]) if n <= len(probs) else 0
            raise ValueError(f"{path}: header declares {count} {n}-grams, the file holds {got}")
    return NGramLM(len(probs), probs, backoffs)


def arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA file's 1-gram section, without ``<s>``, ``</s>`` and ``<unk>`` (file order)."""
    words = []
    in_unigrams = False
    with Path(path).open(encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and line.startswith("\\"):
                break
            elif in_unigrams and line:
                word = line.split()[1]
                if word not in (BOS, EOS, UNK):
                    words.append(word)
    if not in_unigrams:
        raise ValueError(f"{path}: not an ARPA file (no \\1-grams: section)")
    return words
