"""Word n-gram LM: modified Kneser-Ney by hand, normalisation, ARPA round trip, KenLM agreement."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conformer_prune.decoding.lm import BOS, EOS, UNK, arpa_unigrams, read_arpa, train_ngram_lm

CORPUS = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog",
    "the cat ate",
    "the dog ate the cat",
    "on the mat the cat sat",
]


def test_bigram_model_matches_a_hand_computation() -> None:
    """Sentences "a b" and "b". Bigrams (raw): <s> a, a b, <s> b: 1 each; b </s>: 2.
    Unigram continuation counts: a 1, b 2 (after a and <s>), </s> 1.
    Bigram discounts: n1=3, n2=1, Y=3/5, D1=1-2Y/3=0.6; D2=2-3Y*0/1=2 is out of (0, 2) -> fallback 1.0.
    Unigram discounts: n1=2, n2=1, Y=1/2, D1=0.5; D2 -> fallback 1.0.
    Unigrams: S=4, gamma=(0.5*2 + 1.0*1)/4=0.5, |V|=4 (a, b, </s>, <unk>):
      p(a)=0.5/4+0.5/4=0.25, p(b)=1/4+0.125=0.375, p(</s>)=0.25, p(<unk>)=0.125.
    Context <s>: S=2, gamma=0.6: p(a|<s>)=0.4/2+0.6*0.25=0.35, p(b|<s>)=0.2+0.6*0.375=0.425.
    Context a: S=1, gamma=0.6: p(b|a)=0.4+0.6*0.375=0.625.
    Context b: S=2, gamma=1.0/2: p(</s>|b)=1/2+0.5*0.25=0.625, p(a|b)=0.5*0.25 (backed off)."""
    lm = train_ngram_lm(["a b", "b"], order=2)
    expected = {
        ("a", ()): 0.25,
        ("b", ()): 0.375,
        (EOS, ()): 0.25,
        (UNK, ()): 0.125,
        ("a", (BOS,)): 0.35,
        ("b", (BOS,)): 0.425,
        (EOS, (BOS,)): 0.6 * 0.25,
        ("b", ("a",)): 0.625,
        (EOS, ("b",)): 0.625,
        ("a", ("b",)): 0.5 * 0.25,
        ("zebra", ("b",)): 0.5 * 0.125,  # unknown word -> <unk>
    }
    for (word, history), prob in expected.items():
        assert 10 ** lm.log10_prob(word, history) == pytest.approx(prob, rel=1e-9), (word, history)
    assert 10 ** lm.log10_sentence(["a", "b"]) == pytest.approx(0.35 * 0.625 * 0.625, rel=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_conditional_distribution_sums_to_one(order: int) -> None:
    lm = train_ngram_lm(CORPUS, order=order)
    vocab = [w for w in lm.vocab if w != BOS]
    assert set(vocab) == {w for s in CORPUS for w in s.split()} | {EOS, UNK}
    histories = [(), (BOS,), (BOS, "the"), ("the", "cat"), ("on", "the"), ("cat", "sat", "on"), ("zzz", "the")]
    for history in histories:
        assert sum(10 ** lm.log10_prob(w, history) for w in vocab) == pytest.approx(1.0, abs=1e-9), history


def test_arpa_round_trip_preserves_the_model(tmp_path: Path) -> None:
    lm = train_ngram_lm(CORPUS, order=3)
    path = lm.write_arpa(tmp_path / "lm" / "3gram.arpa")
    text = path.read_text()
    assert text.startswith("\n\\data\\\nngram 1=") and text.rstrip().endswith("\\end\\")
    back = read_arpa(path)
    assert back.order == 3 and sorted(back.vocab) == sorted(lm.vocab)
    for history in [(BOS,), (BOS, "a"), ("the", "dog"), ("mat",)]:
        for word in lm.vocab:
            assert back.log10_prob(word, history) == pytest.approx(lm.log10_prob(word, history), abs=1e-6)
    assert arpa_unigrams(path) == sorted({w for s in CORPUS for w in s.split()})


def test_flashlight_kenlm_reads_our_arpa_with_the_same_scores(tmp_path: Path) -> None:
    kenlm = pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.dictionary import create_word_dict

    lm = train_ngram_lm(CORPUS, order=3)
    path = lm.write_arpa(tmp_path / "3gram.arpa")
    words = sorted({w for s in CORPUS for w in s.split()}) + ["unseen"]
    word_dict = create_word_dict({**{w: [[w]] for w in words}, UNK: []})
    ken = kenlm.KenLM(str(path), word_dict)
    for sentence in ["the cat sat on the log", "a dog ate the unseen mat", "cat"]:
        state, total = ken.start(False), 0.0
        for word in sentence.split():
            state, score = ken.score(state, word_dict.get_index(word))
            total += score
        total += ken.finish(state)[1]
        assert total == pytest.approx(lm.log10_sentence(sentence.split()), abs=1e-4)  # both log10


def test_bad_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="order"):
        train_ngram_lm(CORPUS, order=0)
    with pytest.raises(ValueError, match="no words"):
        train_ngram_lm(["", "  "])
    with pytest.raises(ValueError, match="<s>"):
        train_ngram_lm(["<s> a"])
    not_arpa = tmp_path / "x.arpa"
    not_arpa.write_text("hello world\n")
    with pytest.raises(ValueError, match="not an ARPA file"):
        read_arpa(not_arpa)


def test_log10_probabilities_are_log10() -> None:
    lm = train_ngram_lm(["a"], order=1)  # p(a) = p(</s>) = (1 - D1)/2 + gamma/3
    probs = [10 ** lm.log10_prob(w) for w in ("a", EOS, UNK)]
    assert sum(probs) == pytest.approx(1.0) and all(0 < p < 1 for p in probs)
    assert math.isclose(lm.log10_prob("a"), math.log10(probs[0]))
