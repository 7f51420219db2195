"""Verification of an export: the compacted model against the masked one, on real utterances.

:func:`verification_batches` reads the evaluation batches of exactly the data the checkpoint records
(the run's data module when it is at hand; generated features only with ``allow_generated``, and a note);
:func:`compare` runs both models on them (max absolute output difference over valid frames, whether every
greedy transcript is identical, the first that differs) and :func:`verify` refuses a mismatch.
:func:`conformer_prune.export.export_checkpoint` writes nothing unless :func:`verify` passes.

Shapes: ``B`` batch, ``T`` frames, ``F`` features.
"""

from __future__ import annotations

import math
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from conformer_prune.decoding.base import greedy_texts
from conformer_prune.errors import UserError
from conformer_prune.models.transducer import TransducerModel
from conformer_prune.rundir import run_dir_of_checkpoint


class ExportVerificationError(UserError):
    """The compacted model does not compute what the masked model computes: nothing was written."""


class VerificationDataError(ValueError):
    """No real utterance to verify on (and ``allow_generated`` is off): nothing was written."""


def _datamodule_from_run(ckpt_file: Path, ckpt: dict | None = None) -> tuple[Any | None, str]:
    """The data module of the data the checkpoint records (exactly that directory, never generated), with
    the checkpoint's tokenizer and CMVN; a checkpoint of an older version: ``<run>/.hydra/config.yaml``'s,
    relative paths resolved against the run's working directory. ``None`` and why if it can't be built."""
    from hydra.utils import instantiate

    from conformer_prune.data.record import check_recorded, pinned_config, record_from_checkpoint

    ckpt = ckpt if ckpt is not None else {}
    record = record_from_checkpoint(ckpt)
    try:
        if record is not None:
            check_recorded(record)
            datamodule = instantiate(pinned_config(record))
        else:
            from conformer_prune.data.record import legacy_data_config  # a run config of an older version

            config, why = legacy_data_config(run_dir_of_checkpoint(ckpt_file))
            if config is None:
                return None, why
            datamodule = instantiate(config)
            datamodule.check("evaluate", generate=False, eval_subsets=[])
        if ckpt.get("tokenizer_model") is not None:
            datamodule.restore(ckpt["tokenizer_model"], (ckpt.get("hyper_parameters") or {}).get("feature_config"))
        datamodule.setup("predict")
        return datamodule, ""
    except Exception as err:  # noqa: BLE001 - the message goes to the user, who decides what to do
        return None, f"{type(err).__name__}: {err}"


def verification_batches(
    datamodule: Any | None,
    ckpt_file: Path,
    input_dim: int,
    num_batches: int,
    *,
    allow_generated: bool = False,
    ckpt: dict | None = None,
) -> tuple[list[dict], str, str | None]:
    """Up to ``num_batches`` evaluation batches, their source, and a note when they are generated.

    Raises:
        VerificationDataError: no real utterance can be read and ``allow_generated`` is off.
    """
    why = ""
    if datamodule is None:
        datamodule, why = _datamodule_from_run(ckpt_file, ckpt)
    if datamodule is not None:
        try:
            subset = list(datamodule.eval_subsets())[0]
            batches = list(islice(iter(datamodule.eval_dataloader(subset)), num_batches))
            if batches:
                return batches, f"real utterances: {subset}", None
            why = f"evaluation subset {subset!r} is empty"
        except Exception as err:  # noqa: BLE001
            why = f"its evaluation data could not be read ({type(err).__name__}: {err})"
    if not allow_generated:
        raise VerificationDataError(
            f"{ckpt_file}: cannot verify the export on real utterances: {why}. Fix: make the run's data available "
            "again, or pass allow_generated=true to verify on generated features; nothing was written"
        )
    gen = torch.Generator().manual_seed(0)
    lens = torch.tensor([300, 237, 161, 96])  # 3 s, 2.37 s, ... of 10 ms frames
    features = torch.randn(len(lens), int(lens.max()), input_dim, generator=gen)  # (B, T, F)
    note = f"verified on generated features, not real utterances: {why}"
    return [{"features": features, "feature_lens": lens}], "generated features", note


@torch.no_grad()
def _outputs_and_texts(net: nn.Module, features: Tensor, lens: Tensor, tokenizer: Any) -> tuple[Tensor, Tensor, list]:
    out, out_lens = net(features, lens)  # CTC: log-probs (B, T', V); transducer: encoder (B, T', D)
    return out.float(), out_lens, greedy_texts(net, out, out_lens, tokenizer)


@torch.no_grad()
def compare(masked: nn.Module, compacted: nn.Module, batches: list[dict], tokenizer: Any) -> dict:
    """How far the compacted model is from the masked one on ``batches``.

    Returns:
        ``max_abs_diff`` (over valid frames), ``utterances``, ``transcripts_identical`` (every greedy
        transcript equal), ``first_difference`` (``None``, or the first utterance whose transcripts
        differ: ``(index, masked text, compacted text)``), ``output`` (what was compared) and
        ``examples`` (a few greedy transcripts of the compacted model).

    Raises:
        ExportVerificationError: the output shapes or lengths differ, or an output is not finite.
    """
    max_diff, utterances, examples, first_difference = 0.0, 0, [], None
    for batch in batches:
        features, lens = batch["features"].float(), batch["feature_lens"]
        ref, ref_lens, ref_text = _outputs_and_texts(masked, features, lens, tokenizer)
        out, out_lens, text = _outputs_and_texts(compacted, features, lens, tokenizer)
        if not torch.equal(ref_lens, out_lens) or ref.shape != out.shape:
            raise ExportVerificationError(f"compacted output shape {tuple(out.shape)} != masked {tuple(ref.shape)}")
        valid = torch.arange(ref.size(1))[None, :] < ref_lens[:, None]  # (B, T')
        diff = (ref - out).abs()[valid]
        batch_diff = float(diff.max()) if diff.numel() else 0.0
        if not math.isfinite(batch_diff):
            raise ExportVerificationError("the compacted model produced non-finite outputs")
        max_diff = max(max_diff, batch_diff)
        if first_difference is None and text != ref_text:
            bad = next(i for i, (a, b) in enumerate(zip(ref_text, text)) if a != b)
            first_difference = (utterances + bad, ref_text[bad], text[bad])
        utterances += len(text)
        examples.extend(t[:200] for t in text[: max(0, 3 - len(examples))])
    return {
        "max_abs_diff": max_diff,
        "utterances": utterances,
        "transcripts_identical": first_difference is None,
        "first_difference": first_difference,
        "output": "encoder output" if isinstance(masked, TransducerModel) else "CTC log-probabilities",
        "examples": examples,
    }


def verify(masked: nn.Module, compacted: nn.Module, batches: list[dict], tokenizer: Any, atol: float) -> dict:
    """:func:`compare`, refusing a mismatch: raise :class:`ExportVerificationError` unless every greedy
    transcript is identical and the outputs agree within ``atol``.

    Returns:
        ``max_abs_diff``, ``atol``, ``utterances``, ``transcripts_identical``, ``output`` and ``examples``.
    """
    report = compare(masked, compacted, batches, tokenizer)
    if not report["transcripts_identical"]:
        index, ref_text, text = report["first_difference"]
        raise ExportVerificationError(
            f"greedy transcripts differ (utterance {index}): masked {ref_text!r} vs compacted {text!r}; "
            "nothing was written"
        )
    if report["max_abs_diff"] > atol:
        raise ExportVerificationError(
            f"max |compacted - masked| = {report['max_abs_diff']:.3g} > atol={atol:g}: the compacted model is not "
            "the masked model, so nothing was written (compaction should be exact: please report this checkpoint)"
        )
    return {
        "max_abs_diff": report["max_abs_diff"],
        "atol": atol,
        "utterances": report["utterances"],
        "transcripts_identical": report["transcripts_identical"],
        "output": report["output"],
        "examples": report["examples"],
    }
