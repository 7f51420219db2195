"""The record of the data a run used, so that evaluation and export read exactly that data again.

:meth:`~conformer_prune.data.datamodule.LibriSpeechDataModule.data_record` describes what a data module
reads; a run saves it in every checkpoint (in the data module's state), in its export (``config.yaml``,
``data``) and in ``results.json`` (``corpus.record``)::

    root        the directory that was read (it holds LibriSpeech/), absolute
    corpus_id   the embedded corpus's id (null for a LibriSpeech tree)
    synthetic   whether it is the embedded corpus
    engines     what its engines resolved to when it was made, with versions
    settings    its corpus settings (engines as configured, e.g. "auto")
    datamodule  the data module's arguments (absolute paths) and _target_

:func:`pinned_config` turns a record into a data module config that reads exactly ``root`` and never
generates anything; :func:`check_recorded` raises :class:`RecordedDataMissingError`, saying how to make
the data again (same settings and engines) or why that cannot be done here, when it is gone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformer_prune.data.corpus import GENERATOR_VERSION, read_manifest, regeneration_hint
from conformer_prune.data.librispeech import DataError


class RecordedDataMissingError(DataError):
    """The data a model was trained and tested on is not where its record says."""


def record_from_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The data record saved in a training checkpoint (``None`` for checkpoints of older versions)."""
    from conformer_prune.data.datamodule import LibriSpeechDataModule  # Lightning: only when a checkpoint is read

    state = ckpt.get(LibriSpeechDataModule.__qualname__)  # where Lightning keeps a data module's state_dict
    record = state.get("data") if isinstance(state, Mapping) else None
    return dict(record) if isinstance(record, Mapping) else None


def describe(record: Mapping[str, Any]) -> str:
    """``embedded corpus <id> at <root>`` or ``<root>``."""
    if record.get("synthetic"):
        return f"embedded corpus {record.get('corpus_id')} at {record['root']}"
    return str(record["root"])


def same_corpus(manifest: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether ``manifest`` describes the recorded corpus: its id, or the same content regenerated with the
    engines named instead of ``auto`` (same settings otherwise, same engines and versions)."""
    if manifest.get("corpus_id") == record.get("corpus_id"):
        return True
    settings = {k: v for k, v in (manifest.get("settings") or {}).items() if k != "engines"}
    recorded = {k: v for k, v in (record.get("settings") or {}).items() if k != "engines"}
    return (
        manifest.get("generator_version") == record.get("generator_version", GENERATOR_VERSION)
        and settings == recorded
        and manifest.get("engines") == record.get("engines")
    )


def check_recorded(record: Mapping[str, Any]) -> Path:
    """The recorded data root, after checking the data is still there.

    Raises:
        RecordedDataMissingError: the directory (or the embedded corpus in it) is gone or holds other data;
            the message says how to make it again, or point evaluation elsewhere explicitly.
    """
    root = Path(record["root"])
    elsewhere = "or evaluate on other data explicitly (data=<group>, or +data.root=<dir> +data.corpus=null)"
    if record.get("synthetic"):
        manifest = read_manifest(root)
        wanted = {
            "settings": record.get("settings"),
            "engines": record.get("engines"),
            "generator_version": record.get("generator_version"),
        }
        if manifest is None:
            raise RecordedDataMissingError(
                f"the data this model was trained and tested on, {describe(record)}, is gone. Fix: "
                f"{regeneration_hint(wanted, root)}; {elsewhere}"
            )
        if not same_corpus(manifest, record):
            raise RecordedDataMissingError(
                f"{root} holds embedded corpus {manifest.get('corpus_id')}, not {record.get('corpus_id')} that this "
                f"model was trained and tested on. Fix: move it away and {regeneration_hint(wanted, root)}; {elsewhere}"
            )
        return root
    if not root.is_dir():
        raise RecordedDataMissingError(
            f"the data this model was trained and tested on, {root}, is gone. Fix: restore it there, {elsewhere}"
        )
    return root


def pinned_config(record: Mapping[str, Any]) -> dict[str, Any]:
    """A data module config that reads exactly the recorded directory and never generates a corpus."""
    config = copy.deepcopy(dict(record["datamodule"]))
    config["root"] = str(record["root"])
    config["corpus"] = None
    return config


def legacy_data_config(run_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """The data module config of a run of an older version (no data record): ``<run>/.hydra/config.yaml``'s
    ``data``, relative paths resolved against the run's working directory (``.hydra/hydra.yaml``), never
    the current one. ``None`` and why when there is none."""
    from omegaconf import OmegaConf

    from conformer_prune.rundir import RUN_CONFIG, read_run_config

    run_config, config_file = read_run_config(run_dir)
    if run_config is None or "data" not in run_config:
        return None, f"{run_dir / RUN_CONFIG} does not exist or has no data section"
    data = OmegaConf.to_container(run_config.data, resolve=True)
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    cwd = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.cwd") if hydra_file.is_file() else None
    for key in ("root", "cache_dir"):
        value = data.get(key)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            if cwd is None:
                return None, f"{config_file}: data.{key}={value!r} is relative and the run's directory is unknown"
            data[key] = str(Path(cwd) / value)
    return data, ""
