"""CTC text decoders: greedy, prefix beam search (vs brute force), lexicon + word n-gram LM beam search."""

from __future__ import annotations

import itertools
import math
import pickle
from pathlib import Path

import pytest
import torch

from conformer_prune.decoding import (
    GreedyCTCDecoder,
    LexiconLMCTCDecoder,
    PrefixBeamCTCDecoder,
    ctc_prefix_beam_search,
)
from conformer_prune.decoding.lm import train_ngram_lm

BOUNDARY = "\u2581"


class CharTokenizer:
    """Stand-in for the SentencePiece character model: ``"the cat"`` -> ``▁ t h e ▁ c a t``."""

    def __init__(self) -> None:
        self.pieces = ["<blk>", "<unk>", BOUNDARY, *"abcdefghijklmnopqrstuvwxyz'"]
        self.word_boundary_piece = BOUNDARY
        self.vocab_size = len(self.pieces)
        self._ids = {p: i for i, p in enumerate(self.pieces)}

    def spell(self, word: str) -> list[str]:
        return [BOUNDARY, *word]

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(p, 1) for w in text.split() for p in self.spell(w)]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids).replace(BOUNDARY, " ").strip()


def emissions(tok: CharTokenizer, text: str, confusions: dict[int, tuple[str, float]] | None = None) -> torch.Tensor:
    """``(2 * pieces, V)`` log-probs: each piece of ``text`` peaks at 0.9 on one frame, then a blank frame.
    ``confusions[i] = (piece, p)`` moves probability ``p`` of piece ``i``'s frame to another piece."""
    ids = tok.encode(text)
    probs = torch.full((2 * len(ids), tok.vocab_size), 0.02 / (tok.vocab_size - 1))
    for i, token in enumerate(ids):
        probs[2 * i, token] = 0.98
        probs[2 * i + 1, 0] = 0.98
    for i, (piece, p) in (confusions or {}).items():
        probs[2 * i, ids[i]] -= p
        probs[2 * i, tok.pieces.index(piece)] += p
    return (probs / probs.sum(-1, keepdim=True)).log()


def test_greedy_decoder_gives_the_text() -> None:
    tok = CharTokenizer()
    lp = torch.stack([emissions(tok, "the cat"), emissions(tok, "the cat")])
    lens = torch.tensor([lp.size(1), 8])  # the second stops after "▁the"
    assert GreedyCTCDecoder(tok)(None, lp, lens) == ["the cat", "the"]


def brute_force(log_probs: torch.Tensor, blank: int = 0) -> dict[tuple[int, ...], float]:
    """log P(labels | x) for every label sequence, by enumerating all V^T alignments."""
    T, V = log_probs.shape
    sums: dict[tuple[int, ...], list[float]] = {}
    for path in itertools.product(range(V), repeat=T):
        labels = tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or path[i - 1] != k))
        sums.setdefault(labels, []).append(sum(log_probs[t, k].item() for t, k in enumerate(path)))
    return {y: torch.tensor(s).logsumexp(0).item() for y, s in sums.items()}


@pytest.mark.parametrize(("frames", "vocab", "seed"), [(4, 3, 0), (5, 3, 1), (3, 4, 2)])
def test_exhaustive_prefix_beam_equals_brute_force_enumeration(frames: int, vocab: int, seed: int) -> None:
    torch.manual_seed(seed)
    log_probs = (2 * torch.randn(frames, vocab)).log_softmax(-1)
    exact = brute_force(log_probs)
    nbest = ctc_prefix_beam_search(log_probs, beam_size=1000)
    assert len(nbest) == len(exact)
    for labels, score in nbest:
        assert score == pytest.approx(exact[tuple(labels)], abs=1e-6)
    assert max(exact, key=exact.get) == tuple(nbest[0][0])
    assert math.isclose(sum(math.exp(s) for s in exact.values()), 1.0, rel_tol=1e-6)


def test_prefix_beam_beats_greedy_when_alignments_add_up() -> None:
    # best path is blank-blank (0.36), but "a" has three alignments: 0.24 + 0.24 + 0.16 = 0.64
    log_probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert ctc_prefix_beam_search(log_probs, beam_size=4)[0][0] == [1]
    assert ctc_prefix_beam_search(log_probs, beam_size=4)[0][1] == pytest.approx(math.log(0.64))


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_equals_greedy_on_peaked_inputs(seed: int) -> None:
    torch.manual_seed(seed)
    tok = CharTokenizer()
    B, T, V = 3, 30, tok.vocab_size
    best = torch.randint(0, V, (B, T))
    log_probs = (torch.randn(B, T, V) + 12 * torch.nn.functional.one_hot(best, V)).log_softmax(-1)
    lens = torch.tensor([30, 17, 1])
    greedy = GreedyCTCDecoder(tok)(None, log_probs, lens)
    assert PrefixBeamCTCDecoder(tok, beam_size=8)(None, log_probs, lens) == greedy
    assert PrefixBeamCTCDecoder(tok, beam_size=4, beam_size_token=3)(None, log_probs, lens) == greedy


def test_lexicon_decoder_only_outputs_lexicon_words() -> None:
    tok = CharTokenizer()
    lp = emissions(tok, "the cat sat", {6: ("x", 0.5)})[None]  # "a" of "cat": 0.48, "x": 0.5
    lens = torch.tensor([lp.size(1)])
    assert GreedyCTCDecoder(tok)(None, lp, lens) == ["the cxt sat"]
    decoder = LexiconLMCTCDecoder(tok, lexicon_words=["the", "cat", "sat", "on", "mat"])
    assert decoder(None, lp, lens) == ["the cat sat"]


@pytest.mark.parametrize("lm_backend", ["kenlm", "python"])
def test_word_lm_overrides_a_slight_acoustic_preference(tmp_path: Path, lm_backend: str) -> None:
    if lm_backend == "kenlm":
        pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    tok = CharTokenizer()
    arpa = train_ngram_lm(["the cat sat"] * 5 + ["a cot", "the mat"], order=3).write_arpa(tmp_path / "lm.arpa")
    lp = emissions(tok, "the cat sat", {6: ("o", 0.5)})[None]  # acoustics: "cot" 0.5 vs "cat" 0.48
    lens = torch.tensor([lp.size(1)])
    no_lm = LexiconLMCTCDecoder(tok, lexicon_words=["the", "cat", "cot", "sat", "a", "mat"])
    assert no_lm(None, lp, lens) == ["the cot sat"]
    # lexicon_words=None: the LM's unigrams are the lexicon
    with_lm = LexiconLMCTCDecoder(tok, lm_path=arpa, lm_weight=2.0, lm_backend=lm_backend)
    assert with_lm.words == ["a", "cat", "cot", "mat", "sat", "the"]
    assert with_lm(None, lp, lens) == ["the cat sat"]
    restored = pickle.loads(pickle.dumps(with_lm))  # flashlight objects are rebuilt on first use
    assert restored(None, lp, lens) == ["the cat sat"]


def test_kenlm_reads_the_arpa_file_without_printing(tmp_path: Path, capfd) -> None:
    """KenLM prints "Loading the LM will be faster..." and a 100-star ruler from C++; the decoder hides them."""
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    tok = CharTokenizer()
    arpa = train_ngram_lm(["the cat sat"] * 5 + ["a cot", "the mat"], order=3).write_arpa(tmp_path / "lm.arpa")
    lp = emissions(tok, "the cat sat", {})[None]
    capfd.readouterr()
    assert LexiconLMCTCDecoder(tok, lm_path=arpa, lm_backend="kenlm")(None, lp, torch.tensor([lp.size(1)])) == [
        "the cat sat"
    ]
    out, err = capfd.readouterr()
    assert "Loading the LM" not in out + err and "*" * 20 not in out + err and "lm.arpa" not in out + err


class WordPieceTokenizer:
    """Stand-in for a BPE model whose word-initial pieces carry the boundary and that has no lone ``▁``."""

    pieces = ["<blk>", "<unk>", f"{BOUNDARY}the", f"{BOUNDARY}c", "at", "ot", f"{BOUNDARY}s"]
    word_boundary_piece = BOUNDARY
    vocab_size = len(pieces)

    def spell(self, word: str) -> list[str]:
        return {"the": [f"{BOUNDARY}the"], "cat": [f"{BOUNDARY}c", "at"], "cot": [f"{BOUNDARY}c", "ot"]}[word]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids).replace(BOUNDARY, " ").strip()


def test_lexicon_decoder_works_without_a_lone_boundary_piece() -> None:
    tok = WordPieceTokenizer()
    # frames: ▁the, blank, ▁c, "ot" 0.5 / "at" 0.45, blank; the lexicon holds "the" and "cat" only
    probs = torch.full((5, tok.vocab_size), 0.01)
    for t, piece in enumerate([2, 0, 3, 5, 0]):
        probs[t, piece] = 0.94
    probs[3, 5], probs[3, 4] = 0.5, 0.45
    lp = (probs / probs.sum(-1, keepdim=True)).log()[None]
    assert GreedyCTCDecoder(tok)(None, lp, torch.tensor([5])) == ["the cot"]
    assert LexiconLMCTCDecoder(tok, lexicon_words=["the", "cat"])(None, lp, torch.tensor([5])) == ["the cat"]


def test_lexicon_words_may_come_from_a_transcript_file(tmp_path: Path) -> None:
    words = tmp_path / "train.txt"
    words.write_text("the cat sat\nthe mat\n")
    decoder = LexiconLMCTCDecoder(CharTokenizer(), lexicon_words=words)
    assert decoder.words == ["the", "cat", "sat", "mat"]


def test_lexicon_decoder_rejects_bad_configuration(tmp_path: Path) -> None:
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="lexicon word 'CAT'"):
        LexiconLMCTCDecoder(tok, lexicon_words=["the", "CAT"])
    with pytest.raises(ValueError, match="lm_path"):
        LexiconLMCTCDecoder(tok, lm_path=tmp_path / "missing.arpa")
    with pytest.raises(ValueError, match="lexicon_words"):
        LexiconLMCTCDecoder(tok)
    with pytest.raises(ValueError, match="lm_backend"):
        LexiconLMCTCDecoder(tok, lexicon_words=["a"], lm_backend="srilm")


def test_decoders_check_shapes() -> None:
    tok = CharTokenizer()
    for decoder in (GreedyCTCDecoder(tok), PrefixBeamCTCDecoder(tok)):
        with pytest.raises(ValueError, match="log_probs must be"):
            decoder(None, torch.zeros(5, 4), torch.tensor([5]))
        with pytest.raises(ValueError, match="lens must be"):
            decoder(None, torch.zeros(2, 5, 4), torch.tensor([5]))


def test_exports_and_run_configs_that_name_a_moved_decoder_still_build_it() -> None:
    """``conformer_prune.models.decoding.*`` (exports and run configs written before ``decoding/``) still resolve."""
    from conformer_prune.checkpoint import instantiate_node, upgrade_targets

    old = {"_target_": "conformer_prune.models.decoding.PrefixBeamCTCDecoder", "_partial_": True, "beam_size": 3}
    assert upgrade_targets({"default": old})["default"]["_target_"] == "conformer_prune.decoding.PrefixBeamCTCDecoder"
    decoder = instantiate_node(old)(tokenizer=CharTokenizer())
    assert isinstance(decoder, PrefixBeamCTCDecoder) and decoder.beam_size == 3
