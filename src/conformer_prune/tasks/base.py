"""The Lightning task shared by the CTC and Transducer models: loss + weighted strategy penalties,
optimiser and warm-up schedule, non-finite-loss guard, validation WER/CER, checkpoint artefacts.

The network itself (``net``) is plain PyTorch; this module only trains and measures it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from conformer_prune.callbacks.schedule import total_steps
from conformer_prune.decoding.base import greedy_texts
from conformer_prune.dropout.base import UnitDropout
from conformer_prune.pruning.budget import ParamBudget
from conformer_prune.tasks.metrics import CorpusErrorRate
from conformer_prune.tasks.optim import build_optimizer, build_scheduler

log = logging.getLogger(__name__)

Batch = dict[str, Any]


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive batches give a non-finite loss."""


class ASRTask(L.LightningModule):
    """Trains ``net`` with ``loss + alpha · Σ site penalties``.

    Args:
        net: the plain-PyTorch model (``CTCModel`` or ``TransducerModel``).
        optimizer: partial optimiser, called with parameter groups.
        scheduler: partial LR schedule of the weights, called with ``total_steps=...``; returns
            ``factor(step)`` (see :mod:`conformer_prune.tasks.lr`); stepped per batch.
        alpha: weight of the dropout strategies' penalties (``pruning.alpha``).
        penalty_reduction: ``"sum"`` over all units (the paper's R) or ``"mean"`` (divided by the
            number of units, so ``alpha`` does not depend on model size).
        max_nonfinite: consecutive non-finite losses tolerated (each batch is skipped) before stopping.
        logit_optimizer: partial optimiser of the strategies' own parameters (keep logits), stepped with
            the weights' optimiser (:mod:`conformer_prune.tasks.optim`); ``None`` puts them into the
            weights' optimiser at ``lr × logit_lr_scale``.
        logit_lr_scale: with ``logit_optimizer=None``, the keep logits' learning-rate multiplier.
        logit_scheduler: partial LR schedule of the keep logits (like ``scheduler``); ``None`` keeps
            their learning rate constant.
        noise_seed: seed of the per-step dropout noise (``None``: the run's seed), so two runs can
            differ in their dropout noise alone.
        param_budget: a :class:`~conformer_prune.pruning.budget.ParamBudget` with a target
            (``pruning.target_params``): it prunes to that size by itself and replaces the ``alpha``
            prior (which is then not applied).

    :meth:`attach_artifacts` adds what an export needs to every checkpoint: the tokenizer model, the
    resolved config that rebuilds ``net`` and the feature extractor's config.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        alpha: float = 0.0,
        penalty_reduction: Literal["sum", "mean"] = "sum",
        max_nonfinite: int = 20,
        logit_lr_scale: float = 1.0,
        logit_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        logit_scheduler: Callable[..., Any] | None = None,
        noise_seed: int | None = None,
        param_budget: ParamBudget | None = None,
    ) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"pruning.alpha must be >= 0, got {alpha}")
        if penalty_reduction not in ("sum", "mean"):
            raise ValueError(f"pruning.reduction must be 'sum' or 'mean', got {penalty_reduction!r}")
        self.save_hyperparameters(
            ignore=["net", "optimizer", "scheduler", "logit_optimizer", "logit_scheduler", "param_budget"]
        )
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.alpha = alpha
        self.penalty_reduction = penalty_reduction
        self.max_nonfinite = max_nonfinite
        if logit_lr_scale <= 0:
            raise ValueError(f"pruning.logit_lr_scale must be > 0, got {logit_lr_scale}")
        self.logit_lr_scale = logit_lr_scale
        self.logit_optimizer_factory = logit_optimizer
        self.logit_scheduler_factory = logit_scheduler
        self.noise_seed = noise_seed
        self.param_budget = param_budget if param_budget is not None and param_budget.enabled else None
        if self.param_budget is not None:
            self.param_budget.bind(net)
            if alpha:
                log.info("pruning.target_params is set: the alpha prior (pruning.alpha=%g) is not applied", alpha)
            self.alpha = 0.0
        self.tokenizer = None  # see attach_artifacts
        self.nonfinite_total = 0
        self._nonfinite_run = 0
        # corpus-level over the whole validation set, summed across DDP ranks (tasks/metrics.py)
        self.val_loss = MeanMetric()
        self.val_wer = CorpusErrorRate("word")
        self.val_cer = CorpusErrorRate("char")
        # the training-set learning curve (data.monitor_train_utterances > 0: a second validation loader)
        self.train_monitor_wer = CorpusErrorRate("word")
        self.train_monitor_cer = CorpusErrorRate("char")
        self._train_monitored = False

    def attach_artifacts(self, tokenizer: Any, net_config: dict, feature_config: dict) -> None:
        """Tokenizer (its model goes into checkpoints) and plain-dict configs (into ``hyper_parameters``)."""
        self.tokenizer = tokenizer
        self.hparams["net_config"] = net_config
        self.hparams["feature_config"] = feature_config

    # -- model-specific hooks -------------------------------------------------------------------
    def compute_loss(self, batch: Batch) -> Tensor:
        return self.net.loss(batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"])

    def greedy_transcribe(self, batch: Batch) -> list[str]:
        """Greedy transcripts of a batch (CTC best path, transducer greedy search: ``net.greedy_decode``)."""
        out, lens = self.net(batch["features"], batch["feature_lens"])
        return greedy_texts(self.net, out, lens, self.tokenizer)

    # -- training ------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # what seed_everything(cfg.seed) set, unless the dropout noise has a seed of its own
        self._base_seed = torch.initial_seed() if self.noise_seed is None else int(self.noise_seed)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Dropout masks and Gumbel noise of step t come from a generator state that is a function of
        # (seed, t) alone, so a run resumed from a checkpoint at step t continues exactly. Under DDP the
        # rank enters too (rank 0 keeps the single-process stream), so ranks draw independent masks.
        seed = getattr(self, "_base_seed", 0) * 1_000_003 + self.global_step
        if self.global_rank:
            seed = seed * 1_009 + self.global_rank
        torch.manual_seed(seed % 2**63)

    def sites(self) -> list[UnitDropout]:
        return [m for m in self.net.modules() if isinstance(m, UnitDropout)]

    def penalty(self) -> Tensor:
        """``Σ`` of every site's penalty (or their per-unit mean)."""
        sites = self.sites()
        if not sites:
            return torch.zeros((), device=self.device)
        total = torch.stack([s.penalty().to(self.device) for s in sites]).sum()
        if self.penalty_reduction == "mean":
            total = total / sum(s.num_units for s in sites)
        return total

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        loss = self.compute_loss(batch)
        if not torch.isfinite(loss):
            self.nonfinite_total += 1
            self._nonfinite_run += 1
            log.warning(
                "non-finite loss at step %d: batch skipped (%d in a row)",
                self.global_step,
                self._nonfinite_run,
            )
            if self._nonfinite_run > self.max_nonfinite:
                raise NonFiniteLossError(
                    f"{self._nonfinite_run} consecutive non-finite losses (model.max_nonfinite="
                    f"{self.max_nonfinite}): lower model.optimizer.lr, check the data, or raise the limit"
                )
            return None
        self._nonfinite_run = 0
        penalty = self.penalty()
        total = loss + self.alpha * penalty
        batch_size = batch["features"].size(0)
        if self.param_budget is not None:
            term, stats = self.param_budget.penalty(self.net, self.global_step, total_steps(self.trainer))
            total = total + term.to(total.device)
            self.log_dict(stats, batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/penalty", penalty, batch_size=batch_size)
        self.log("train/total", total, batch_size=batch_size)
        self.log("train/nonfinite", float(self.nonfinite_total), batch_size=batch_size)
        return total

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        if self.param_budget is not None:
            hard = self.param_budget.update(self.net, self.global_step, total_steps(self.trainer))
            self.log("budget/params_if_compacted", hard, batch_size=1)

    # -- validation ----------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        # Validate every rank with rank 0's buffers, which are what the checkpoint holds: without
        # SyncBatchNorm (CPU DDP has none) each rank's BatchNorm statistics also took in its own last batch.
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            for buffer in self.net.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def validation_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Under DDP each rank sees its own share of the dev batches (no padding repeats); the metrics
        # keep sums that are reduced once at the end of the epoch, so the numbers are those of the set.
        if dataloader_idx == 1:  # the data module's sample of training utterances (data.monitor_train_utterances)
            hypotheses = self.greedy_transcribe(batch)
            self.train_monitor_wer.update(hypotheses, batch["texts"])
            self.train_monitor_cer.update(hypotheses, batch["texts"])
            self._train_monitored = True
            return
        loss = self.compute_loss(batch)
        self.val_loss.update(loss.detach(), weight=batch["features"].size(0))
        hypotheses = self.greedy_transcribe(batch)
        self.val_wer.update(hypotheses, batch["texts"])
        self.val_cer.update(hypotheses, batch["texts"])

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss)
        self.log("val/wer", self.val_wer, prog_bar=True)
        self.log("val/cer", self.val_cer, prog_bar=True)
        if self._train_monitored:
            self.log("train_monitor/wer", self.train_monitor_wer)
            self.log("train_monitor/cer", self.train_monitor_cer)
            self._train_monitored = False

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        strategy_params = [p for s in self.sites() for p in s.parameters()]
        optimizer, is_logit_group = build_optimizer(
            self.net, strategy_params, self.optimizer_factory, self.logit_optimizer_factory, self.logit_lr_scale
        )
        if self.scheduler_factory is None and self.logit_scheduler_factory is None:
            return optimizer
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else None
        if total is None:
            total = int(self.trainer.estimated_stepping_batches)
        scheduler = build_scheduler(
            optimizer, is_logit_group, total, self.scheduler_factory, self.logit_scheduler_factory
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoint artefacts ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer_model"] = self.tokenizer.model_bytes
        checkpoint["nonfinite_total"] = self.nonfinite_total

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_total = int(checkpoint.get("nonfinite_total", 0))
