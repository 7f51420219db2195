"""Run a plain-PyTorch ASR model: on features (any net in memory), or from an export directory.

An export directory (written by :func:`conformer_prune.export.export_checkpoint`) holds

* ``config.yaml``: ``net`` (the architecture as ``_target_`` nodes, with the kept width of every site
  in every layer and no dropout modules), ``features`` (the feature extractor with its CMVN
  statistics), ``decoding`` (named decoders, the ``default`` one and the one the run was ``evaluated``
  with), ``data`` (the data the model was trained and tested on);
* ``model.safetensors`` (the state dict), ``tokenizer.model`` (SentencePiece) and ``report.json``;
* ``lm.arpa`` and ``lexicon.txt`` when the run decoded with a word LM.

:func:`load_model` rebuilds all of it with stock code and needs neither Lightning nor Hydra (the
files are read by :mod:`conformer_prune.checkpoint`, whose resolver only builds ``conformer_prune``
callables: an export cannot make :func:`load_model` call anything else).

Shapes: ``B`` batch, ``T`` frames, ``F`` features, ``N`` samples, ``C`` channels, ``V`` vocab.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from conformer_prune.checkpoint import instantiate_node, load_export_net, read_export_config
from conformer_prune.data.features import to_mono
from conformer_prune.decoding.base import Decoder
from conformer_prune.rundir import CONFIG_FILE, TOKENIZER_FILE

log = logging.getLogger(__name__)

DECODER_FILE_KEYS: tuple[str, ...] = ("lm_path", "lexicon_words")
"""Decoder arguments that may name a file of the export directory (``lm.arpa``, ``lexicon.txt``)."""

BACKENDS = ("torch", "onnx")


@torch.no_grad()
def transcribe_features(
    net: nn.Module,
    features: Tensor,
    feature_lens: Tensor,
    decoder: Decoder,
    encode: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> list[str]:
    """Encode ``(B, T, F)`` features and decode them to text (``decoder(net, out, out_lens)``, the one decoder
    protocol of :mod:`conformer_prune.decoding`). ``encode`` replaces ``net``'s forward pass (e.g. an ONNX
    Runtime session); decoding still uses ``net``."""
    out, out_lens = (encode or net)(features, feature_lens)
    return decoder(net, out, out_lens)


# -- loading an export ----------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model loaded from an export directory, ready to transcribe.

    Attributes:
        net: ``CTCModel`` or ``TransducerModel`` in eval mode (plain ``nn.Module``).
        tokenizer: the SentencePiece tokenizer (id 0 = blank).
        feature_extractor: waveform ``(N,)`` + sample rate → normalised ``(T, F)`` features.
        decoder: text decoder (see :func:`transcribe_features`); greedy unless asked otherwise.
        config: the export's ``config.yaml`` as a dict.
        path: the export directory.
        encode: what runs the forward pass instead of ``net`` (the ONNX Runtime backend); ``None``: ``net``.
    """

    net: nn.Module
    tokenizer: Any
    feature_extractor: nn.Module
    decoder: Decoder
    config: dict = field(repr=False)
    path: Path | None = None
    encode: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = field(default=None, repr=False)

    @property
    def sample_rate(self) -> int:
        """Sample rate the features expect; other rates are resampled."""
        return int(self.feature_extractor.sample_rate)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def features(self, waveform: Tensor | np.ndarray, sample_rate: int, name: str = "waveform") -> Tensor:
        """``(N,)`` or ``(C, N)`` samples at ``sample_rate`` → ``(T, F)`` features; notes a downmix or resample.

        Raises:
            ValueError: the waveform is empty or too short for the model (7 frames, ~70 ms).
        """
        mono, channels = to_mono(waveform)
        if channels > 1:
            log.info("%s: %d channels, downmixed to mono", name, channels)
        if int(sample_rate) != self.sample_rate:
            log.info("%s: resampled from %d Hz to %d Hz", name, int(sample_rate), self.sample_rate)
        if mono.numel() == 0:
            raise ValueError(f"{name}: no samples")
        feats = self.feature_extractor(mono, int(sample_rate))  # (T, F)
        if feats.size(0) < 7:
            raise ValueError(f"{name}: {mono.numel()} samples is too short to transcribe (need about 70 ms)")
        return feats

    @torch.no_grad()
    def transcribe_batch(
        self,
        waveforms: Sequence[Tensor | np.ndarray],
        sample_rates: int | Sequence[int],
        names: Sequence[str] | None = None,
    ) -> list[str]:
        """Transcribe several waveforms (each ``(N,)`` or ``(C, N)``) in one padded batch."""
        if not waveforms:
            return []
        rates = [sample_rates] * len(waveforms) if isinstance(sample_rates, int) else list(sample_rates)
        names = list(names) if names is not None else [f"waveform {i}" for i in range(len(waveforms))]
        return self.decode_features([self.features(w, r, n) for w, r, n in zip(waveforms, rates, names, strict=True)])

    @torch.no_grad()
    def decode_features(self, features: Sequence[Tensor]) -> list[str]:
        """Transcribe a list of ``(T_i, F)`` feature matrices (from :meth:`features`) in one padded batch."""
        if not features:
            return []
        lens = torch.tensor([f.size(0) for f in features])
        batch = nn.utils.rnn.pad_sequence(list(features), batch_first=True)  # (B, T, F)
        return transcribe_features(self.net, batch.to(self.device), lens.to(self.device), self.decoder, self.encode)

    def transcribe(self, waveform: Tensor | np.ndarray, sample_rate: int) -> str:
        """Transcribe one waveform ``(N,)`` or ``(C, N)`` at ``sample_rate``."""
        return self.transcribe_batch([waveform], sample_rate)[0]


def build_decoder(
    config: Mapping[str, Any], tokenizer: Any, name: str | None = None, root: str | Path | None = None
) -> Decoder:
    """The decoder ``name`` of the config's ``decoding`` section (``None``: its ``default``).

    Relative paths under :data:`DECODER_FILE_KEYS` (an LM, a lexicon) name files of the export
    directory ``root``.
    """
    decoding = dict(config.get("decoding") or {})
    name = name or decoding.get("default", "greedy")
    if name not in decoding or not isinstance(decoding[name], Mapping):
        options = sorted(k for k, v in decoding.items() if isinstance(v, Mapping))
        raise ValueError(f"decoding.{name} is not in the export's config.yaml; options: {options}")
    node = dict(decoding[name])
    for key in DECODER_FILE_KEYS:
        value = node.get(key)
        if isinstance(value, str) and root is not None and not Path(value).is_absolute():
            node[key] = str(Path(root) / value)
    return instantiate_node(node)(tokenizer=tokenizer)


def load_model(
    path: str | Path, device: str | torch.device = "cpu", decoder: str | None = None, backend: str = "torch"
) -> LoadedModel:
    """Load an export directory: network (eval mode), tokenizer, feature extractor and decoder.

    Args:
        path: directory written by :func:`conformer_prune.export.export_checkpoint`.
        device: where the network runs.
        decoder: a name from ``config.yaml``'s ``decoding`` section (``None``: its ``default``, greedy).
        backend: ``"torch"``, or ``"onnx"``: the forward pass runs the export's ONNX graphs with ONNX
            Runtime on CPU (written with ``scripts/export.py ... onnx=true``), torch's thread count.

    Raises:
        ValueError: a file is missing, unreadable or does not match the config; the message names it.
    """
    from conformer_prune.data.tokenizer import Tokenizer

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    root = Path(path)
    config = read_export_config(root)
    net = load_export_net(root, config).to(device).eval()
    tok_file = root / config.get("tokenizer", TOKENIZER_FILE)
    if not tok_file.is_file():
        raise ValueError(f"{tok_file} does not exist: the export is incomplete (re-export the model)")
    tokenizer = Tokenizer.from_bytes(tok_file.read_bytes())
    vocab = getattr(net, "vocab_size", None)
    if vocab is not None and vocab != tokenizer.vocab_size:
        raise ValueError(f"{tok_file} has {tokenizer.vocab_size} ids but the model outputs {vocab}: re-export")
    if not config.get("features"):
        raise ValueError(f"{root / CONFIG_FILE} has no `features` section: re-export from a training checkpoint")
    extractor = instantiate_node(dict(config["features"]))
    extractor.eval()
    encode = None
    if backend == "onnx":
        from conformer_prune.onnx_export import load_onnx

        if torch.device(device).type != "cpu":
            raise ValueError(f"backend=onnx runs on CPU, got device={device}")
        encode = load_onnx(root, net, threads=torch.get_num_threads())
    return LoadedModel(net, tokenizer, extractor, build_decoder(config, tokenizer, decoder, root), config, root, encode)


# -- audio files ----------------------------------------------------------------------------------
def read_audio(path: str | Path) -> tuple[Tensor, int]:
    """Read an audio file (any format libsndfile reads: FLAC, WAV, OGG, ...) as ``(C, N)`` float32 + rate.

    Raises:
        ValueError: the file is missing or unreadable; the message names it.
    """
    import soundfile

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{file}: no such file")
    try:
        data, rate = soundfile.read(str(file), dtype="float32", always_2d=True)  # (N, C)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as err:
        raise ValueError(f"{file}: unreadable audio ({err})") from err
    return torch.from_numpy(data.T.copy()), int(rate)
