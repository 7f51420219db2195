"""ONNX export of a compacted model, its verification with ONNX Runtime, and an ONNX Runtime backend.

Files written beside ``model.safetensors`` in an export directory (dynamic batch and time axes):

* CTC: ``model.onnx``: ``features (B, T, F) float32, feature_lens (B,) int64 -> log_probs (B, T', V),
  out_lens (B,)``;
* Transducer (the icefall / sherpa-onnx split): ``encoder.onnx`` (``features, feature_lens -> enc
  (B, T', D), enc_lens``), ``predictor.onnx`` (one label step: ``tokens (N,) int64, h, c (L, N, P) -> out
  (N, P), h, c``) and ``joiner.onnx`` (``enc (N, D), pred (N, P) -> logits (N, V)``).

The graphs come from the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), which
needs nothing beyond ``onnx``; the relative shift of the attention scores is traced as pad/reshape
(:func:`conformer_prune.models.attention.rel_shift`) so ``T`` stays symbolic. :func:`compare_onnx` runs
every graph with ONNX Runtime on the export's verification utterances *and* on a second batch of another
size and length (a length baked in as a constant would show there) against the PyTorch model: max
``|diff|`` and whether the greedy transcripts are identical (a transducer is decoded greedily from the
ONNX encoder output); :func:`verify_onnx` refuses a mismatch. :class:`OnnxModel` runs an export's graphs
for ``transcribe.py backend=onnx`` and the inference benchmark.

``onnx`` and ``onnxruntime`` are imported only here, and only when used.

Shapes: ``B`` batch, ``T`` frames, ``F`` features, ``D`` encoder dim, ``P`` predictor dim, ``L`` predictor
layers, ``N`` hypotheses, ``V`` vocab.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from conformer_prune.decoding.base import greedy_texts
from conformer_prune.models.transducer import TransducerModel
from conformer_prune.torchscript import example_inputs

log = logging.getLogger(__name__)

OPSET = 17
CTC_FILES = ("model.onnx",)
TRANSDUCER_FILES = ("encoder.onnx", "predictor.onnx", "joiner.onnx")
MIN_FRAMES = 7
"""Shortest input the graphs take (4x subsampling); the eager model raises below it, a graph does not check."""


def onnx_files(net: nn.Module) -> tuple[str, ...]:
    """The file names an export of ``net`` writes."""
    return TRANSDUCER_FILES if isinstance(net, TransducerModel) else CTC_FILES


class _PredictorStep(nn.Module):
    def __init__(self, net: TransducerModel) -> None:
        super().__init__()
        self.predictor = net.predictor

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(N,)``, ``(L, N, P)`` x2 → ``(N, P)`` and the new state."""
        out, (h, c) = self.predictor.step(tokens, (h, c))
        return out, h, c


def _export_bytes(module: nn.Module, args: tuple, names: tuple[list[str], list[str]], axes: dict) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated, and tracing warns
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buffer,
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


@torch.no_grad()
def to_onnx(net: nn.Module, input_dim: int) -> dict[str, bytes]:
    """ONNX graphs of a (compacted) ``CTCModel`` or ``TransducerModel``: file name → serialized model.

    Nothing is checked here: :func:`verify_onnx` runs the graphs.
    """
    net = net.eval()
    features, lens = example_inputs(input_dim, [160, 121], 0)
    seq_axes = {
        "features": {0: "batch", 1: "frames"},
        "feature_lens": {0: "batch"},
        "out_lens": {0: "batch"},
    }
    if not isinstance(net, TransducerModel):
        axes = {**seq_axes, "log_probs": {0: "batch", 1: "out_frames"}}
        return {
            CTC_FILES[0]: _export_bytes(
                net, (features, lens), (["features", "feature_lens"], ["log_probs", "out_lens"]), axes
            )
        }
    encoder_axes = {
        "features": seq_axes["features"],
        "feature_lens": {0: "batch"},
        "enc": {0: "batch", 1: "out_frames"},
        "enc_lens": {0: "batch"},
    }
    encoder = _export_bytes(
        net.encoder, (features, lens), (["features", "feature_lens"], ["enc", "enc_lens"]), encoder_axes
    )
    predictor = net.predictor
    state = torch.zeros(predictor.num_layers, 2, predictor.pred_dim)
    step_axes = {
        "tokens": {0: "n"},
        "h": {1: "n"},
        "c": {1: "n"},
        "out": {0: "n"},
        "h_out": {1: "n"},
        "c_out": {1: "n"},
    }
    step = _export_bytes(
        _PredictorStep(net).eval(),
        (torch.tensor([0, 1]), state, state),
        (["tokens", "h", "c"], ["out", "h_out", "c_out"]),
        step_axes,
    )
    joiner_axes = {"enc": {0: "n"}, "pred": {0: "n"}, "logits": {0: "n"}}
    joiner = _export_bytes(
        net.joiner,
        (torch.randn(2, net.encoder.d_model), torch.randn(2, predictor.pred_dim)),
        (["enc", "pred"], ["logits"]),
        joiner_axes,
    )
    return dict(zip(TRANSDUCER_FILES, (encoder, step, joiner), strict=True))


def _session(model: bytes | str | Path, threads: int | None = None) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An export's ONNX graphs run by ONNX Runtime (CPU), called like the PyTorch net.

    ``model(features (B, T, F), feature_lens (B,))`` returns torch tensors: CTC log-probabilities
    ``(B, T', V)`` or the transducer's encoder output ``(B, T', D)``, and ``(B,)`` output lengths. A
    transducer keeps its PyTorch ``predictor`` and ``joiner`` (``net``) for decoding; the ONNX predictor
    and joiner graphs are verified at export for runtimes that decode in ONNX.

    Args:
        graphs: file name → path or serialized bytes (see :func:`onnx_files`).
        net: the PyTorch model the graphs were exported from (its decoding parts are used).
        threads: ONNX Runtime intra-op threads (``None``: its default).
    """

    def __init__(self, graphs: Mapping[str, bytes | str | Path], net: nn.Module, threads: int | None = None) -> None:
        self.net = net
        self.is_transducer = isinstance(net, TransducerModel)
        self.files = onnx_files(net)
        missing = [name for name in self.files if name not in graphs]
        if missing:
            raise ValueError(f"ONNX graphs {missing} are missing (export with onnx=true)")
        self.sessions = {name: _session(graphs[name], threads) for name in self.files}
        self.main = self.sessions[self.files[0]]

    def __call__(self, features: Tensor, feature_lens: Tensor) -> tuple[Tensor, Tensor]:
        if features.size(1) < MIN_FRAMES:
            raise ValueError(f"utterance too short for 4x subsampling: {features.size(1)} frames (need >= 7)")
        out, lens = self.main.run(
            None,
            {
                "features": features.detach().float().cpu().numpy(),
                "feature_lens": feature_lens.detach().cpu().numpy().astype(np.int64),
            },
        )
        return torch.from_numpy(out), torch.from_numpy(lens)

    def transcribe_ids(self, features: Tensor, feature_lens: Tensor) -> list[list[int]]:
        """Greedy token ids (CTC best path; transducer greedy search on the ONNX encoder output)."""
        return self.net.greedy_decode(*self(features, feature_lens))

    def run_predictor(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        """The ONNX predictor step (transducer only)."""
        feed = {"tokens": tokens.long().numpy(), "h": h.float().numpy(), "c": c.float().numpy()}
        return tuple(torch.from_numpy(a) for a in self.sessions[TRANSDUCER_FILES[1]].run(None, feed))

    def run_joiner(self, enc: Tensor, pred: Tensor) -> Tensor:
        """The ONNX joiner (transducer only): ``(N, D), (N, P) -> (N, V)``."""
        feed = {"enc": enc.float().numpy(), "pred": pred.float().numpy()}
        return torch.from_numpy(self.sessions[TRANSDUCER_FILES[2]].run(None, feed)[0])


def _max_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        raise OnnxVerificationError(f"ONNX output shape {tuple(a.shape)} != PyTorch {tuple(b.shape)}")
    diff = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
    if not math.isfinite(diff):
        raise OnnxVerificationError("the ONNX model produced non-finite outputs")
    return diff


class OnnxVerificationError(ValueError):
    """The ONNX graphs do not compute what the PyTorch model computes: nothing was written."""


@torch.no_grad()
def compare_onnx(
    net: nn.Module, graphs: Mapping[str, bytes], batches: list[dict], tokenizer: Any, input_dim: int
) -> dict:
    """Run the ONNX graphs with ONNX Runtime against ``net`` (PyTorch, eval mode).

    Compares on ``batches`` (the export's verification utterances) plus a generated batch of another
    size and length: outputs over valid frames, output lengths and greedy transcripts; for a transducer
    also the predictor step and the joiner on random inputs.

    Returns:
        ``max_abs_diff`` (over everything compared), ``utterances``, ``transcripts_identical`` and
        ``first_difference`` (``None``, or ``(index, PyTorch text, ONNX text)`` of the first utterance whose
        transcripts differ).

    Raises:
        OnnxVerificationError: output lengths or shapes differ, or an output is not finite.
    """
    runner = OnnxModel(graphs, net, threads=1)
    features, lens = example_inputs(input_dim, [97, 211, 64], 1)
    checks = [*((b["features"].float(), b["feature_lens"]) for b in batches), (features, lens)]
    max_diff, utterances, first_difference = 0.0, 0, None
    for features, lens in checks:
        ref, ref_lens = net(features, lens)
        out, out_lens = runner(features, lens)
        if not torch.equal(out_lens.long(), ref_lens.long()):
            raise OnnxVerificationError(f"ONNX output lengths {out_lens.tolist()} != PyTorch {ref_lens.tolist()}")
        valid = torch.arange(ref.size(1))[None, :] < ref_lens[:, None]  # (B, T')
        max_diff = max(max_diff, _max_diff(out[valid], ref[valid]))
        ref_text, text = greedy_texts(net, ref, ref_lens, tokenizer), greedy_texts(net, out, out_lens, tokenizer)
        if first_difference is None and text != ref_text:
            bad = next(i for i, (a, b) in enumerate(zip(ref_text, text)) if a != b)
            first_difference = (utterances + bad, ref_text[bad], text[bad])
        utterances += len(text)
    if runner.is_transducer:
        gen = torch.Generator().manual_seed(2)
        predictor = net.predictor
        h, c = (torch.randn(predictor.num_layers, 3, predictor.pred_dim, generator=gen) for _ in range(2))
        tokens = torch.tensor([0, 1, net.vocab_size - 1])
        out, (ref_h, ref_c) = predictor.step(tokens, (h, c))
        for a, b in zip(runner.run_predictor(tokens, h, c), (out, ref_h, ref_c), strict=True):
            max_diff = max(max_diff, _max_diff(a, b))
        enc, pred = (
            torch.randn(5, net.encoder.d_model, generator=gen),
            torch.randn(5, predictor.pred_dim, generator=gen),
        )
        max_diff = max(max_diff, _max_diff(runner.run_joiner(enc, pred), net.joiner(enc, pred)))
    return {
        "max_abs_diff": max_diff,
        "utterances": utterances,
        "transcripts_identical": first_difference is None,
        "first_difference": first_difference,
    }


def verify_onnx(
    net: nn.Module, graphs: Mapping[str, bytes], batches: list[dict], tokenizer: Any, atol: float, input_dim: int
) -> dict:
    """:func:`compare_onnx`, refusing a mismatch (transcripts not identical, or max ``|diff|`` above ``atol``).

    Returns:
        ``files``, ``max_abs_diff``, ``atol``, ``utterances``, ``transcripts_identical``, ``opset``,
        ``onnxruntime`` (its version).

    Raises:
        OnnxVerificationError: a mismatch.
    """
    import onnxruntime

    report = compare_onnx(net, graphs, batches, tokenizer, input_dim)
    if not report["transcripts_identical"]:
        _, ref_text, text = report["first_difference"]
        raise OnnxVerificationError(f"greedy transcripts differ: PyTorch {ref_text!r} vs ONNX {text!r}")
    if report["max_abs_diff"] > atol:
        raise OnnxVerificationError(f"max |ONNX - PyTorch| = {report['max_abs_diff']:.3g} > atol={atol:g}")
    return {
        "files": list(graphs),
        "max_abs_diff": report["max_abs_diff"],
        "atol": atol,
        "utterances": report["utterances"],
        "transcripts_identical": report["transcripts_identical"],
        "opset": OPSET,
        "onnxruntime": onnxruntime.__version__,
    }


def load_onnx(path: str | Path, net: nn.Module, threads: int | None = None) -> OnnxModel:
    """The ONNX graphs of an export directory (for ``net``, the export's PyTorch model).

    Raises:
        ValueError: a graph is missing (the message names it and the fix).
    """
    root = Path(path)
    graphs = {}
    for name in onnx_files(net):
        file = root / name
        if not file.is_file():
            raise ValueError(f"{file} does not exist: re-export with `scripts/export.py ... onnx=true`")
        graphs[name] = file
    return OnnxModel(graphs, net, threads)
