"""Training entry logic: data → tokenizer → task → Lightning fit → evaluation → export → results.json.

``scripts/train.py`` is a three-line ``@hydra.main`` around :func:`train`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from conformer_prune.cli.decoders import build_decoders
from conformer_prune.distributed import resolve_eval_device, run_on_global_zero
from conformer_prune.errors import UserError, user_error
from conformer_prune.evaluate import UTTERANCE_ERRORS_FILE, evaluate_net, flatten_results, split_utterance_errors
from conformer_prune.precision import training_precision
from conformer_prune.pruning.compact import (
    count_params,
    encoder_of,
    macs_per_second,
    retention_summary,
    strategy_params,
)
from conformer_prune.run_summary import print_summary, train_summary
from conformer_prune.rundir import RESULTS_FILE, set_aside_previous_results

log = logging.getLogger(__name__)


def build_task(cfg: DictConfig, datamodule: Any) -> L.LightningModule:
    """Instantiate the task with the vocabulary and feature settings of ``datamodule``."""
    tokenizer = datamodule.tokenizer
    with open_dict(cfg):
        cfg.model.net.vocab_size = tokenizer.vocab_size
    task = instantiate(cfg.model)
    net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    task.attach_artifacts(tokenizer, net_config, dict(datamodule.feature_extractor.config()))
    return task


def _callbacks(cfg: DictConfig) -> list[L.Callback]:
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node and "_target_" in node]


def _checkpoint_to_evaluate(trainer: L.Trainer, which: str) -> str | None:
    """The ``last`` checkpoint (from a checkpoint callback without a monitor) or the ``best`` by the
    monitored metric; falls back to whichever exists."""
    if which not in ("last", "best"):
        raise ValueError(f"eval_checkpoint must be 'last' or 'best', got {which!r}")
    callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    latest = [c.last_model_path or c.best_model_path for c in callbacks if c.monitor is None]
    best = [c.best_model_path for c in callbacks if c.monitor is not None]
    ordered = latest + best if which == "last" else best + latest
    return next((path for path in ordered if path), None)


def check_eval_subsets(datamodule: Any, subsets: list[str]) -> None:
    """Every subset to evaluate after training holds utterances (before training, not after it).

    Raises:
        UserError: a subset is empty (e.g. every entry skipped as malformed); names it and the fix.
    """
    for subset in subsets:
        try:
            usable = len(datamodule.eval_dataloader(subset).dataset)
            problem = "it has no usable utterances"
        except ValueError as err:  # e.g. the batch sampler refuses an empty subset
            usable, problem = 0, str(err)
        if not usable:
            skipped = datamodule.corpus_description().get("skipped") or "none"
            raise UserError(
                f"eval_subsets: subset {subset!r} under {datamodule.data_root} cannot be evaluated after training: "
                f"{problem} (entries skipped as malformed: {skipped}). Fix: repair the subset, or leave it out of "
                "eval_subsets / data.eval_subsets"
            )


def _write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    file = out_dir / RESULTS_FILE
    file.write_text(json.dumps(results, indent=2))
    return file


def _export(evaluated: str, out_dir: Path, datamodule: Any, options: DictConfig, results: dict[str, Any]) -> None:
    """Export ``evaluated`` into ``<out_dir>/export`` with ``options`` (``export_options``, the settings
    ``scripts/export.py`` uses) and record it in ``results``; on failure the evaluation is kept:
    ``results.json`` is written with ``export_error``, then the error is raised."""
    from conformer_prune.export import export_checkpoint

    try:
        report = export_checkpoint(
            evaluated, out_dir / "export", datamodule=datamodule, **OmegaConf.to_container(options, resolve=True)
        )
    except Exception as err:
        results["export"] = None
        results["export_error"] = f"{type(err).__name__}: {err}"
        file = _write_results(out_dir, results)
        if user_error(err) is None:
            log.error("the export failed; the evaluation is saved in %s", file)
            raise
        raise UserError(
            f"the export failed, so {out_dir / 'export'} was not written: {err}. The evaluation is saved in {file} "
            f"(its export_error says why). To retry the export alone: python scripts/export.py "
            f"ckpt_path={evaluated} out_dir={out_dir / 'export'}"
        ) from err
    results["params"]["compacted_total"] = report["params_after"]
    results["params"]["compacted_encoder"] = report["encoder_params_after"]
    results["macs_per_second"]["compacted"] = report["macs_per_second_after"]
    results["export"] = str(out_dir / "export")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, evaluate and export as configured; returns the ``results.json`` content.

    Under DDP every rank trains; global rank zero alone evaluates, exports and writes ``results.json``
    (:func:`~conformer_prune.distributed.run_on_global_zero`) and the other ranks return ``{}``.
    """
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_aside_previous_results(out_dir)  # a run continued in place (the validator refused any other)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    subsets = list(cfg.eval_subsets) if cfg.get("eval_subsets") else datamodule.eval_subsets()
    check_eval_subsets(datamodule, subsets)
    task = build_task(cfg, datamodule)
    (out_dir / "tokenizer.model").write_bytes(datamodule.tokenizer.model_bytes)

    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    precision = training_precision(cfg.trainer)  # bf16-mixed only where the CPU has bf16 units
    trainer: L.Trainer = instantiate(cfg.trainer, precision=precision, callbacks=_callbacks(cfg), logger=logger)
    start = time.perf_counter()
    trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    train_seconds = time.perf_counter() - start
    if task.nonfinite_total:
        log.warning(
            "%d of %d steps had a non-finite loss: their batches were skipped (no weight update), but they count "
            "as steps: toward trainer.max_steps and in the LR and pruning schedules, which are functions of the step",
            task.nonfinite_total,
            trainer.global_step,
        )

    results = run_on_global_zero(
        trainer, lambda: _evaluate_and_export(cfg, trainer, task, datamodule, subsets, out_dir, train_seconds)
    )
    return results or {}


def _evaluate_and_export(
    cfg: DictConfig,
    trainer: L.Trainer,
    task: L.LightningModule,
    datamodule: Any,
    subsets: list[str],
    out_dir: Path,
    train_seconds: float,
) -> dict[str, Any]:
    """Global rank zero, after ``fit``: evaluate the chosen checkpoint on every eval subset (whole, unsharded,
    on ``eval_device``), export it and write ``results.json``."""
    evaluated = _checkpoint_to_evaluate(trainer, cfg.get("eval_checkpoint", "last"))
    if evaluated:
        log.info("evaluating checkpoint %s", evaluated)
        state = torch.load(evaluated, map_location="cpu", weights_only=False)["state_dict"]
        task.load_state_dict(state, strict=True)
    device = resolve_eval_device(cfg.get("eval_device", "auto"), trainer)
    log.info("end-of-training evaluation on %s", device)
    net = task.net.to(device).eval()

    decoders, decoding_name = build_decoders(cfg.decoding, datamodule.tokenizer, datamodule.train_texts(), out_dir)
    per_subset = evaluate_net(
        net,
        {s: datamodule.eval_dataloader(s) for s in subsets},
        decoders,
        max_batches=cfg.get("eval_max_batches"),
        frames_per_second=datamodule.feature_extractor.frames_per_second,
    )
    (out_dir / UTTERANCE_ERRORS_FILE).write_text(json.dumps(split_utterance_errors(per_subset)))
    net = net.cpu()
    results: dict[str, Any] = {
        "params": {  # total: the trained model, keep logits included; dense: what a dense model of it holds
            "total": count_params(net),
            "dense": count_params(net) - strategy_params(net),
            "encoder": count_params(encoder_of(net)),
        },
        **flatten_results(per_subset),
        "decoding": decoding_name,
        "train_seconds": round(train_seconds, 1),
        "global_step": trainer.global_step,
        "nonfinite_batches": task.nonfinite_total,  # skipped batches; counted in global_step (see the log)
        "optimizer_updates": trainer.global_step - task.nonfinite_total,
        "checkpoint": evaluated,
        "eval_device": str(device),
        "world_size": int(trainer.world_size),
        "corpus": datamodule.corpus_description(),
        "per_subset": per_subset,
    }
    retention = retention_summary(net)
    if retention:
        results["retention"] = retention
    input_dim = int(task.hparams["net_config"]["encoder"].get("input_dim", 80))
    frames_per_second = datamodule.feature_extractor.frames_per_second
    results["macs_per_second"] = {"dense": round(macs_per_second(net, input_dim, frames_per_second=frames_per_second))}
    if cfg.get("export") and evaluated:
        _export(evaluated, out_dir, datamodule, cfg.export_options, results)
    _write_results(out_dir, results)
    print_summary(train_summary(results, out_dir))
    return results


# -- what scripts/train.py returns to a sweeper ----------------------------------------------------------
def results_value(results: Mapping[str, Any], path: str) -> float:
    """The number at ``path`` in a ``results.json`` mapping: ``cer/test-clean``, ``params/compacted_total``...

    Raises:
        ValueError: ``path`` does not lead to a number (the message names ``objective`` and what is there).
    """
    node: Any = results
    walked: list[str] = []
    for key in str(path).split("/"):
        if not isinstance(node, Mapping) or key not in node:
            here = sorted(node) if isinstance(node, Mapping) else []
            raise ValueError(
                f"objective={path}: results.json has no {'/'.join([*walked, key])!r}; "
                f"keys at {'/'.join(walked) or 'the top'}: {here}"
            )
        node, walked = node[key], [*walked, key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise ValueError(f"objective={path}: results.json holds {node!r} there, not a number")
    return float(node)


def sweep_objective(results: Mapping[str, Any], cfg: Any) -> float | None:
    """What ``scripts/train.py`` returns to a sweeper (Optuna minimises it), from ``results.json``.

    ``results[<objective path>]`` (config key ``objective``, e.g. ``wer/dev-clean``; ``None`` when it is null,
    or on a DDP rank other than zero, which has no results), plus, with ``optimize.param_budget`` set
    (``conf/hparams_search/optuna_alpha.yaml``), ``optimize.over_budget_weight · max(0, params / budget − 1)``
    with ``params`` the compacted total (the dense total if the run was not exported).

    Raises:
        ValueError: the objective is not a number in ``results`` (see :func:`results_value`).
    """
    path = cfg.get("objective")
    if not path or not results:
        return None
    objective = results_value(results, str(path))
    opt = cfg.get("optimize") or {}
    if opt.get("param_budget"):
        params = results["params"].get("compacted_total", results["params"]["total"])
        objective += float(opt.get("over_budget_weight", 1.0)) * max(0.0, params / float(opt["param_budget"]) - 1.0)
    return objective
