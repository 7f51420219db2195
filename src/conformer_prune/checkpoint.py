"""Training checkpoints and export directories: read them and rebuild their networks.

The one place that knows what the files hold (:mod:`conformer_prune.rundir` knows where they are):

* a training checkpoint (``<run>/checkpoints/*.ckpt``, a Lightning checkpoint): ``state_dict`` with
  ``net.``-prefixed weights (:func:`net_state`), ``hyper_parameters.net_config`` (the resolved config that
  rebuilds the network) and ``feature_config`` (the feature extractor with its CMVN statistics),
  ``tokenizer_model`` (the SentencePiece bytes; older checkpoints: ``<run>/tokenizer.model``) and the data
  record (:mod:`conformer_prune.data.record`); :func:`read_checkpoint`, :func:`build_dense_net`,
  :func:`tokenizer_bytes_of`;
* an export directory (written by :func:`conformer_prune.export.export_checkpoint`): ``config.yaml``
  (``net`` as ``_target_`` nodes with every site's kept width and no dropout modules, ``features``,
  ``decoding``, ``data``, ``format``), ``model.safetensors``, ``tokenizer.model``, ``report.json``;
  :func:`read_export_config`, :func:`load_export_net`.

The ``_target_`` nodes are built by :func:`instantiate_node`, a small importlib resolver that understands
``_target_``, ``_partial_`` and ``_args_`` (the subset of Hydra's syntax the exporter writes, so Hydra's
``instantiate`` builds the same objects) and needs neither Hydra nor Lightning. A config is code, so by
default the resolver only imports callables under ``conformer_prune.``: an export cannot make
:func:`conformer_prune.load_model` call anything else.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from conformer_prune.rundir import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, run_dir_of_checkpoint

EXPORT_FORMAT = "conformer-prune-export/1"
SAFE_PREFIXES: tuple[str, ...] = ("conformer_prune.",)
_NODE_KEYS = {"_target_", "_partial_", "_args_"}
"""The Hydra node keys :func:`instantiate_node` honours; it refuses the others (``_recursive_``,
``_convert_``: it always builds nested nodes and passes plain containers, so they would be ignored)."""
MOVED_TARGETS: dict[str, str] = {
    **{f"conformer_prune.models.decoding.{name}": f"conformer_prune.decoding.{name}"
       for name in ("GreedyCTCDecoder", "PrefixBeamCTCDecoder", "LexiconLMCTCDecoder")},
    **{f"conformer_prune.models.transducer_decoding.{name}": f"conformer_prune.decoding.{name}"
       for name in ("TransducerGreedyDecoder", "TransducerBeamDecoder")},
}  # fmt: skip
"""``_target_`` paths that exports and run configs written before a module moved still name -> where it is."""


def upgrade_targets(node: Any) -> Any:
    """``node`` (plain containers) with every moved ``_target_`` (:data:`MOVED_TARGETS`) renamed."""
    if isinstance(node, Mapping):
        return {
            k: MOVED_TARGETS.get(v, v) if k == "_target_" and isinstance(v, str) else upgrade_targets(v)
            for k, v in node.items()
        }
    if isinstance(node, list | tuple):
        return [upgrade_targets(v) for v in node]
    return node


# -- a small _target_ resolver --------------------------------------------------------------------
def resolve_target(path: str, allowed_prefixes: Sequence[str] | None = SAFE_PREFIXES) -> Callable[..., Any]:
    """Import the callable named by a dotted path, e.g. ``pkg.module.Class.from_config``.

    Args:
        path: dotted path; the longest importable module prefix is imported, the rest is attributes.
        allowed_prefixes: the path must start with one of these (``None``: anything importable).

    Raises:
        ValueError: the path is outside ``allowed_prefixes`` or does not name a callable.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"_target_ must be a dotted path, got {path!r}")
    path = MOVED_TARGETS.get(path, path)
    if allowed_prefixes is not None and not path.startswith(tuple(allowed_prefixes)):
        raise ValueError(
            f"_target_ {path!r} is outside {list(allowed_prefixes)}: this loader only builds conformer_prune "
            "modules (edit the config, or build the model yourself with hydra.utils.instantiate)"
        )
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError as err:
            raise ValueError(f"_target_ {path!r}: {err}") from err
        if not callable(obj):
            raise ValueError(f"_target_ {path!r} is not callable")
        return obj
    raise ValueError(f"_target_ {path!r}: no importable module in it")


def instantiate_node(node: Any, allowed_prefixes: Sequence[str] | None = SAFE_PREFIXES) -> Any:
    """Build a config node: a mapping with ``_target_`` is called with its other keys (built first,
    recursively), or wrapped in :func:`functools.partial` when ``_partial_`` is true; ``_args_`` are
    positional arguments. Lists and plain mappings are built element by element; other values pass.

    Raises:
        ValueError: a ``_target_`` outside ``allowed_prefixes``, or a Hydra key it does not honour
            (``_recursive_``, ``_convert_``).
    """
    if isinstance(node, Mapping):
        if "_target_" not in node:
            return {k: instantiate_node(v, allowed_prefixes) for k, v in node.items()}
        unknown = {k for k in node if k.startswith("_") and k.endswith("_")} - _NODE_KEYS
        if unknown:
            raise ValueError(
                f"_target_ {node['_target_']!r}: unsupported keys {sorted(unknown)} (this builder honours "
                f"{sorted(_NODE_KEYS)}: it always builds nested nodes and passes plain containers). Fix: drop "
                "them, or build the node with hydra.utils.instantiate"
            )
        target = resolve_target(node["_target_"], allowed_prefixes)
        args = [instantiate_node(a, allowed_prefixes) for a in node.get("_args_", [])]
        kwargs = {k: instantiate_node(v, allowed_prefixes) for k, v in node.items() if k not in _NODE_KEYS}
        if node.get("_partial_", False):
            return functools.partial(target, *args, **kwargs)
        return target(*args, **kwargs)
    if isinstance(node, list | tuple):
        return [instantiate_node(v, allowed_prefixes) for v in node]
    return node


# -- training checkpoints ---------------------------------------------------------------------------
def read_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """Load a training checkpoint and check it has what export needs.

    Raises:
        ValueError: missing, unreadable or incomplete checkpoint; the message names the file.
    """
    file = Path(ckpt_path)
    if not file.is_file():
        raise ValueError(f"{file}: no such checkpoint (ckpt_path must be a <run>/checkpoints/*.ckpt file)")
    try:  # a Lightning checkpoint pickles its hyper-parameters: load only checkpoints you trust
        ckpt = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ValueError(f"{file} is not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{file} has no state_dict: it is not a Lightning training checkpoint of this project")
    hparams = ckpt.get("hyper_parameters") or {}
    for key, why in (("net_config", "the architecture"), ("feature_config", "the features (CMVN statistics)")):
        if not isinstance(hparams.get(key), dict):
            raise ValueError(
                f"{file}: hyper_parameters.{key} is missing, so {why} cannot be rebuilt; export needs a "
                "checkpoint written by scripts/train.py"
            )
    return ckpt


def net_state(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights of a training checkpoint (its ``net.*`` entries, without the prefix)."""
    return {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


def tokenizer_bytes_of(ckpt: Mapping[str, Any], file: str | Path) -> tuple[bytes, str]:
    """The SentencePiece model of a checkpoint (``tokenizer_model``, else ``<run>/tokenizer.model``) and where
    it was read.

    Raises:
        ValueError: neither exists; the message names both.
    """
    model_bytes = ckpt.get("tokenizer_model")
    if model_bytes is not None:
        return model_bytes, f"{file} (tokenizer_model)"
    run_file = run_dir_of_checkpoint(file) / TOKENIZER_FILE
    if not run_file.is_file():
        raise ValueError(f"{file} has no tokenizer_model and {run_file} does not exist: no text can be decoded")
    return run_file.read_bytes(), str(run_file)


def tokenizer_of(ckpt: Mapping[str, Any], file: str | Path) -> Any:
    """The checkpoint's :class:`~conformer_prune.data.tokenizer.Tokenizer` (:func:`tokenizer_bytes_of`)."""
    from conformer_prune.data.tokenizer import Tokenizer

    model_bytes, source = tokenizer_bytes_of(ckpt, file)
    try:
        return Tokenizer.from_bytes(model_bytes)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{source}: not a usable SentencePiece model: {err}") from err


def build_dense_net(ckpt: Mapping[str, Any], file: str | Path) -> nn.Module:
    """The trained network of a checkpoint, in eval mode (the masked model when sites prune)."""
    from conformer_prune.models.ctc import CTCModel
    from conformer_prune.models.transducer import TransducerModel
    from conformer_prune.pruning.compact import encoder_of

    net_config = ckpt["hyper_parameters"]["net_config"]
    try:
        net = instantiate_node(copy.deepcopy(net_config), allowed_prefixes=None)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{file}: hyper_parameters.net_config does not build a network: {err}") from err
    state = net_state(ckpt)
    if not state:
        raise ValueError(f"{file}: state_dict has no `net.*` weights: not a checkpoint of this project's tasks")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{file}: the weights do not match hyper_parameters.net_config: {err}") from err
    if not isinstance(net, CTCModel | TransducerModel):
        raise ValueError(
            f"{file}: net_config builds a {type(net).__name__}; export handles CTCModel and TransducerModel"
        )
    encoder_of(net)  # raises TypeError unless the encoder is a ConformerEncoder
    return net.eval()


# -- export directories -----------------------------------------------------------------------------
def read_export_config(path: str | Path) -> dict:
    """``config.yaml`` of an export directory as a plain dict (``ValueError`` naming the file if unusable)."""
    import yaml

    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise ValueError(
            f"{file} does not exist: {path} is not an export directory (make one with "
            "`python scripts/export.py ckpt_path=<checkpoint> out_dir=<dir>`)"
        )
    try:
        config = yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{file} is not valid YAML: {err}") from err
    if not isinstance(config, dict) or "net" not in config:
        raise ValueError(f"{file} has no `net` section: it was not written by the exporter (re-export the model)")
    return config


def build_net(config: Mapping[str, Any], allowed_prefixes: Sequence[str] | None = SAFE_PREFIXES) -> nn.Module:
    """The (untrained) network described by the ``net`` node of an export config."""
    net = instantiate_node(dict(config["net"]), allowed_prefixes)
    if not isinstance(net, nn.Module):
        raise ValueError(f"config `net` built a {type(net).__name__}, not an nn.Module")
    return net


def load_export_net(root: str | Path, config: Mapping[str, Any]) -> nn.Module:
    """The network of an export directory with its weights (CPU, eval mode).

    Raises:
        ValueError: the weights are missing, unreadable or do not match ``config``; the message names the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(root)
    net = build_net(config)
    weights = root / config.get("weights", WEIGHTS_FILE)
    if not weights.is_file():
        raise ValueError(f"{weights} does not exist: the export is incomplete (re-export the model)")
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is not a readable safetensors file: {err}") from err
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{weights} does not match {root / CONFIG_FILE} (were they copied from different exports?): {err}"
        ) from err
    return net.eval()
