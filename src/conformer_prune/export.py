"""Export a training checkpoint as a physically smaller model that stock code reloads.

Nothing is written until the model has been verified:

1. read the checkpoint (``state_dict`` with ``net.`` keys; ``hyper_parameters.net_config`` and
   ``feature_config``; ``tokenizer_model``) and rebuild the network in eval mode. With adaptive
   dropout that *is* the hard-gated masked model: a unit whose retention probability is below the
   threshold has eval gate 0, a kept unit is multiplied by its gate;
2. compact a copy: every site removes its pruned units and folds its kept gates into the adjacent
   weights (``../shared/DESIGN.md`` §4), so no dropout module is left;
3. describe the compacted structure as config (``layer_widths`` of every layer, every dropout site
   ``null``), rebuild it from that config with stock code (:func:`conformer_prune.inference.build_net`,
   exactly what :func:`~conformer_prune.inference.load_model` runs) and load the compacted weights;
4. run the rebuilt model and the masked model on real utterances (the run's evaluation data, exactly
   the data its checkpoint records; generated features only with ``allow_generated``, and a note):
   max absolute difference of the outputs (CTC log-probabilities, transducer encoder output) over
   valid frames must be ``<= atol`` and the greedy transcripts identical, or the export is refused
   (:mod:`conformer_prune.verification`);
5. write ``config.yaml``, ``model.safetensors``, ``tokenizer.model``, ``report.json`` (and optionally
   ``model.torchscript.pt``, :mod:`conformer_prune.torchscript`, and the ONNX graphs of
   :mod:`conformer_prune.onnx_export`, verified with ONNX Runtime) into a temporary directory next to
   ``out_dir`` and move it into place.

The export is self-contained for evaluation: ``config.yaml`` names the data the model was trained and
tested on (``data``, a :mod:`conformer_prune.data.record` record) and the decoder its run was evaluated
with (``decoding.evaluated``); a run that decoded with a word LM ships its ``lm.arpa`` and
``lexicon.txt`` beside the weights, so the export scores the same on any machine.

A model trained without a pruning strategy (e.g. ``dropout=standard``) exports dense, with a note.
``scripts/export.py`` runs :func:`export_checkpoint` through :func:`conformer_prune.cli.export.export`.

Shapes: ``B`` batch, ``T`` frames, ``F`` features, ``D`` model dim, ``V`` vocab.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import shutil
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch import nn

from conformer_prune.checkpoint import (
    EXPORT_FORMAT,
    build_dense_net,
    build_net,
    read_checkpoint,
    tokenizer_of,
    upgrade_targets,
)
from conformer_prune.data.features import FeatureSettings
from conformer_prune.dropout.base import LearnsRetention, Thresholded
from conformer_prune.models.transducer import TransducerModel
from conformer_prune.onnx_export import CTC_FILES, TRANSDUCER_FILES
from conformer_prune.pruning.compact import (
    compact_copy,
    count_params,
    encoder_of,
    kept_heads,
    kept_units,
    macs_per_second,
    param_report,
)
from conformer_prune.rundir import (
    CONFIG_FILE,
    LEXICON_FILE,
    LM_FILE,
    REPORT_FILE,
    RUN_CONFIG,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    run_dir_of_checkpoint,
)
from conformer_prune.sites import site_kinds
from conformer_prune.torchscript import to_torchscript
from conformer_prune.verification import (  # noqa: F401 - the errors and compare: importable from here as before
    ExportVerificationError,
    VerificationDataError,
    compare,
    verification_batches,
    verify,
)

log = logging.getLogger(__name__)

TORCHSCRIPT_FILE = "model.torchscript.pt"
FEATURES_TARGET = "conformer_prune.data.features.FeatureExtractor.from_config"
MAC_REFERENCE_SECONDS = 10.0


# -- configs ----------------------------------------------------------------------------------------
def compacted_net_config(net_config: dict, layer_widths: list[dict]) -> dict:
    """The net config with the compacted ``layer_widths`` and no dropout module at any site."""
    config = copy.deepcopy(net_config)
    encoder = config["encoder"]
    for spec in site_kinds():
        encoder[spec.dropout_arg] = None
    encoder["layer_widths"] = copy.deepcopy(layer_widths)
    return config


def decoding_config(net: nn.Module) -> dict:
    """Decoding options of an export: greedy (the default) and a beam search, for the model's head, with
    the decoders' own defaults (those ``conf/decoding/ctc_greedy.yaml``, ``ctc_beam.yaml`` and
    ``transducer.yaml`` use); only the blank id is the model's."""
    if isinstance(net, TransducerModel):
        greedy, beam, head = "TransducerGreedyDecoder", "TransducerBeamDecoder", {}
    else:
        greedy, beam, head = "GreedyCTCDecoder", "PrefixBeamCTCDecoder", {"blank": net.blank}
    return {
        "default": "greedy",
        "greedy": {"_target_": f"conformer_prune.decoding.{greedy}", "_partial_": True, **head},
        "beam": {"_target_": f"conformer_prune.decoding.{beam}", "_partial_": True, **head},
    }


# -- the run's decoder, carried -------------------------------------------------------------------------
def run_decoder(run_dir: Path) -> tuple[str | None, dict | None, dict[str, bytes], str | None]:
    """The decoder a run's ``results.json`` reports (``decoding.default`` of ``<run>/.hydra/config.yaml``):
    its name, its config node (with ``lm_path`` / ``lexicon_words`` naming files of the export) and those
    files' bytes (the run's ``lm.arpa`` and ``lexicon.txt``); a note when it cannot be carried."""
    config_file = run_dir / RUN_CONFIG
    if not config_file.is_file():
        return None, None, {}, None
    from omegaconf import OmegaConf

    try:
        node = OmegaConf.load(config_file).get("decoding")
        decoding = None if node is None else OmegaConf.to_container(node, resolve=True)
    except Exception as err:  # noqa: BLE001 - an unreadable run config: export without it, say so
        return None, None, {}, f"the run's decoder could not be read from {config_file} ({err})"
    if not isinstance(decoding, dict) or not isinstance(decoding.get("default"), dict):
        return None, None, {}, None
    name, node = str(decoding.get("name", "default")), upgrade_targets(decoding["default"])
    files: dict[str, bytes] = {}
    if decoding.get("lm"):
        lm, lexicon = run_dir / LM_FILE, run_dir / LEXICON_FILE
        if not (lm.is_file() and lexicon.is_file()):
            return None, None, {}, f"the run's {name} decoder was not carried: {lm} or {lexicon} is missing"
        files = {LM_FILE: lm.read_bytes(), LEXICON_FILE: lexicon.read_bytes()}
        node.update(lm_path=LM_FILE, lexicon_words=LEXICON_FILE)
    return name, node, files, None


# -- export -----------------------------------------------------------------------------------------
EXPORT_FILES = (
    *(CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, REPORT_FILE, TORCHSCRIPT_FILE, LM_FILE, LEXICON_FILE),
    *CTC_FILES,
    *TRANSDUCER_FILES,
)
"""Every file an export directory may hold; ``overwrite=true`` removes these and nothing else."""


def foreign_entries(out_dir: Path) -> list[str]:
    """What in ``out_dir`` does not prove it an export: entries outside :data:`EXPORT_FILES`, and a
    ``config.yaml`` without this exporter's ``format`` marker (empty list: an export, safe to replace)."""
    import yaml

    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out_dir.iterdir() if p.name not in EXPORT_FILES)
    config = out_dir / CONFIG_FILE
    try:
        marked = config.is_file() and (yaml.safe_load(config.read_text()) or {}).get("format") == EXPORT_FORMAT
    except (OSError, yaml.YAMLError, AttributeError):
        marked = False
    if not marked:
        foreign.append(f"{CONFIG_FILE} (no `format: {EXPORT_FORMAT}`)" if config.exists() else f"no {CONFIG_FILE}")
    return foreign


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir={out_dir} is a file: choose a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"out_dir={out_dir} exists and is not empty: choose another, or pass overwrite=true")
    foreign = foreign_entries(out_dir)
    if foreign:
        raise ValueError(
            f"out_dir={out_dir} is not an export directory ({', '.join(foreign[:6])}"
            f"{', ...' if len(foreign) > 6 else ''}), so overwrite=true will not delete it. Fix: choose an empty or "
            f"new out_dir (e.g. {out_dir / 'export'}); overwrite=true only replaces what this exporter wrote"
        )


def check_export_args(
    out_dir: Path | None, overwrite: bool, threshold: float | None, atol: float, verify_batches: int
) -> None:
    """The arguments of :func:`export_checkpoint`, checked before anything is read or written.

    Raises:
        ValueError: the message names the argument and the fix.
    """
    if out_dir is not None:
        _check_out_dir(Path(out_dir), overwrite)
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if atol <= 0 or verify_batches < 1:
        raise ValueError(f"atol must be > 0 and verify_batches >= 1, got atol={atol}, verify_batches={verify_batches}")


def _safetensors_bytes(module: nn.Module) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in module.state_dict().items()})


def _notes_on_strategies(net: nn.Module, threshold: float | None) -> tuple[dict[str, int], list[str]]:
    sites = encoder_of(net).sites()
    strategies = Counter(type(site.module).__name__ for site in sites)
    learned = [s for s in sites if isinstance(s.module, LearnsRetention)]
    notes = []
    if not learned:
        notes.append(
            "no site learns a retention probability (strategies: "
            + ", ".join(f"{k} x{v}" for k, v in strategies.items())
            + "): the model was trained without adaptive dropout, so it is exported dense (same size and speed); "
            "train with dropout=adaptive to prune"
        )
    untouched = sorted({type(s.module).__name__ for s in learned if not isinstance(s.module, Thresholded)})
    if threshold is not None and untouched:
        notes.append(
            f"threshold={threshold} applies only to strategies with a threshold; {', '.join(untouched)} use their "
            "own gates"
        )
    return dict(strategies), notes


def export_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    datamodule: Any | None = None,
    threshold: float | None = None,
    atol: float = 1e-4,
    verify_batches: int = 1,
    overwrite: bool = False,
    torchscript: bool = False,
    allow_generated: bool = False,
    onnx: bool = False,
) -> dict:
    """Compact, verify and write a training checkpoint as a stock-code model; returns the report.

    Args:
        ckpt_path: Lightning checkpoint written by ``scripts/train.py``.
        out_dir: export directory (created; must be absent or empty unless ``overwrite``).
        datamodule: the run's data module, for real verification utterances; ``None`` rebuilds it from the
            data the checkpoint records (older checkpoints: ``<run>/.hydra/config.yaml``).
        threshold: prune the units of strategies with a threshold (:class:`~conformer_prune.dropout.Thresholded`:
            adaptive dropout) whose retention probability is below this; ``None`` keeps the threshold the
            model was trained with (``pruning.threshold``, default 0.5).
        atol: largest accepted |compacted - masked| output difference.
        verify_batches: evaluation batches to verify on.
        overwrite: replace a non-empty ``out_dir``.
        torchscript: also write ``model.torchscript.pt`` (traced; checked against eager).
        allow_generated: verify on generated features (with a note) when no real utterance can be read;
            otherwise that refuses the export.
        onnx: also write ONNX graphs (:mod:`conformer_prune.onnx_export`; verified with ONNX Runtime).

    Returns:
        The ``report.json`` content (see ``conf/export.yaml`` for a description of its keys).

    Raises:
        ValueError: unusable checkpoint, bad argument or non-empty ``out_dir``; nothing is written.
        ExportVerificationError: the compacted model does not match the masked one; nothing is written.
        VerificationDataError: no real utterance to verify on and ``allow_generated`` is off; nothing is written.
    """
    ckpt_file, out_dir = Path(ckpt_path), Path(out_dir)
    check_export_args(out_dir, overwrite, threshold, atol, verify_batches)

    ckpt = read_checkpoint(ckpt_file)
    hparams = ckpt["hyper_parameters"]
    tokenizer = tokenizer_of(ckpt, ckpt_file)
    masked = build_dense_net(ckpt, ckpt_file)
    if masked.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"{ckpt_file}: the tokenizer has {tokenizer.vocab_size} ids but the model outputs {masked.vocab_size}"
        )
    encoder_config = hparams["net_config"]["encoder"]
    input_dim, num_heads = int(encoder_config.get("input_dim", 80)), int(encoder_config.get("num_heads", 4))
    feature_config = copy.deepcopy(hparams["feature_config"])
    n_mels = feature_config.get("n_mels")
    if n_mels is not None and int(n_mels) != input_dim:
        raise ValueError(f"{ckpt_file}: feature_config.n_mels={n_mels} but the encoder's input_dim={input_dim}")
    if threshold is not None:
        for site in encoder_of(masked).sites():
            if isinstance(site.module, Thresholded):
                site.module.threshold = float(threshold)
    strategies, notes = _notes_on_strategies(masked, threshold)

    # compact, then rebuild from config alone: what is verified is exactly what load_model will build
    compacted = compact_copy(masked)
    widths = encoder_of(compacted).layer_widths()
    net_config = compacted_net_config(hparams["net_config"], widths)
    try:
        stock = build_net({"net": net_config})
        stock.load_state_dict(compacted.state_dict(), strict=True)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"{ckpt_file}: the compacted model cannot be rebuilt from its config: {err}") from err
    stock.eval()
    kept = kept_units(masked)
    learned = any(isinstance(site.module, LearnsRetention) for site in encoder_of(masked).sites())
    if learned and all(k == t for pairs in kept.values() for k, t in pairs):
        notes.append("no unit has a retention probability below the threshold: the model is exported dense")

    batches, source, note = verification_batches(
        datamodule, ckpt_file, input_dim, verify_batches, allow_generated=allow_generated, ckpt=ckpt
    )
    if note:
        notes.append(note)
    verification = verify(masked, stock, batches, tokenizer, atol)
    verification["source"] = source

    traced = to_torchscript(stock, input_dim, atol) if torchscript else None
    onnx_graphs, onnx_report = {}, None
    if onnx:
        from conformer_prune.onnx_export import to_onnx, verify_onnx

        onnx_graphs = to_onnx(stock, input_dim)
        onnx_report = verify_onnx(stock, onnx_graphs, batches, tokenizer, atol, input_dim)
    weights = _safetensors_bytes(stock)
    frames_per_second = FeatureSettings.of(feature_config).frames_per_second
    macs_before = macs_per_second(masked, input_dim, MAC_REFERENCE_SECONDS, frames_per_second=frames_per_second)
    macs_after = macs_per_second(stock, input_dim, MAC_REFERENCE_SECONDS, frames_per_second=frames_per_second)
    report: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "checkpoint": str(ckpt_file.absolute()),  # evaluate.py finds the run through it, from any directory
        "model": "transducer" if isinstance(masked, TransducerModel) else "ctc",
        "threshold": threshold,
        "strategies": strategies,
        "notes": notes,
        **param_report(masked, stock),
        "strategy_params": sum(count_params(site.module) for site in encoder_of(masked).sites()),
        "kept": kept,
        "heads": kept_heads(stock, num_heads),
        "macs_per_second_before": round(macs_before),
        "macs_per_second_after": round(macs_after),
        "mac_ratio": macs_before / macs_after if macs_after else math.inf,
        "mac_reference_seconds": MAC_REFERENCE_SECONDS,
        "frames_per_second": frames_per_second,
        "max_abs_diff": verification["max_abs_diff"],
        "verification": verification,
        **({"onnx": onnx_report} if onnx_report else {}),
        "file_bytes": {
            "checkpoint": ckpt_file.stat().st_size,
            "weights_before": len(_safetensors_bytes(masked)),
            "weights_after": len(weights),
            "tokenizer": len(tokenizer.model_bytes),
        },
    }
    decoding = decoding_config(stock)
    evaluated, node, decoder_files, decoder_note = run_decoder(run_dir_of_checkpoint(ckpt_file))
    if decoder_note:
        notes.append(decoder_note)
    if evaluated is not None and node is not None:
        if evaluated != "greedy":
            decoding[evaluated] = node
        decoding["evaluated"] = evaluated  # what the run's results.json reports as wer / cer
    data_record = _data_record(ckpt, datamodule)
    config = {
        "format": EXPORT_FORMAT,
        "model": report["model"],
        "net": net_config,
        "features": {"_target_": FEATURES_TARGET, "config": feature_config},
        "decoding": decoding,
        "weights": WEIGHTS_FILE,
        "tokenizer": TOKENIZER_FILE,
        "data": data_record,  # what the model was trained and tested on (conformer_prune.data.record)
    }
    _write(out_dir, overwrite, config, weights, tokenizer.model_bytes, report, traced, {**decoder_files, **onnx_graphs})
    for text in notes:
        log.warning("export note: %s", text)
    log.info(
        "exported %s -> %s: %d -> %d parameters (encoder %d -> %d), %.1f -> %.1f MMAC/s, max |diff| %.2g on %s",
        ckpt_file,
        out_dir,
        report["params_before"],
        report["params_after"],
        report["encoder_params_before"],
        report["encoder_params_after"],
        macs_before / 1e6,
        macs_after / 1e6,
        report["max_abs_diff"],
        source,
    )
    return report


def _data_record(ckpt: dict, datamodule: Any | None) -> dict | None:
    """The checkpoint's data record, else the live data module's (``None`` when neither has one)."""
    from conformer_prune.data.record import record_from_checkpoint

    record = record_from_checkpoint(ckpt)
    if record is None and callable(getattr(datamodule, "data_record", None)):
        record = datamodule.data_record()
    return record


def _write(
    out_dir: Path,
    overwrite: bool,
    config: dict,
    weights: bytes,
    tokenizer_bytes: bytes,
    report: dict,
    traced: torch.jit.ScriptModule | None,
    extra_files: dict[str, bytes] | None = None,
) -> None:
    """Write every file into a temporary sibling directory, then move it to ``out_dir``."""
    import yaml

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        header = "# Compacted model written by conformer_prune.export; load it with conformer_prune.load_model(dir).\n"
        (tmp / CONFIG_FILE).write_text(header + yaml.safe_dump(config, sort_keys=False))
        (tmp / WEIGHTS_FILE).write_bytes(weights)
        (tmp / TOKENIZER_FILE).write_bytes(tokenizer_bytes)
        for name, content in (extra_files or {}).items():
            (tmp / name).write_bytes(content)
        if traced is not None:
            with warnings.catch_warnings():  # torch.jit is deprecated in favour of torch.export; still supported
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(traced, str(tmp / TORCHSCRIPT_FILE))
            report["file_bytes"]["torchscript"] = (tmp / TORCHSCRIPT_FILE).stat().st_size
        for name, data in (extra_files or {}).items():  # e.g. the ONNX graphs
            (tmp / name).write_bytes(data)
            report["file_bytes"][name] = len(data)
        text = json.dumps(report, indent=2)
        text = re.sub(r"\[\s*(-?\d+),\s*(-?\d+)\s*\]", r"[\1, \2]", text)  # [kept, total] pairs on one line
        (tmp / REPORT_FILE).write_text(text + "\n")
        _check_out_dir(out_dir, overwrite)  # again: another process may have filled it meanwhile
        if out_dir.is_dir():  # empty, or proven an export: remove exactly its files
            for name in EXPORT_FILES:
                (out_dir / name).unlink(missing_ok=True)
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
