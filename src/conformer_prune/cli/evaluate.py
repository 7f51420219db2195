"""``scripts/evaluate.py``: WER/CER of a training checkpoint or an export on named subsets.

The model comes from ``model_path``:

* a training checkpoint (``<run>/checkpoints/*.ckpt``): the masked network, rebuilt as the exporter does;
* an export directory (``config.yaml`` + ``model.safetensors`` + ...): the compacted network;
* a run directory: its ``export/`` (or, without one, its evaluated checkpoint).

The tokenizer and the feature statistics (CMVN) always come from the model. The data is exactly what
the model was trained and tested on: the record its checkpoint or export carries
(:mod:`conformer_prune.data.record`: that directory, that embedded corpus, never regenerated or
re-resolved; a clear error saying how to make it again when it is gone), unless the user points
elsewhere: ``data=<group>`` (which may generate the embedded corpus), or ``+data.root=`` /
``+data.corpus=`` on top of the run's data settings. The decoders are the export's (the one its run
was evaluated with, LM and lexicon included) or the run's (its ``lm.arpa`` and ``lexicon.txt``)
unless ``decoding=`` picks a group. So for the same model and subset the numbers are exactly those of
the end-of-training evaluation (both call :func:`~conformer_prune.evaluate.evaluate_net`), on any
machine, and only the evaluated subsets need to be on disk.

``results.json`` holds ``wer``/``cer`` (the default decoder), ``wer_greedy``/``cer_greedy`` and ``rtf``
per subset (the layout of the training run's ``results.json``), ``per_subset`` (utterances, words,
audio seconds and every decoder's numbers), ``decoding`` (the default decoder's name),
``decoders`` (their settings) and ``corpus`` (the data scored: root, corpus id, per-subset utterance
counts, what was skipped, its record), as the training run's does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn

from conformer_prune.checkpoint import build_dense_net, read_checkpoint, tokenizer_bytes_of
from conformer_prune.distributed import resolve_eval_device
from conformer_prune.evaluate import UTTERANCE_ERRORS_FILE, evaluate_net, flatten_results, split_utterance_errors
from conformer_prune.pruning.compact import count_params, encoder_of
from conformer_prune.run_summary import evaluate_summary, print_summary, results_table  # noqa: F401 (re-export)
from conformer_prune.rundir import (
    LEXICON_FILE,
    LM_FILE,
    REPORT_FILE,
    RUN_CONFIG,
    TOKENIZER_FILE,
    locate_model,
    read_run_config,
    run_dir_of_checkpoint,
)

log = logging.getLogger(__name__)


@dataclass
class ModelSource:
    """A model to evaluate and what came with it.

    Attributes:
        kind: ``"checkpoint"`` or ``"export"``.
        path: the checkpoint file or export directory.
        net: the network in eval mode.
        tokenizer_bytes: its SentencePiece model.
        feature_config: its feature extractor config (with CMVN statistics).
        run_config: the training run's composed config, when it can be found.
        run_config_file: where that config was read.
        export_config: the export's ``config.yaml`` (exports only).
        data_record: the data the model was trained and tested on (``None`` for older models).
    """

    kind: str
    path: Path
    net: nn.Module
    tokenizer_bytes: bytes
    feature_config: dict
    run_config: DictConfig | None = None
    run_config_file: Path | None = None
    export_config: dict | None = field(default=None, repr=False)
    data_record: dict | None = field(default=None, repr=False)

    @property
    def run_dir(self) -> Path | None:
        """The training run's directory (where its config was found)."""
        return None if self.run_config_file is None else self.run_config_file.parent.parent


def _from_checkpoint(file: Path) -> ModelSource:
    from conformer_prune.data.record import record_from_checkpoint

    ckpt = read_checkpoint(file)
    net = build_dense_net(ckpt, file)
    try:
        tokenizer_bytes, _ = tokenizer_bytes_of(ckpt, file)
    except ValueError as err:
        raise ValueError(f"model_path={file}: {err}") from err
    run_config, config_file = read_run_config(run_dir_of_checkpoint(file))
    return ModelSource(
        "checkpoint",
        file,
        net,
        tokenizer_bytes,
        dict(ckpt["hyper_parameters"]["feature_config"]),
        run_config,
        config_file,
        data_record=record_from_checkpoint(ckpt),
    )


def _from_export(export_dir: Path) -> ModelSource:
    from conformer_prune.inference import load_model

    loaded = load_model(export_dir)
    features = loaded.config.get("features") or {}
    candidates = [export_dir.parent]
    report_file = export_dir / REPORT_FILE
    if report_file.is_file():
        checkpoint = json.loads(report_file.read_text()).get("checkpoint")
        if checkpoint:
            candidates.append(run_dir_of_checkpoint(checkpoint))
    run_config, config_file = read_run_config(*candidates)
    tokenizer_file = export_dir / loaded.config.get("tokenizer", TOKENIZER_FILE)
    return ModelSource(
        "export",
        export_dir,
        loaded.net.eval(),
        tokenizer_file.read_bytes(),
        dict(features.get("config") or {}),
        run_config,
        config_file,
        loaded.config,
        data_record=loaded.config.get("data"),
    )


def load_source(model_path: str | Path) -> ModelSource:
    """Load ``model_path`` (checkpoint file, export directory or run directory) for evaluation.

    Raises:
        ValueError: nothing usable at ``model_path``; the message says what to pass.
    """
    kind, path = locate_model(model_path)
    return _from_checkpoint(path) if kind == "checkpoint" else _from_export(path)


# -- data and decoders -----------------------------------------------------------------------------
def _user_data_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The ``data`` keys the user set (``eval_subsets: null`` is the default, not a choice; other keys exist
    only when given, so ``+data.corpus=null`` counts)."""
    overrides = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") is not None else {}
    if overrides.get("eval_subsets") is None:
        overrides.pop("eval_subsets", None)
    return overrides


def data_config(cfg: DictConfig, source: ModelSource) -> tuple[dict[str, Any], bool]:
    """The data module config to evaluate on, and whether it may generate the embedded corpus.

    * ``data=<group>``: that group (``data.*`` keys on top); it may generate the embedded corpus.
    * ``+data.root=`` / ``+data.corpus=``: the run's data settings pointed there; an embedded corpus is
      generated only when ``corpus`` settings are given.
    * otherwise exactly the data the model records (:func:`~conformer_prune.data.record.pinned_config`),
      checked to be there (:func:`~conformer_prune.data.record.check_recorded`); a model of an older
      version: its run's config (:func:`legacy_data_config`), never generating.

    Raises:
        ValueError: no data known for the model, or the recorded data is gone (the message says what to do).
    """
    from conformer_prune.data.record import check_recorded, legacy_data_config, pinned_config

    overrides = _user_data_overrides(cfg)
    if "_target_" in overrides:
        return overrides, True
    record = source.data_record
    if record is not None and "datamodule" in record:
        base = dict(record["datamodule"])
        if "root" not in overrides and "corpus" not in overrides:
            check_recorded(record)
            base = pinned_config(record)
    else:
        base, why = legacy_data_config(source.run_dir) if source.run_dir is not None else (None, "")
        if base is None:
            raise ValueError(
                f"model_path={source.path}: it records no data and no training run config was found next to it "
                f"({why or RUN_CONFIG}), so the data is unknown: pass data=embedded, data=librispeech or "
                "data=librispeech_960"
            )
    merged = OmegaConf.to_container(OmegaConf.merge(base, overrides), resolve=True)
    generate = isinstance(overrides.get("corpus"), dict)
    return merged, generate


def select_subsets(datamodule: Any, explicit: bool) -> list[str]:
    """The subsets to evaluate: ``data.eval_subsets`` as given (each must be on disk), else the data
    config's defaults that are on disk (the others are named in a warning).

    Raises:
        ValueError: a subset is missing; the message names ``data.eval_subsets`` and the available ones.
    """
    subsets = list(datamodule.eval_subsets())
    available = list(datamodule.available_subsets)
    missing = [s for s in subsets if s not in available]
    if missing and (explicit or len(missing) == len(subsets)):
        raise ValueError(
            f"data.eval_subsets: {missing} not found under {datamodule.data_root}; available subsets: {available}"
        )
    if missing:
        log.warning(
            "evaluating %s: %s are not under %s (pass data.eval_subsets=[...] to choose)",
            [s for s in subsets if s in available],
            missing,
            datamodule.data_root,
        )
    return [s for s in subsets if s in available]


def check_subsets(datamodule: Any) -> list[str]:
    """The subsets to evaluate, after checking that each exists on disk (:func:`select_subsets`, strict)."""
    return select_subsets(datamodule, explicit=True)


def _describe(node: Any) -> dict:
    """A decoder config without the bookkeeping keys (for ``results.json``)."""
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k not in ("_partial_", "tokenizer")}


def build_eval_decoders(
    cfg: DictConfig, source: ModelSource, datamodule: Any, work_dir: Path
) -> tuple[dict[str, Any], str, dict]:
    """``{"greedy", "default"}`` decoders, the default's name, and their settings.

    ``decoding=<group>`` wins (an LM is then built from the training transcripts); else an export's
    ``decoding.evaluated`` decoder (the one its run was evaluated with, its LM and lexicon files
    carried in the export) or the ``decoder`` it names; else the run's decoding config with the LM and
    lexicon the run built (``<run>/lm.arpa``, ``lexicon.txt``; rebuilt from the training transcripts
    only when they are gone); else the export's ``config.yaml`` decoders (a checkpoint without a run
    config gets the exporter's: greedy and a prefix beam search).
    """
    from conformer_prune.cli.decoders import build_decoders
    from conformer_prune.export import decoding_config
    from conformer_prune.inference import build_decoder

    decoding = cfg.get("decoding")
    explicit = decoding is not None
    section = (source.export_config or {}).get("decoding") or {}
    carried = not explicit and cfg.get("decoder") is None and section.get("evaluated")
    if not explicit and not carried and source.run_config is not None and cfg.get("decoder") is None:
        decoding = source.run_config.get("decoding")
    if decoding is not None:
        lm_files = None
        run_dir = source.run_dir
        if (
            not explicit
            and run_dir is not None
            and (run_dir / LM_FILE).is_file()
            and (run_dir / LEXICON_FILE).is_file()
        ):
            lm_files = (run_dir / LM_FILE, run_dir / LEXICON_FILE)  # the LM the run was evaluated with
        texts = datamodule.train_texts() if decoding.get("lm") and lm_files is None else []
        decoders, name = build_decoders(decoding, datamodule.tokenizer, texts, work_dir, lm_files=lm_files)
        plain = OmegaConf.to_container(decoding, resolve=True)
        return decoders, name, {k: _describe(plain.get(k)) for k in ("greedy", "default")}

    config = source.export_config or {"decoding": decoding_config(source.net)}
    section = config.get("decoding") or {}
    name = cfg.get("decoder") or section.get("evaluated") or section.get("default", "greedy")
    root = source.path if source.kind == "export" else None
    decoders = {
        "greedy": build_decoder(config, datamodule.tokenizer, "greedy", root),
        "default": build_decoder(config, datamodule.tokenizer, name, root),
    }
    return decoders, str(name), {"greedy": _describe(section.get("greedy")), "default": _describe(section.get(name))}


# -- output -----------------------------------------------------------------------------------------
def write_hypotheses(per_subset: dict[str, dict], out_dir: Path) -> list[Path]:
    """Move per-utterance hypotheses out of ``per_subset`` into ``hypotheses/<subset>.<decoder>.tsv``."""
    written = []
    for subset, entry in per_subset.items():
        for decoder, numbers in entry.items():
            if not isinstance(numbers, dict) or "hypotheses" not in numbers:
                continue
            rows = numbers.pop("hypotheses")
            file = out_dir / "hypotheses" / f"{subset}.{decoder}.tsv"
            file.parent.mkdir(parents=True, exist_ok=True)
            lines = ["id\treference\thypothesis"] + [f"{r['id']}\t{r['ref']}\t{r['hyp']}" for r in rows]
            file.write_text("\n".join(lines) + "\n")
            written.append(file)
    return written


def evaluate(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.model_path`` on ``cfg.data.eval_subsets``; writes and returns ``results.json``'s content."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    out_dir = Path(str(cfg.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    source = load_source(cfg.model_path)
    log.info("evaluating %s %s (run config: %s)", source.kind, source.path, source.run_config_file or "none")

    config, generate = data_config(cfg, source)
    datamodule = instantiate(config)
    if generate:
        datamodule.prepare_data()
    datamodule.check("evaluate", generate=False, eval_subsets=[])  # the root / corpus is there
    subsets = select_subsets(datamodule, explicit=cfg.data.get("eval_subsets") is not None)
    datamodule.check("evaluate", generate=False, eval_subsets=subsets)  # and each subset has utterances
    datamodule.restore(source.tokenizer_bytes, source.feature_config)  # the model's own tokenizer and CMVN
    datamodule.setup("predict")
    if datamodule.tokenizer.vocab_size != getattr(source.net, "vocab_size", datamodule.tokenizer.vocab_size):
        raise ValueError(f"model_path={source.path}: the tokenizer does not match the model's output size")
    decoders, decoding, described = build_eval_decoders(cfg, source, datamodule, out_dir)

    max_batches = cfg.get("max_batches")
    device = resolve_eval_device(cfg.get("device", "cpu"), key="device")
    per_subset = evaluate_net(
        source.net.to(device).eval(),
        {s: datamodule.eval_dataloader(s) for s in subsets},
        decoders,
        max_batches=None if max_batches is None else int(max_batches),
        keep_hypotheses=bool(cfg.get("hypotheses")),
        frames_per_second=datamodule.feature_extractor.frames_per_second,
    )
    hypothesis_files = write_hypotheses(per_subset, out_dir)
    (out_dir / UTTERANCE_ERRORS_FILE).write_text(json.dumps(split_utterance_errors(per_subset)))
    results: dict[str, Any] = {
        "model_path": str(source.path),
        "model": source.kind,
        "run_config": None if source.run_config_file is None else str(source.run_config_file),
        "params": {"total": count_params(source.net), "encoder": count_params(encoder_of(source.net))},
        **flatten_results(per_subset),
        "decoding": decoding,
        "decoders": described,
        "max_batches": max_batches,
        "device": str(device),
        "data_root": str(datamodule.data_root),
        "corpus": datamodule.corpus_description(),  # the data scored, as in the training run's results.json
        "per_subset": per_subset,
    }
    if hypothesis_files:
        results["hypotheses"] = [str(f) for f in hypothesis_files]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    print_summary(evaluate_summary(results, out_dir), console)
    return results
