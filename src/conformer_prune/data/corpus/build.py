"""Corpus ids, manifests and building: a corpus is found by its settings (``corpus.json``), built under a
temporary name by worker processes and renamed when complete."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from conformer_prune.data.corpus.config import (
    CORPUS_SUBSETS,
    ENGINE_COST,
    GENERATOR_VERSION,
    MANIFEST_NAME,
    ChapterTask,
    CorpusConfig,
    CorpusPlan,
)
from conformer_prune.data.corpus.engines import _die_with_parent, engine_versions, flite_available, resolve_engines
from conformer_prune.data.corpus.plan import plan_corpus
from conformer_prune.data.corpus.render import _render_task
from conformer_prune.data.corpus.text import load_sentences
from conformer_prune.data.librispeech import SAMPLE_RATE

log = logging.getLogger(__name__)


def corpus_settings(config: CorpusConfig) -> dict[str, Any]:
    """JSON-able settings (engines as given: ``"auto"`` or a list)."""
    settings = asdict(config)
    settings["engines"] = config.engines if isinstance(config.engines, str) else list(config.engines)
    return settings


def sentences_digest(config: CorpusConfig) -> str:
    """SHA-256 of the sentence list the corpus draws from (recorded in the manifest and the id)."""
    return hashlib.sha256("\n".join(load_sentences(config.sentences)).encode()).hexdigest()


def corpus_id(config: CorpusConfig, engines: dict[str, str] | None = None) -> str:
    """Short hash of the content: settings with the engines *resolved*, engine versions, sentence list.

    ``engines`` (engine -> version) is what the corpus is made with; ``None`` resolves
    ``config.engines`` now. ``engines: auto`` resolved to eSpeak alone and ``engines: [espeak]`` are
    the same content, hence the same id; a changed corpus config, another eSpeak version or a flite
    corpus gives a new id, so a cached tree is never reused for different content. (Which tree an
    ``auto`` config means once it exists is :func:`find_corpus`'s business, not this hash's.)
    """
    if engines is None:
        engines = engine_versions(resolve_engines(config.engines))
    settings = corpus_settings(config) | {"engines": list(engines)}
    payload = {
        "generator_version": GENERATOR_VERSION,
        "settings": settings,
        "engines": engines,
        "sentences": sentences_digest(config),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The ``corpus.json`` of a generated tree (``root`` or ``root/LibriSpeech``), or ``None``."""
    root = Path(root)
    for candidate in (root / "LibriSpeech" / MANIFEST_NAME, root / MANIFEST_NAME):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def _same_settings(manifest: Mapping[str, Any], config: CorpusConfig, sentences: Callable[[], str]) -> bool:
    """Whether ``manifest`` was made from ``config`` (``sentences``: the digest of its sentence list)."""
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("settings") != corpus_settings(config):
        return False
    digest = manifest.get("sentences_sha256")  # absent in manifests of older versions
    return digest == sentences() if digest is not None else config.sentences is None


def find_corpus(base: str | Path, config: CorpusConfig) -> Path | None:
    """The existing corpus of ``config`` under ``base`` (``<base>/<corpus id>``), or ``None``.

    ``engines: auto`` is resolved once, when a corpus is made, and the manifest records the result:
    an ``auto`` config therefore means the tree an ``auto`` config of the same settings made before
    (even if another engine has been installed since), and only without one the tree of what
    ``auto`` resolves to now. Should several exist (made by versions that re-resolved ``auto``),
    the one matching the current resolution wins, else the newest.
    """
    base = Path(base).expanduser()
    if config.engines == "auto" and base.is_dir():
        digest = functools.cache(lambda: sentences_digest(config))
        made: list[tuple[Path, dict[str, Any]]] = []
        for manifest_file in sorted(base.glob(f"*/LibriSpeech/{MANIFEST_NAME}")):
            try:
                manifest = json.loads(manifest_file.read_text())
            except (OSError, ValueError):
                continue
            if _same_settings(manifest, config, digest):
                made.append((manifest_file.parents[1], manifest))
        if len(made) == 1:
            root, manifest = made[0]
            _note_auto(manifest, root)
            return root
        if made:
            now = engine_versions(resolve_engines("auto"))
            current = [root for root, manifest in made if manifest.get("engines") == now]
            if current:
                return current[0]
            root = max(made, key=lambda item: (item[0] / "LibriSpeech" / MANIFEST_NAME).stat().st_mtime)[0]
            log.warning(
                "%d embedded corpora under %s were made from these settings with engines: auto (%s); using the "
                "newest, %s. Fix: delete the others, or name the engines (data.corpus.engines=[...])",
                len(made),
                base,
                ", ".join(f"{r.name}: {sorted(m.get('engines') or {})}" for r, m in made),
                root,
            )
            return root
    root = base / corpus_id(config)
    return root if read_manifest(root) is not None else None


def _note_auto(manifest: Mapping[str, Any], root: Path) -> None:
    """Say so when ``auto`` would resolve to other engines now than when ``root`` was made."""
    made_with = sorted(manifest.get("engines") or {})
    now = resolve_engines("auto")
    if sorted(now) != made_with:
        log.info(
            "embedded corpus %s: engines: auto was resolved to %s when it was made and stays so (now it would give "
            "%s). For a corpus with those, set data.corpus.engines=%s",
            root,
            made_with,
            now,
            now,
        )


def corpus_root(base: str | Path, config: CorpusConfig) -> Path:
    """Where the corpus of ``config`` lives under ``base``: the existing one, else ``<base>/<corpus id>``."""
    found = find_corpus(base, config)
    return found if found is not None else Path(base).expanduser() / corpus_id(config)


def missing_engines(engines: Iterable[str]) -> list[str]:
    """Engines of ``engines`` that cannot run here (flite not on PATH)."""
    return [engine for engine in engines if engine == "flite" and not flite_available()]


def regeneration_hint(manifest: Mapping[str, Any], root: str | Path) -> str:
    """How to make the corpus described by ``manifest`` again at ``root``, and whether it can be done here.

    The command names the engines the corpus was made with (never ``auto``), so the new tree has the
    same content wherever it is made, as long as the engine versions match.
    """
    settings = dict(manifest.get("settings") or {})
    engines: dict[str, str] = dict(manifest.get("engines") or {})
    settings["engines"] = "[" + ",".join(engines) + "]"
    args = " ".join(f"{k}={'null' if v is None else v}" for k, v in settings.items())
    text = f"regenerate it with `python scripts/make_corpus.py root={root} {args}`"
    missing = missing_engines(engines)
    if missing:
        return (
            f"{text}, but it cannot be reproduced here: {', '.join(missing)} is not installed "
            f"(apt-get install {' '.join(missing)}), and the corpus was made with {sorted(engines)}"
        )
    try:
        now = engine_versions([e for e in engines if e not in missing])
    except (RuntimeError, OSError) as err:  # an engine that no longer runs
        return f"{text}, but its engines do not run here ({err})"
    changed = [f"{e} {engines[e]} (here {now.get(e)})" for e in engines if now.get(e) != engines[e]]
    if changed:
        text += (
            f"; note: it was made with {', '.join(changed)}: with other engine versions the audio differs, so "
            "numbers are not comparable"
        )
    return text


# ---------------------------------------------------------------------------------------- build
def _write_metadata(base: Path, plan: CorpusPlan, sizes: dict[str, list[int]], corpus_key: str) -> dict[str, Any]:
    by_speaker: dict[int, float] = Counter()
    chapter_rows, per_subset = (
        [],
        {s: {"speakers": 0, "chapters": 0, "utterances": 0, "seconds": 0.0, "voices": set()} for s in CORPUS_SUBSETS},
    )
    for task in sorted(plan.tasks, key=lambda t: t.directory.rsplit("/", 1)[1].zfill(12)):
        seconds = sum(sizes[task.directory]) / SAMPLE_RATE
        spk = task.speaker
        by_speaker[spk.speaker] += seconds
        stats = per_subset[spk.subset]
        stats["chapters"] += 1
        stats["utterances"] += len(task.items)
        stats["seconds"] += seconds
        stats["voices"].add(f"{spk.engine}:{spk.family}")
        chapter = task.directory.rsplit("/", 1)[1]
        chapter_rows.append(
            f"{chapter:<7}| {spk.speaker:<6}| {seconds / 60:6.2f} | {spk.subset:<16} | synthetic | "
            "WordNet 3.0 example sentences"
        )
    speaker_rows = []
    for spk in sorted(plan.speakers, key=lambda sp: sp.speaker):
        per_subset[spk.subset]["speakers"] += 1
        speaker_rows.append(
            f"{spk.speaker:<5}| {spk.sex} | {spk.subset:<16} | {by_speaker[spk.speaker] / 60:6.2f} | {spk.name}"
        )
    (base / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET           |MINUTES| NAME\n" + "\n".join(speaker_rows) + "\n")
    (base / "CHAPTERS.TXT").write_text(
        ";ID    |READER|MINUTES| SUBSET           | PROJ.    | BOOK\n" + "\n".join(chapter_rows) + "\n"
    )
    subsets = {
        name: {
            "speakers": s["speakers"],
            "chapters": s["chapters"],
            "utterances": s["utterances"],
            "minutes": round(s["seconds"] / 60, 3),
            "voices": sorted(s["voices"]),
        }
        for name, s in per_subset.items()
    }
    manifest = {
        "generator": "conformer_prune.data.corpus",
        "generator_version": GENERATOR_VERSION,
        "corpus_id": corpus_key,
        "synthetic": True,
        "settings": corpus_settings(plan.config),
        "engines": plan.engines,  # what engines: auto resolved to, with versions
        "sentences_sha256": sentences_digest(plan.config),
        "sample_rate": SAMPLE_RATE,
        "text": plan.text_stats,
        "subsets": subsets,
        "speakers": [asdict(s) | {"voice": s.voice} for s in sorted(plan.speakers, key=lambda sp: sp.speaker)],
    }
    (base / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def generate_corpus(
    config: CorpusConfig,
    root: str | Path,
    *,
    jobs: int = 2,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate the corpus into ``root/LibriSpeech`` (kept as is when already complete).

    Concurrent calls for the same ``root`` (two training runs starting at once) wait for each
    other through a lock file; the second finds the tree complete.

    Args:
        config: what to generate.
        root: directory that receives ``LibriSpeech/``.
        jobs: worker processes.
        progress: show a rich progress bar.
        overwrite: regenerate even if a complete tree is there.

    Returns:
        The manifest (``corpus.json``).
    """
    root = Path(root).expanduser()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".generate.lock"):
        target = root / "LibriSpeech"
        if target.exists() and not overwrite:
            manifest = read_manifest(root)
            if manifest is not None:
                log.info("embedded corpus already complete at %s", target)
                return manifest
            raise ValueError(
                f"{target} exists but holds no {MANIFEST_NAME}: it was not made by this generator (or is from an old "
                "version). Fix: delete it, or choose another root"
            )
        return _generate(config, root, jobs, progress)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _generate(config: CorpusConfig, root: Path, jobs: int, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    target = root / "LibriSpeech"
    plan = plan_corpus(config)
    key = corpus_id(config, plan.engines)
    for stale in root.glob(".LibriSpeech.partial-*"):  # left by an interrupted run (we hold the lock)
        shutil.rmtree(stale)
    staging = root / f".LibriSpeech.partial-{os.getpid()}"
    for directory, lines in plan.transcripts.items():
        chapter_dir = staging / directory
        chapter_dir.mkdir(parents=True)
        speaker, chapter = directory.split("/")[1:]
        (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    log.info(
        "embedded corpus %s: %d speakers, %d utterances, engines %s -> %s",
        key,
        len(plan.speakers),
        sum(len(t.items) for t in plan.tasks),
        plan.engines,
        target,
    )
    # Costly chapters first, so the pool ends evenly.
    tasks = sorted(plan.tasks, key=lambda t: -t.estimated_seconds * ENGINE_COST[t.speaker.engine])
    try:
        sizes = _run_tasks([(str(staging), t) for t in tasks], jobs, progress)
        manifest = _write_metadata(staging, plan, sizes, key)
    except BaseException:  # Ctrl-C or a failed engine: leave no half-written tree behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():  # overwrite=True
        shutil.rmtree(target)
    staging.rename(target)
    wall = time.perf_counter() - start
    audio = sum(s["minutes"] for s in manifest["subsets"].values()) * 60
    log.info(
        "embedded corpus written in %.1f s (%.0f audio s per wall s): %s",
        wall,
        audio / max(wall, 1e-9),
        {k: v["minutes"] for k, v in manifest["subsets"].items()},
    )
    return manifest


def _run_tasks(jobs_list: list[tuple[str, ChapterTask]], jobs: int, progress: bool) -> dict[str, list[int]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    total = sum(len(t.items) for _, t in jobs_list)
    sizes: dict[str, list[int]] = {}
    columns = (
        TextColumn("embedded corpus"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("utterances"),
        TimeElapsedColumn(),
    )
    with _interruptible(), Progress(*columns, disable=not progress) as bar:
        bar_task = bar.add_task("synthesis", total=total)
        if jobs == 1:
            results: Iterable[tuple[str, list[int]]] = map(_render_task, jobs_list)
            for directory, chapter_sizes in results:
                sizes[directory] = chapter_sizes
                bar.advance(bar_task, len(chapter_sizes))
        else:
            # spawn: workers start clean (no threads or engine state inherited from the caller). Leaving the
            # block (done, failed or Ctrl-C) terminates the workers; their own children die with them.
            context = mp.get_context("spawn")
            with context.Pool(processes=jobs, initializer=_init_worker, initargs=(os.getpid(),)) as pool:
                for directory, chapter_sizes in pool.imap_unordered(_render_task, jobs_list, chunksize=1):
                    sizes[directory] = chapter_sizes
                    bar.advance(bar_task, len(chapter_sizes))
    return sizes


def _init_worker(parent: int) -> None:
    """Pool worker set-up: Ctrl-C is the main process's to handle (it terminates the pool); die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT stops the generation even where the process started with it ignored (a script's ``cmd &``)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not (
        signal.SIG_IGN
    ):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_root(data_dir: str | Path, config: CorpusConfig) -> Path:
    """Where the data module caches this corpus: ``<data_dir>/embedded/<corpus id>`` (see :func:`corpus_root`)."""
    return corpus_root(Path(data_dir).expanduser() / "embedded", config)


def generate_from_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Entry point of ``scripts/make_corpus.py`` (keys of ``conf/make_corpus.yaml``).

    ``root: null`` writes to the data module's cache, ``<data_dir>/embedded/<corpus id>``, so
    ``make train`` finds the corpus ready.
    """
    cfg = {k: v for k, v in dict(cfg).items() if k not in ("paths", "task_name", "hydra")}
    runtime = {k: cfg.pop(k) for k in ("root", "data_dir", "jobs", "progress", "overwrite") if k in cfg}
    config = CorpusConfig.from_mapping(cfg, what="make_corpus")
    root = runtime.get("root")
    if root is None:
        root = default_root(runtime.get("data_dir") or "data", config)
    return generate_corpus(
        config,
        root,
        jobs=int(runtime.get("jobs", 2)),
        progress=bool(runtime.get("progress", True)),
        overwrite=bool(runtime.get("overwrite", False)),
    )
