"""Config checks that run before Hydra creates an output directory.

Hydra already rejects unknown keys (struct mode) and unknown group options while composing. The
:class:`ValidateConfig` callback then checks, before the run directory exists:

* :func:`validate` (the config alone): every value given to a ``_target_`` against the type hints of
  the callable it configures (:mod:`conformer_prune.cli.config_types`: ``trainer.max_steps=abc`` names
  ``trainer.max_steps``; a value interpolated from elsewhere names its source, e.g. ``pruning.alpha``);
  the cheap parts instantiated (dropout strategies, schedules, the encoder on the ``meta`` device, the
  optimiser, the data module);
  ranges (``trainer.max_steps``, ``trainer.val_check_interval``, ...); the run keys of ``train.yaml``
  (``eval_checkpoint``, ``eval_max_batches``, ``threads``, ...); that the decoders decode the
  configured head; and contradictions between groups (``export=true`` without a checkpoint callback).
* :func:`validate_files` (what is on disk, training only): the data roots and subsets (the data
  module's own ``check()``), ``ckpt_path`` readable and of the configured architecture, and a run
  directory that already holds another run.

Hydra turns exceptions raised in callbacks into warnings, so :class:`ValidateConfig` ends the process
itself: a :class:`ConfigError` (or any other user error, :mod:`conformer_prune.errors`) prints one
paragraph and exits with status 1; an unexpected exception prints its traceback and exits with 1.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from pathlib import Path
from typing import Any, Literal

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from conformer_prune.cli.config_types import ConfigError, check_types
from conformer_prune.errors import full_error, report_user_error, user_error
from conformer_prune.sites import config_keys

log = logging.getLogger(__name__)


def _check(key: str, build: Any) -> Any:
    try:
        return build()
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - re-raised with the key that caused it
        found = user_error(err)
        raise ConfigError(f"invalid config at `{key}`: {found if found is not None else err}") from err


# -- values -----------------------------------------------------------------------------------------
_ABSENT = object()


def _number(cfg: DictConfig, key: str, kind: type = int, low: float | None = None, optional: bool = True) -> Any:
    """``cfg[key]`` checked to be ``kind`` (ints pass for floats) and ``>= low``; ``None`` allowed if optional."""
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if value is _ABSENT:
        return None
    if value is None and optional:
        return None
    ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
    if isinstance(value, bool) or not ok:
        expected = {int: "an integer", float: "a number"}[kind] + (" or null" if optional else "")
        raise ConfigError(f"`{key}`={value!r} must be {expected}")
    if low is not None and value < low:
        raise ConfigError(f"`{key}`={value!r} must be >= {low:g}")
    return value


def _check_trainer(cfg: DictConfig) -> None:
    trainer = OmegaConf.select(cfg, "trainer")
    if trainer is None:
        return
    max_steps = _number(cfg, "trainer.max_steps", int, optional=False)
    if max_steps <= 0:
        raise ConfigError("trainer.max_steps must be > 0: training budgets are given in steps")
    interval = OmegaConf.select(cfg, "trainer.val_check_interval")
    if isinstance(interval, bool) or not isinstance(interval, int | float | None):
        raise ConfigError(
            f"`trainer.val_check_interval`={interval!r} must be a step count (int >= 1) or a fraction of an epoch"
        )
    if isinstance(interval, int) and interval < 1:
        raise ConfigError(f"`trainer.val_check_interval`={interval} must be >= 1 (steps between validations)")
    if isinstance(interval, float) and not 0.0 < interval <= 1.0:
        raise ConfigError(f"`trainer.val_check_interval`={interval} must be in (0, 1] (a fraction of an epoch)")
    if isinstance(interval, int) and interval > max_steps:
        raise ConfigError(
            f"`trainer.val_check_interval`={interval} > trainer.max_steps={max_steps}: no validation would run, so "
            "no checkpoint would be written to evaluate and export. Fix: lower trainer.val_check_interval"
        )
    limit = OmegaConf.select(cfg, "trainer.limit_val_batches")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0):
        raise ConfigError(
            f"`trainer.limit_val_batches`={limit!r} must be > 0 (validation writes the checkpoints to evaluate)"
        )
    _number(cfg, "trainer.accumulate_grad_batches", int, low=1)
    _number(cfg, "trainer.gradient_clip_val", float, low=0)
    _number(cfg, "trainer.log_every_n_steps", int, low=1)


EVAL_CHECKPOINTS = ("last", "best")


def _check_run_keys(cfg: DictConfig) -> None:
    """The top-level keys of ``train.yaml`` (no ``_target_`` to check them against)."""
    which = cfg.get("eval_checkpoint", "last")
    if which not in EVAL_CHECKPOINTS:
        raise ConfigError(f"`eval_checkpoint`={which!r} must be one of {', '.join(EVAL_CHECKPOINTS)}")
    _number(cfg, "eval_max_batches", int, low=1)
    _number(cfg, "threads", int, low=1)
    if "seed" in cfg:
        _number(cfg, "seed", int, optional=False)
    if "export" in cfg and not isinstance(cfg.export, bool):
        raise ConfigError(f"`export`={cfg.export!r} must be true or false")
    if "export_options" in cfg:
        _check_export_options(cfg, "export_options.")
    subsets = cfg.get("eval_subsets")
    if subsets is not None and not (
        isinstance(subsets, str) or (isinstance(subsets, ListConfig) and all(isinstance(s, str) for s in subsets))
    ):
        raise ConfigError(f"`eval_subsets`={subsets!r} must be null or a list of subset names")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not isinstance(ckpt, str):
        raise ConfigError(f"`ckpt_path`={ckpt!r} must be null or the path of a training checkpoint")


def _head_kind(net_target: str) -> str | None:
    from conformer_prune.checkpoint import resolve_target
    from conformer_prune.models.ctc import CTCModel
    from conformer_prune.models.transducer import TransducerModel

    try:
        cls = resolve_target(net_target, allowed_prefixes=None)
    except ValueError:
        return None
    if inspect.isclass(cls) and issubclass(cls, TransducerModel):
        return "transducer"
    if inspect.isclass(cls) and issubclass(cls, CTCModel):
        return "ctc"
    return None


def _check_decoding(cfg: DictConfig) -> None:
    """The decoders of ``decoding`` decode the head of ``model.net`` (a CTC decoder on a transducer fails)."""
    from conformer_prune.checkpoint import resolve_target

    net_target = OmegaConf.select(cfg, "model.net._target_")
    decoding = OmegaConf.select(cfg, "decoding")
    if net_target is None or decoding is None:
        return
    head = _head_kind(str(net_target))
    if head is None:
        return
    for name in ("greedy", "default"):
        target = OmegaConf.select(decoding, f"{name}._target_")
        if target is None:
            continue
        try:
            decodes = getattr(resolve_target(str(target), allowed_prefixes=None), "decodes", None)
        except ValueError as err:
            raise ConfigError(f"`decoding.{name}._target_`: {err}") from err
        if decodes is not None and decodes != head:
            choice = "decoding=transducer" if head == "transducer" else "decoding=ctc (or ctc_greedy, ctc_beam)"
            raise ConfigError(
                f"`decoding.{name}` ({str(target).rsplit('.', 1)[-1]}) decodes {decodes} models but model.net is a "
                f"{head} model ({str(net_target).rsplit('.', 1)[-1]}). Fix: {choice}, or leave decoding unset (it "
                "follows the model)"
            )


def _callback_targets(cfg: DictConfig) -> list[tuple[str, Any]]:
    from conformer_prune.checkpoint import resolve_target

    found = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            try:
                found.append((str(name), resolve_target(str(node._target_), allowed_prefixes=None)))
            except ValueError as err:
                raise ConfigError(f"`callbacks.{name}._target_`: {err}") from err
    return found


def _check_contradictions(cfg: DictConfig) -> None:
    """Settings of different groups that cannot both hold."""
    if "callbacks" not in cfg or not cfg.get("export"):
        return
    from lightning.pytorch.callbacks import ModelCheckpoint

    if not any(inspect.isclass(cls) and issubclass(cls, ModelCheckpoint) for _, cls in _callback_targets(cfg)):
        raise ConfigError(
            "`export`=true but no callback writes a checkpoint (callbacks has no ModelCheckpoint), so there would be "
            "nothing to export. Fix: export=false, or keep callbacks.last_checkpoint (callbacks=default)"
        )


def validate(cfg: DictConfig) -> None:
    """Check a composed config (no files read); raise :class:`ConfigError` naming the bad key."""
    check_types(cfg)
    for site in config_keys():
        if OmegaConf.select(cfg, f"dropout.{site}") is not None:
            _check(f"dropout.{site}", lambda site=site: instantiate(cfg.dropout[site])(4))
    for key in ("pruning.target", "pruning.temperature"):
        if OmegaConf.select(cfg, key) is not None:
            schedule = _check(key, lambda key=key: instantiate(OmegaConf.select(cfg, key)))
            _check(key, lambda schedule=schedule: schedule(0, 10))
    if OmegaConf.select(cfg, "pruning.budget") is not None:
        _check("pruning.target_params", lambda: instantiate(cfg.pruning.budget))
    if OmegaConf.select(cfg, "model.net.encoder") is not None:
        with torch.device("meta"):
            _check("model.net.encoder", lambda: instantiate(cfg.model.net.encoder))
    if OmegaConf.select(cfg, "model.optimizer") is not None:
        _check("model.optimizer", lambda: instantiate(cfg.model.optimizer)([torch.nn.Parameter(torch.zeros(1))]))
    alpha = _number(cfg, "pruning.alpha", float)
    if alpha is not None and alpha < 0:
        raise ConfigError(f"pruning.alpha must be >= 0, got {alpha}")
    _check_trainer(cfg)
    if "eval_checkpoint" in cfg or "export" in cfg:
        _check_run_keys(cfg)
    _check_decoding(cfg)
    _check_contradictions(cfg)
    if OmegaConf.select(cfg, "data") is not None:
        _check("data", lambda: instantiate(cfg.data))
    _check_objective(cfg)
    if OmegaConf.select(cfg, "eval_device") not in (None, "auto"):
        from conformer_prune.distributed import resolve_eval_device

        _check("eval_device", lambda: resolve_eval_device(str(cfg.eval_device)))


PER_SUBSET_RESULTS = ("wer", "cer", "wer_greedy", "cer_greedy", "rtf")


def _check_objective(cfg: DictConfig) -> None:
    """``objective`` (what scripts/train.py returns to a sweeper) must name a number results.json will hold."""
    objective = OmegaConf.select(cfg, "objective")
    if objective is None:
        return
    parts = str(objective).split("/")
    if parts[0] in PER_SUBSET_RESULTS:
        subsets = OmegaConf.select(cfg, "eval_subsets") or OmegaConf.select(cfg, "data.eval_subsets")
        if subsets is None:
            subsets = [
                *(OmegaConf.select(cfg, "data.dev_subsets") or []),
                *(OmegaConf.select(cfg, "data.test_subsets") or []),
            ]
        if len(parts) != 2 or parts[1] not in list(subsets):
            raise ConfigError(
                f"objective={objective}: use <metric>/<subset> with a subset the run evaluates ({list(subsets)}), "
                "e.g. cer/test-clean (or change eval_subsets)"
            )
    elif parts[0] != "params" or len(parts) != 2:
        raise ConfigError(
            f"objective={objective}: use <metric>/<subset> with metric one of {list(PER_SUBSET_RESULTS)}, "
            "or params/<total|encoder|compacted_total|compacted_encoder>"
        )


# -- files ------------------------------------------------------------------------------------------
def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def check_resume_checkpoint(cfg: DictConfig) -> None:
    """``ckpt_path`` is a readable training checkpoint whose weights fit the configured model.

    Raises:
        ConfigError: one paragraph naming the file, the mismatching weights and config keys, and the fix.
    """
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or OmegaConf.select(cfg, "model.net") is None:
        return
    from conformer_prune.checkpoint import net_state, read_checkpoint

    file = Path(str(ckpt_path)).expanduser()
    try:
        ckpt = read_checkpoint(file)
    except ValueError as err:
        raise ConfigError(f"`ckpt_path`: {err}") from err
    if "optimizer_states" not in ckpt or "loops" not in ckpt:
        raise ConfigError(
            f"`ckpt_path`={file} holds weights but no optimiser or loop state, so training cannot resume from it. "
            "Fix: resume from a <run>/checkpoints/*.ckpt written by scripts/train.py"
        )
    saved = ckpt["hyper_parameters"]["net_config"]
    net_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model.net, resolve=True))
    with open_dict(net_cfg):
        net_cfg.vocab_size = saved.get("vocab_size", net_cfg.get("vocab_size"))
    try:
        with torch.device("meta"):
            configured = instantiate(net_cfg).state_dict()
    except Exception:  # noqa: BLE001 - validate() reports an unbuildable model with its key
        return
    weights = net_state(ckpt)
    missing = sorted(set(configured) - set(weights))
    unexpected = sorted(set(weights) - set(configured))
    reshaped = [k for k in configured if k in weights and tuple(configured[k].shape) != tuple(weights[k].shape)]
    if not (missing or unexpected or reshaped):
        return
    problems = []
    if reshaped:
        k = reshaped[0]
        problems.append(
            f"{len(reshaped)} of {len(configured)} weights differ in shape (e.g. {k}: checkpoint "
            f"{list(weights[k].shape)}, configured {list(configured[k].shape)})"
        )
    if missing:
        problems.append(f"{len(missing)} configured weights are not in the checkpoint (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} checkpoint weights are not in the configured model (e.g. {unexpected[0]})")
    ours = _flat(OmegaConf.to_container(net_cfg, resolve=True))
    theirs = _flat(saved)
    differing = [k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]
    differing.sort(key=lambda k: "dropout" in k)  # sizes first: they are what the weights disagree on
    shown = "; ".join(f"model.net.{k}: checkpoint {theirs.get(k)!r}, configured {ours.get(k)!r}" for k in differing[:4])
    more = f" (+{len(differing) - 4} more)" if len(differing) > 4 else ""
    raise ConfigError(
        f"`ckpt_path`={file} was trained with another architecture than the configured one: "
        + "; ".join(problems)
        + (f". Its config differs at {shown}{more}" if differing else "")
        + ". Fix: resume with the settings of that run (its .hydra/config.yaml, e.g. the same model/encoder= and "
        "dropout=), or leave ckpt_path unset to start a new run"
    )


def validate_files(cfg: DictConfig, run_dir: Path | None = None) -> None:
    """What a training run needs on disk: data roots and subsets, the resume checkpoint, a free run dir."""
    if OmegaConf.select(cfg, "data") is not None:
        datamodule = _check("data", lambda: instantiate(cfg.data))
        check = getattr(datamodule, "check", None)
        if callable(check):
            try:
                check("fit", eval_subsets=cfg.get("eval_subsets"), eval_key="eval_subsets")
            except ValueError as err:  # the data module's messages name their keys (data.root, data.*_subsets)
                raise ConfigError(str(err)) from err
    check_resume_checkpoint(cfg)
    if run_dir is not None:
        from conformer_prune.rundir import check_run_dir

        check_run_dir(run_dir, cfg.get("ckpt_path"))


def _check_export_options(
    cfg: DictConfig, prefix: str = "", out_dir: Path | None = None, overwrite: bool = False
) -> None:
    """The export settings at ``prefix`` (``conf/export_options/default.yaml``: ``export_options.`` in
    ``train.yaml``, the root of ``export.yaml``), and ``out_dir`` when given."""
    from conformer_prune.export import check_export_args

    for key, kind in (("threshold", float), ("atol", float), ("verify_batches", int)):
        _number(cfg, prefix + key, kind, optional=key == "threshold")
    for key in ("torchscript", "onnx"):
        value = OmegaConf.select(cfg, prefix + key, default=False)
        if not isinstance(value, bool):
            raise ConfigError(f"`{prefix}{key}`={value!r} must be true or false")
    try:  # the messages name out_dir, threshold, atol or verify_batches
        check_export_args(
            out_dir,
            overwrite,
            OmegaConf.select(cfg, prefix + "threshold"),
            OmegaConf.select(cfg, prefix + "atol"),
            OmegaConf.select(cfg, prefix + "verify_batches"),
        )
    except ValueError as err:
        raise ConfigError(f"{prefix}{err}") from err


def validate_export(cfg: DictConfig) -> None:
    """``scripts/export.py``: the checkpoint is readable and ``out_dir`` may be written (before any output)."""
    from conformer_prune.checkpoint import read_checkpoint

    out_dir = OmegaConf.select(cfg, "out_dir", throw_on_resolution_failure=False)
    _check_export_options(cfg, out_dir=None if out_dir is None else Path(str(out_dir)), overwrite=bool(cfg.overwrite))
    try:
        read_checkpoint(Path(str(cfg.ckpt_path)).expanduser())
    except ValueError as err:
        raise ConfigError(f"`ckpt_path`: {err}") from err


def validate_evaluate(cfg: DictConfig) -> None:
    """``scripts/evaluate.py``: ``model_path`` points at a checkpoint, an export or a run (before any output)."""
    from conformer_prune.rundir import locate_model

    for key in ("max_batches", "threads"):
        _number(cfg, key, int, low=1)
    try:
        locate_model(cfg.get("model_path"))
    except ValueError as err:
        raise ConfigError(str(err)) from err


def _run_dir(config: DictConfig) -> Path | None:
    try:
        return Path(str(OmegaConf.select(config, "hydra.run.dir")))
    except Exception:  # noqa: BLE001 - no run dir known (e.g. composed without Hydra's config)
        return None


class ValidateConfig(Callback):
    """Hydra callback: check the config before the run (or sweep) directory exists (see the module doc).

    Args:
        mode: ``train`` (:func:`validate`, then :func:`validate_files` and the run directory), ``config``
            (:func:`validate` only: ``scripts/summarize.py`` needs no data), ``export``
            (:func:`validate_export`) or ``evaluate`` (:func:`validate_evaluate`).
    """

    MODES = ("train", "config", "export", "evaluate")

    def __init__(self, mode: Literal["train", "config", "export", "evaluate"] = "train") -> None:
        if mode not in self.MODES:
            raise ValueError(f"hydra.callbacks.validate_config.mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def _validate(self, config: DictConfig, run_dir: Path | None) -> None:
        if not HydraConfig.initialized():
            HydraConfig.instance().set_config(config)
        try:
            if self.mode in ("export", "evaluate"):
                (validate_export if self.mode == "export" else validate_evaluate)(config)
                return
            validate(config)
            if self.mode == "train":
                validate_files(config, run_dir)
        except Exception as err:  # noqa: BLE001 - Hydra would only warn about an exception raised here
            if full_error() or user_error(err) is None:
                traceback.print_exc()
                raise SystemExit(1) from err
            report_user_error(user_error(err))
            raise SystemExit(1) from None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._validate(config, _run_dir(config))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._validate(config, None)
