"""``scripts/evaluate.py``: WER/CER of a training checkpoint or an export on named subsets.

The model comes from ``model_path``:

* a training checkpoint (``<run>/checkpoints/*.ckpt``): the masked network, rebuilt as the exporter does;
* an export directory (``config.yaml`` + ``model.safetensors`` + ...): the compacted network;
* a run directory: its ``export/`` (or, without one, its evaluated checkpoint).

The tokenizer and the feature statistics (CMVN) always come from the model. The data module and the
decoders come from the run's own ``<run>/.hydra/config.yaml`` (found next to a checkpoint, above an
export made at the end of training, or through the export's ``report.json`` ``checkpoint``) unless
``data=`` / ``decoding=`` pick a config group; so for the same model and subset the numbers are
exactly those of the end-of-training evaluation (both call :func:`~conformer_prune.evaluate.evaluate_net`).

``results.json`` holds ``wer``/``cer`` (the default decoder), ``wer_greedy``/``cer_greedy`` and ``rtf``
per subset (the layout of the training run's ``results.json``), ``per_subset`` (utterances, words,
audio seconds and every decoder's numbers), ``decoding`` (the default decoder's name) and
``decoders`` (their settings).
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
from rich.table import Table
from torch import nn

from conformer_prune.distributed import resolve_eval_device
from conformer_prune.evaluate import evaluate_net, flatten_results
from conformer_prune.pruning.compact import count_params, encoder_of

log = logging.getLogger(__name__)

RUN_CONFIG = Path(".hydra") / "config.yaml"


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
    """

    kind: str
    path: Path
    net: nn.Module
    tokenizer_bytes: bytes
    feature_config: dict
    run_config: DictConfig | None = None
    run_config_file: Path | None = None
    export_config: dict | None = field(default=None, repr=False)


def _run_config(*candidates: Path) -> tuple[DictConfig | None, Path | None]:
    for run_dir in candidates:
        file = run_dir / RUN_CONFIG
        if file.is_file():
            return OmegaConf.load(file), file
    return None, None


def _from_checkpoint(file: Path) -> ModelSource:
    from conformer_prune.export import build_dense_net, read_checkpoint

    ckpt = read_checkpoint(file)
    net = build_dense_net(ckpt, file)
    tokenizer_bytes = ckpt.get("tokenizer_model")
    if tokenizer_bytes is None:
        run_tokenizer = file.parent.parent / "tokenizer.model"
        if not run_tokenizer.is_file():
            raise ValueError(f"model_path={file}: the checkpoint has no tokenizer_model and {run_tokenizer} is missing")
        tokenizer_bytes = run_tokenizer.read_bytes()
    run_config, config_file = _run_config(file.parent.parent)
    return ModelSource(
        "checkpoint",
        file,
        net,
        tokenizer_bytes,
        dict(ckpt["hyper_parameters"]["feature_config"]),
        run_config,
        config_file,
    )


def _from_export(export_dir: Path) -> ModelSource:
    from conformer_prune.inference import REPORT_FILE, TOKENIZER_FILE, load_model

    loaded = load_model(export_dir)
    features = loaded.config.get("features") or {}
    candidates = [export_dir.parent]
    report_file = export_dir / REPORT_FILE
    if report_file.is_file():
        checkpoint = json.loads(report_file.read_text()).get("checkpoint")
        if checkpoint:
            candidates.append(Path(checkpoint).parent.parent)
    run_config, config_file = _run_config(*candidates)
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
    )


def load_source(model_path: str | Path) -> ModelSource:
    """Load ``model_path`` (checkpoint file, export directory or run directory) for evaluation.

    Raises:
        ValueError: nothing usable at ``model_path``; the message says what to pass.
    """
    if model_path in (None, "", "???"):
        raise ValueError("model_path is required: a <run>/checkpoints/*.ckpt file, an export dir or a run dir")
    path = Path(str(model_path)).expanduser()
    if path.is_file():
        return _from_checkpoint(path)
    if path.is_dir():
        if (path / "config.yaml").is_file():
            return _from_export(path)
        if (path / "export" / "config.yaml").is_file():
            return _from_export(path / "export")
        if (path / "checkpoints").is_dir():
            from conformer_prune.baselines import resolve_checkpoint

            return _from_checkpoint(resolve_checkpoint(path, key="model_path"))
    raise ValueError(
        f"model_path={model_path}: no checkpoint, export directory or run directory there (pass "
        "<run>/checkpoints/<best>.ckpt, <run>/export, or the run directory)"
    )


# -- data and decoders -----------------------------------------------------------------------------
def data_config(cfg: DictConfig, source: ModelSource) -> dict[str, Any]:
    """The data module config: ``data=<group>`` if given, else the run's, with ``cfg.data`` keys on top."""
    overrides = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if v is not None}
    if "_target_" in overrides:
        return overrides
    if source.run_config is None or "data" not in source.run_config:
        raise ValueError(
            f"model_path={source.path}: no training run config found next to it ({RUN_CONFIG} of its run), so "
            "the data is unknown: pass data=embedded, data=librispeech or data=librispeech_960"
        )
    data = OmegaConf.to_container(source.run_config.data, resolve=True)
    data.update(overrides)
    return data


def check_subsets(datamodule: Any) -> list[str]:
    """The subsets to evaluate, after checking that each exists on disk.

    Raises:
        ValueError: a subset is missing; the message names ``data.eval_subsets`` and the available ones.
    """
    subsets = list(datamodule.eval_subsets())
    available = list(datamodule.available_subsets)
    missing = [s for s in subsets if s not in available]
    if missing:
        raise ValueError(
            f"data.eval_subsets: {missing} not found under {datamodule.data_root}; available subsets: {available}"
        )
    return subsets


def _describe(node: Any) -> dict:
    """A decoder config without the bookkeeping keys (for ``results.json``)."""
    if not isinstance(node, dict):
        return {}
    return {k: v for k, v in node.items() if k not in ("_partial_", "tokenizer")}


def build_eval_decoders(
    cfg: DictConfig, source: ModelSource, datamodule: Any, work_dir: Path
) -> tuple[dict[str, Any], str, dict]:
    """``{"greedy", "default"}`` decoders, the default's name, and their settings.

    ``decoding=<group>`` wins; else the run's decoding config (unless ``decoder`` names one of an
    export's decoders); else the export's ``config.yaml`` decoders (a checkpoint without a run config
    gets the exporter's: greedy and a prefix beam search).
    """
    from conformer_prune.decoders import build_decoders

    decoding = cfg.get("decoding")
    if decoding is None and source.run_config is not None and cfg.get("decoder") is None:
        decoding = source.run_config.get("decoding")
    if decoding is not None:
        texts = datamodule.train_texts() if decoding.get("lm") else []
        decoders, name = build_decoders(decoding, datamodule.tokenizer, texts, work_dir)
        plain = OmegaConf.to_container(decoding, resolve=True)
        return decoders, name, {k: _describe(plain.get(k)) for k in ("greedy", "default")}

    from conformer_prune.export import decoding_config
    from conformer_prune.inference import build_decoder

    config = source.export_config or {"decoding": decoding_config(source.net)}
    section = config.get("decoding") or {}
    name = cfg.get("decoder") or section.get("default", "greedy")
    decoders = {
        "greedy": build_decoder(config, datamodule.tokenizer, "greedy"),
        "default": build_decoder(config, datamodule.tokenizer, name),
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


def results_table(results: dict) -> Table:
    """A rich table: one row per subset and decoder."""
    table = Table(title=f"{results['model']} {results['model_path']} ({results['decoding']} decoding)")
    for column in ("subset", "utts", "words", "decoder", "WER %", "CER %", "RTF"):
        table.add_column(column, justify="left" if column in ("subset", "decoder") else "right")
    for subset, entry in results["per_subset"].items():
        for decoder in ("greedy", "default"):
            label = results["decoding"] if decoder == "default" else "greedy"
            if decoder not in entry or (decoder == "default" and label == "greedy"):
                continue  # a greedy default is the greedy row
            numbers = entry[decoder]
            table.add_row(
                subset,
                str(entry["utterances"]),
                str(entry["words"]),
                label,
                f"{100 * numbers['wer']:.2f}",
                f"{100 * numbers['cer']:.2f}",
                f"{numbers['rtf']:.4f}",
            )
    return table


def evaluate(cfg: DictConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.model_path`` on ``cfg.data.eval_subsets``; writes and returns ``results.json``'s content."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    out_dir = Path(str(cfg.out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    source = load_source(cfg.model_path)
    log.info("evaluating %s %s (run config: %s)", source.kind, source.path, source.run_config_file or "none")

    datamodule = instantiate(data_config(cfg, source))
    datamodule.restore(source.tokenizer_bytes, source.feature_config)  # the model's own tokenizer and CMVN
    datamodule.setup("predict")
    if datamodule.tokenizer.vocab_size != getattr(source.net, "vocab_size", datamodule.tokenizer.vocab_size):
        raise ValueError(f"model_path={source.path}: the tokenizer does not match the model's output size")
    subsets = check_subsets(datamodule)
    decoders, decoding, described = build_eval_decoders(cfg, source, datamodule, out_dir)

    max_batches = cfg.get("max_batches")
    device = resolve_eval_device(cfg.get("device", "cpu"), key="device")
    per_subset = evaluate_net(
        source.net.to(device).eval(),
        {s: datamodule.eval_dataloader(s) for s in subsets},
        decoders,
        max_batches=None if max_batches is None else int(max_batches),
        keep_hypotheses=bool(cfg.get("hypotheses")),
    )
    hypothesis_files = write_hypotheses(per_subset, out_dir)
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
        "per_subset": per_subset,
    }
    if hypothesis_files:
        results["hypotheses"] = [str(f) for f in hypothesis_files]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    console = console or Console()
    console.print(results_table(results))
    log.info("results: %s", out_dir / "results.json")
    return results
