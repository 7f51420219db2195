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

from conformer_prune.dropout.base import UnitDropout
from conformer_prune.tasks.metrics import CorpusErrorRate

log = logging.getLogger(__name__)

Batch = dict[str, Any]


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive batches give a non-finite loss."""


class ASRTask(L.LightningModule):
    """Trains ``net`` with ``loss + alpha · Σ site penalties``.

    Args:
        net: the plain-PyTorch model (``CTCModel`` or ``TransducerModel``).
        optimizer: partial optimiser, called with parameter groups.
        scheduler: partial LR schedule, called with ``(optimizer, total_steps=...)``; stepped per batch.
        alpha: weight of the dropout strategies' penalties (``pruning.alpha``).
        penalty_reduction: ``"sum"`` over all units (the paper's R) or ``"mean"`` (divided by the
            number of units, so ``alpha`` does not depend on model size).
        max_nonfinite: consecutive non-finite losses tolerated (each batch is skipped) before stopping.
        logit_lr_scale: learning-rate multiplier for the strategies' own parameters (keep logits). With
            Adam a parameter moves about ``lr`` per step whatever its gradient's scale, so in a short run
            the logits need a larger rate to travel from ``logit(0.9)`` to the pruned region.

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
    ) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"pruning.alpha must be >= 0, got {alpha}")
        if penalty_reduction not in ("sum", "mean"):
            raise ValueError(f"pruning.reduction must be 'sum' or 'mean', got {penalty_reduction!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.alpha = alpha
        self.penalty_reduction = penalty_reduction
        self.max_nonfinite = max_nonfinite
        if logit_lr_scale <= 0:
            raise ValueError(f"pruning.logit_lr_scale must be > 0, got {logit_lr_scale}")
        self.logit_lr_scale = logit_lr_scale
        self.tokenizer = None  # see attach_artifacts
        self.nonfinite_total = 0
        self._nonfinite_run = 0
        # corpus-level over the whole validation set, summed across DDP ranks (tasks/metrics.py)
        self.val_loss = MeanMetric()
        self.val_wer = CorpusErrorRate("word")
        self.val_cer = CorpusErrorRate("char")

    def attach_artifacts(self, tokenizer: Any, net_config: dict, feature_config: dict) -> None:
        """Tokenizer (its model goes into checkpoints) and plain-dict configs (into ``hyper_parameters``)."""
        self.tokenizer = tokenizer
        self.hparams["net_config"] = net_config
        self.hparams["feature_config"] = feature_config

    # -- model-specific hooks -------------------------------------------------------------------
    def compute_loss(self, batch: Batch) -> Tensor:
        return self.net.loss(batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"])

    def greedy_transcribe(self, batch: Batch) -> list[str]:
        raise NotImplementedError

    # -- training ------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._base_seed = torch.initial_seed()  # what seed_everything(cfg.seed) set

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
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/penalty", penalty, batch_size=batch_size)
        self.log("train/total", total, batch_size=batch_size)
        self.log("train/nonfinite", float(self.nonfinite_total), batch_size=batch_size)
        return total

    # -- validation ----------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        # Validate every rank with rank 0's buffers, which are what the checkpoint holds: without
        # SyncBatchNorm (CPU DDP has none) each rank's BatchNorm statistics also took in its own last batch.
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            for buffer in self.net.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # Under DDP each rank sees its own share of the dev batches (no padding repeats); the metrics
        # keep sums that are reduced once at the end of the epoch, so the numbers are those of the set.
        loss = self.compute_loss(batch)
        self.val_loss.update(loss.detach(), weight=batch["features"].size(0))
        hypotheses = self.greedy_transcribe(batch)
        self.val_wer.update(hypotheses, batch["texts"])
        self.val_cer.update(hypotheses, batch["texts"])

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss)
        self.log("val/wer", self.val_wer, prog_bar=True)
        self.log("val/cer", self.val_cer, prog_bar=True)

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # No weight decay on the strategies' logits (their penalty is their regulariser), biases or norms;
        # the logits get their own learning rate.
        decay, no_decay, logits = [], [], []
        strategy_params = {id(p) for s in self.sites() for p in s.parameters()}
        for param in self.net.parameters():
            if not param.requires_grad:
                continue
            if id(param) in strategy_params:
                logits.append(param)
            else:
                (no_decay if param.dim() < 2 else decay).append(param)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = self.optimizer_factory(groups)
        if logits:
            base_lr = optimizer.param_groups[0]["lr"]
            optimizer.add_param_group({"params": logits, "weight_decay": 0.0, "lr": base_lr * self.logit_lr_scale})
        if self.scheduler_factory is None:
            return optimizer
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else None
        if total is None:
            total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- checkpoint artefacts ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer_model"] = self.tokenizer.model_bytes
        checkpoint["nonfinite_total"] = self.nonfinite_total

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.nonfinite_total = int(checkpoint.get("nonfinite_total", 0))
