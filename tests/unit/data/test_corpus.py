"""The embedded corpus: byte-identical for a seed, five valid subsets, disjoint speakers and sentences."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import subprocess
import sys
import threading
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import OmegaConf

import conformer_prune
from conformer_prune.data.corpus import (
    CORPUS_SUBSETS,
    ESPEAK_VARIANTS,
    WARP_GRID,
    CorpusConfig,
    corpus_id,
    corpus_root,
    extract_wordnet_sentences,
    filter_vocabulary,
    find_corpus,
    generate_corpus,
    load_sentences,
    merge_sentences,
    plan_corpus,
    read_manifest,
    regeneration_hint,
    resample_fft,
    resolve_engines,
)
from conformer_prune.data.corpus import build as corpus_build
from conformer_prune.data.corpus import engines as corpus_engines
from conformer_prune.data.datamodule import LibriSpeechDataModule
from conformer_prune.data.librispeech import read_subsets

CONF = Path(__file__).resolve().parents[3] / "conf"
RESOURCES = Path(conformer_prune.__file__).resolve().parent / "resources"
TINY = {"train_minutes": 0.3, "eval_minutes": 0.1, "train_speakers": 2, "eval_speakers": 1, "chapters_per_speaker": 1}


def tree_hash(base: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


REAL_WHICH = shutil.which
REAL_FLITE = REAL_WHICH("flite") is not None


def _which_but_flite(name: str, *args, **kwargs) -> str | None:
    return None if name == "flite" else REAL_WHICH(name, *args, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def no_flite():
    """Every test here starts on an eSpeak-only machine (CI installs flite); a test fakes flite or puts the
    real one back (``real_flite``) itself."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shutil, "which", _which_but_flite)
        yield


@pytest.fixture
def real_flite(monkeypatch) -> None:
    if not REAL_FLITE:
        pytest.skip("needs apt-get install flite")
    monkeypatch.setattr(shutil, "which", REAL_WHICH)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(CorpusConfig(**TINY), root, jobs=1, progress=False)
    return root / "LibriSpeech"


@pytest.mark.parametrize("engines", ["auto", ("espeak",), ("espeak", "flite")], ids=["auto", "espeak_only", "flite"])
def test_same_seed_gives_a_byte_identical_tree_whatever_jobs(tmp_path: Path, engines, request) -> None:
    if "flite" in engines:
        request.getfixturevalue("real_flite")
    config = CorpusConfig(**TINY, engines=engines)
    generate_corpus(config, tmp_path / "a", jobs=1, progress=False)
    generate_corpus(config, tmp_path / "b", jobs=2, progress=False)
    assert tree_hash(tmp_path / "a" / "LibriSpeech") == tree_hash(tmp_path / "b" / "LibriSpeech")
    generate_corpus(CorpusConfig(**TINY, engines=engines, seed=1), tmp_path / "c", jobs=1, progress=False)
    assert tree_hash(tmp_path / "a" / "LibriSpeech") != tree_hash(tmp_path / "c" / "LibriSpeech")


_VARIANT_SCRIPT = """
import hashlib
from conformer_prune.data.corpus import ESPEAK_VARIANTS, _Espeak
engine = _Espeak.get()
for sex in ESPEAK_VARIANTS.values():
    for variant in sex["seen"] + sex["held_out"]:
        audio, _ = engine.synthesize("a fine day at sea", "en+" + variant, 170, 50, 50)
        print(variant, hashlib.md5(audio.tobytes()).hexdigest())
"""


def test_every_espeak_variant_renders_identically_in_fresh_processes() -> None:
    runs = [subprocess.run([sys.executable, "-c", _VARIANT_SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]  # fmt: skip
    assert runs[0] == runs[1] and len(runs[0].splitlines()) == 23


def test_tree_has_five_valid_subsets_and_metadata(tiny_corpus: Path) -> None:
    utts = read_subsets(tiny_corpus, list(CORPUS_SUBSETS), on_error="raise")
    assert {u.subset for u in utts} == set(CORPUS_SUBSETS)
    for utt in utts:
        info = sf.info(str(utt.path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 1.0 < utt.duration < 15.0 and set(utt.text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")
    speakers = {s: {u.speaker for u in utts if u.subset == s} for s in CORPUS_SUBSETS}
    assert sum(len(v) for v in speakers.values()) == len(set().union(*speakers.values()))  # disjoint
    texts = {s: {u.text for u in utts if u.subset == s} for s in CORPUS_SUBSETS}
    assert sum(len(v) for v in texts.values()) == len(set().union(*texts.values()))
    manifest = json.loads((tiny_corpus / "corpus.json").read_text())
    assert manifest["synthetic"] and "espeak" in manifest["engines"]
    assert manifest["settings"]["seed"] == 0 and manifest["settings"]["train_minutes"] == 0.3
    assert {s["speaker"] for s in manifest["speakers"]} == set().union(*speakers.values())
    rows = [line.split("|") for line in (tiny_corpus / "SPEAKERS.TXT").read_text().splitlines()[1:]]
    assert {int(r[0]) for r in rows} == set().union(*speakers.values())
    assert all("synthetic espeak:" in r[4] or "synthetic flite:" in r[4] for r in rows)
    assert len((tiny_corpus / "CHAPTERS.TXT").read_text().splitlines()) == 1 + 6


def test_default_plan_keeps_voice_families_and_sentences_apart() -> None:
    plan = plan_corpus(CorpusConfig())
    by_subset = {s: [sp for sp in plan.speakers if sp.subset == s] for s in CORPUS_SUBSETS}
    assert len(by_subset["train-clean-100"]) == 48 and all(len(by_subset[s]) == 8 for s in CORPUS_SUBSETS[1:])
    families = {s: {(sp.engine, sp.family) for sp in v} for s, v in by_subset.items()}
    train = families["train-clean-100"]
    assert families["dev-clean"] <= train and families["test-clean"] <= train  # new speakers, known families
    assert not (families["dev-other"] | families["test-other"]) & train  # families never used in training
    variants = {s: {sp.variant for sp in v if sp.engine == "espeak"} for s, v in by_subset.items()}
    assert variants["train-clean-100"] <= set(ESPEAK_VARIANTS["M"]["seen"] + ESPEAK_VARIANTS["F"]["seen"])
    for subset in CORPUS_SUBSETS[1:]:
        assert not variants[subset] & variants["train-clean-100"]
    params = {
        s: {(sp.family, sp.warp, sp.snr_db, sp.rate, sp.pitch, sp.stretch) for sp in v} for s, v in by_subset.items()
    }
    assert not (params["dev-clean"] | params["test-clean"]) & params["train-clean-100"]
    if "flite" in plan.engines:
        assert Counter(sp.engine for sp in by_subset["train-clean-100"]) == {"espeak": 24, "flite": 24}
    sentences = {s: set() for s in CORPUS_SUBSETS}
    for lines in plan.transcripts.values():
        for line in lines:
            sentences[_subset_of(line)].add(line.split(" ", 1)[1])
    for subset in CORPUS_SUBSETS[1:]:
        assert not sentences[subset] & sentences["train-clean-100"]
        assert all(not sentences[subset] & sentences[o] for o in CORPUS_SUBSETS[1:] if o != subset)
    planned = Counter()
    for task in plan.tasks:
        planned[task.speaker.subset] += task.estimated_seconds / 60
    assert planned["train-clean-100"] == pytest.approx(90, rel=0.05)
    assert planned["dev-other"] == pytest.approx(5, rel=0.15)


def _subset_of(line: str) -> str:
    speaker = int(line.split("-", 1)[0])
    return {1: "train-clean-100", 2: "dev-clean", 3: "test-clean", 4: "dev-other", 5: "test-other"}[speaker // 1000]


def test_existing_trees_are_reused_or_refused(tiny_corpus: Path, tmp_path: Path) -> None:
    before = tree_hash(tiny_corpus)
    manifest = generate_corpus(CorpusConfig(**TINY), tiny_corpus.parent, jobs=1, progress=False)
    assert tree_hash(tiny_corpus) == before and manifest["corpus_id"] == corpus_id(CorpusConfig(**TINY))
    foreign = tmp_path / "LibriSpeech"
    foreign.mkdir()
    with pytest.raises(ValueError, match="holds no corpus.json.*delete it"):
        generate_corpus(CorpusConfig(**TINY), tmp_path, jobs=1, progress=False)
    assert not list(tmp_path.glob(".LibriSpeech.partial-*"))


def test_concurrent_generations_of_one_corpus_wait_for_each_other(tmp_path: Path, caplog) -> None:
    config = CorpusConfig(**TINY, engines=("espeak",))
    results: list[dict] = []
    with caplog.at_level(logging.INFO, logger="conformer_prune.data.corpus"):
        threads = [
            threading.Thread(target=lambda: results.append(generate_corpus(config, tmp_path, jobs=1, progress=False)))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert sum("embedded corpus written" in r.getMessage() for r in caplog.records) == 1
    assert sum("already complete" in r.getMessage() for r in caplog.records) == 1


def test_corpus_id_follows_the_settings() -> None:
    base = corpus_id(CorpusConfig(**TINY))
    assert base == corpus_id(CorpusConfig(**TINY)) and len(base) == 10
    assert corpus_id(CorpusConfig(**{**TINY, "vocab_top": 1000})) != base
    # the id hashes the content: auto resolved to some engines is those engines named
    versions = {"espeak": "1.52.0"}
    auto, named = CorpusConfig(**TINY), CorpusConfig(**TINY, engines=("espeak",))
    assert corpus_id(auto, versions) == corpus_id(named, versions)
    assert corpus_id(auto, versions) != corpus_id(auto, {"espeak": "1.51"})
    assert corpus_id(auto, versions) != corpus_id(auto, {**versions, "flite": "2.2"})


def _fake_flite(monkeypatch) -> None:
    """flite "installed" for the resolver (nothing may synthesise with it)."""
    real = corpus_engines.engine_versions

    def versions(engines):
        engines = list(engines)
        return {**real([e for e in engines if e != "flite"]), **({"flite": "2.2"} if "flite" in engines else {})}

    monkeypatch.setattr(corpus_engines, "flite_available", lambda: True)  # what resolve_engines asks
    monkeypatch.setattr(corpus_build, "engine_versions", versions)  # what a corpus id is made of


def test_auto_means_what_it_resolved_to_when_the_corpus_was_made(tiny_corpus: Path, tmp_path: Path, monkeypatch):
    base = tmp_path / "embedded"
    auto = CorpusConfig(**TINY)
    made = base / corpus_id(auto)
    assert corpus_root(base, auto) == made and find_corpus(base, auto) is None  # nothing made yet
    shutil.copytree(tiny_corpus.parent, made, ignore=shutil.ignore_patterns(".generate.lock"))
    assert find_corpus(base, auto) == made
    manifest = read_manifest(made)
    assert manifest["settings"]["engines"] == "auto" and list(manifest["engines"]) == resolve_engines("auto")

    _fake_flite(monkeypatch)  # another engine appears
    assert resolve_engines("auto") == ["espeak", "flite"] and corpus_id(auto) != made.name
    assert find_corpus(base, auto) == made == corpus_root(base, auto)  # still the corpus auto made
    named = CorpusConfig(**TINY, engines=("espeak", "flite"))
    assert corpus_root(base, named) == base / corpus_id(named) != made  # naming the engines asks for another

    # a tree made by an older version (another id formula) is found by its settings too
    legacy = base / "0123456789"
    made.rename(legacy)
    assert find_corpus(base, auto) == legacy
    assert find_corpus(base, CorpusConfig(**{**TINY, "seed": 1})) is None


def test_regeneration_hint_names_the_engines_and_what_is_missing(tiny_corpus: Path, tmp_path: Path, monkeypatch):
    manifest = read_manifest(tiny_corpus)
    hint = regeneration_hint(manifest, tmp_path / "x")
    assert f"python scripts/make_corpus.py root={tmp_path / 'x'} train_minutes=0.3 eval_minutes=0.1" in hint
    assert "engines=[espeak]" in hint and "auto" not in hint and "cannot be reproduced" not in hint
    # the command makes the same audio and transcripts (its settings name the engines auto resolved to)
    args = dict(a.split("=", 1) for a in hint.split("`")[1].split()[2:])
    config = {**TINY, "engines": ["espeak"]}
    assert {k: args[k] for k in TINY} == {k: str(v) for k, v in TINY.items()} and args["engines"] == "[espeak]"
    generate_corpus(CorpusConfig(**config), tmp_path / "x", jobs=1, progress=False)

    def audio_and_text(base: Path) -> str:
        digest = hashlib.sha256()
        for path in sorted(p for p in base.rglob("*") if p.suffix in (".flac", ".txt") and p.name[0].isdigit()):
            digest.update(str(path.relative_to(base)).encode() + path.read_bytes())
        return digest.hexdigest()

    assert audio_and_text(tmp_path / "x" / "LibriSpeech") == audio_and_text(tiny_corpus)

    with_flite = {**manifest, "engines": {**manifest["engines"], "flite": "2.2"}}
    monkeypatch.setattr(shutil, "which", lambda name: None)
    hint = regeneration_hint(with_flite, tmp_path / "y")
    assert "engines=[espeak,flite]" in hint and "cannot be reproduced here: flite is not installed" in hint
    older = {**manifest, "engines": {"espeak": "1.40"}}
    assert "made with espeak 1.40 (here 1.52" in regeneration_hint(older, tmp_path / "z")


def test_config_errors_name_the_key(monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"data.corpus: unknown key\(s\) \['minutes'\]"):
        CorpusConfig.from_mapping({"minutes": 3}, what="data.corpus")
    with pytest.raises(ValueError, match="corpus.engines"):
        CorpusConfig(engines=("espeak", "festival"))
    with pytest.raises(ValueError, match="train_speakers"):
        CorpusConfig(train_speakers=0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resolve_engines("auto") == ["espeak"]
    with pytest.raises(ValueError, match="apt-get install flite"):
        resolve_engines(["espeak", "flite"])
    with pytest.raises(ValueError, match="vocab_top"):
        plan_corpus(CorpusConfig(vocab_top=30, engines=("espeak",)))


def test_sentence_list_vocabulary_filter_and_merging() -> None:
    sentences = load_sentences()
    assert len(sentences) > 20000 and (RESOURCES / "sentences_en.txt").stat().st_size < 1_000_000
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in (RESOURCES / "WORDNET_LICENSE.txt").read_text()
    assert all(set(s) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") for s in sentences)
    top = filter_vocabulary(sentences, 2000)
    assert 2000 < len(top) < 3000
    words = Counter(w for s in sentences for w in s.split())
    allowed = {w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:2000]}
    assert all(set(s.split()) <= allowed for s in top)
    groups = merge_sentences(top[:50], 10)
    assert all(sum(len(s.split()) for s in g) >= 10 for g in groups[:-1])
    assert [s for g in groups for s in g] == top[:50]


@pytest.mark.skipif(not Path("/usr/share/wordnet/data.noun").exists(), reason="needs apt-get install wordnet-base")
def test_packaged_sentences_are_the_wordnet_extract() -> None:
    assert extract_wordnet_sentences() == load_sentences()


def test_fft_resampling_keeps_a_tone() -> None:
    t = np.arange(22050) / 22050
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    for warp in (WARP_GRID[0], WARP_GRID[len(WARP_GRID) // 2], WARP_GRID[-1]):
        y = resample_fft(tone, Fraction(16000, 22050) / warp)
        assert abs(len(y) - 16000 / float(warp)) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(y))) * 16000 / len(y)
        assert peak == pytest.approx(440 * float(warp), abs=2)


def test_datamodule_generates_the_corpus_on_first_use(tmp_path: Path) -> None:
    settings = {**TINY, "engines": ["espeak"], "jobs": 1, "progress": False}
    dm = LibriSpeechDataModule(root=str(tmp_path / "embedded"), corpus=settings, max_batch_seconds=30.0)
    assert dm.data_root == tmp_path / "embedded" / corpus_id(CorpusConfig(**TINY, engines=("espeak",)))
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.data_root / "LibriSpeech" / "corpus.json").is_file()
    batch = next(iter(dm.train_dataloader()))
    assert batch["features"].shape[-1] == 80
    desc = dm.corpus_description()
    assert desc["synthetic"] and desc["engines"].keys() == {"espeak"}
    assert desc["voices"]["dev-other"] == ["espeak:en-gb-scotland"]
    other = LibriSpeechDataModule(root=str(tmp_path / "embedded"), corpus={**settings, "seed": 3})
    assert other.data_root != dm.data_root  # a changed corpus config never overwrites a tree
    shutil.rmtree(tmp_path / "embedded")


def test_configs_agree_with_the_code() -> None:
    defaults = dict(CorpusConfig().__dict__)
    defaults["engines"] = "auto"
    embedded = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "embedded.yaml"))
    make = OmegaConf.to_container(OmegaConf.load(CONF / "make_corpus.yaml"))
    corpus_block = {k: v for k, v in embedded["corpus"].items() if k not in ("jobs", "progress")}
    assert corpus_block == defaults
    assert {k: make[k] for k in defaults} == defaults
    params = set(inspect.signature(LibriSpeechDataModule.__init__).parameters) - {"self"}
    for name in ("embedded", "librispeech", "librispeech_960"):
        cfg = OmegaConf.load(CONF / "data" / f"{name}.yaml")
        assert set(cfg) - {"_target_", "_convert_", "defaults"} <= params, name
        if name != "librispeech_960":
            assert cfg._target_ == "conformer_prune.data.datamodule.LibriSpeechDataModule"
