"""What training shows on the console: progress in optimiser steps against the step budget, and a
model summary without Lightning's empty FLOPs column.

:class:`StepProgressBar` is Lightning's rich progress bar with one task for the whole run, counting
global steps up to ``trainer.max_steps`` (``step 250/1500 ━━━ 0:02:10 • 0:09:12 1.92 steps/s``: elapsed
• remaining, then the rate), so the remaining time is an estimate for the run, not for an epoch. The
metrics logged with ``prog_bar=True`` (``train/loss``, ``val/wer``, ``val/cer``, ``prune/kept_ratio``)
stay beside it. At each validation it also writes one plain line (step, budget, rate, ETA and those
metrics) to the log: to the log files when the console shows the bar, and to the console too when it
is not a terminal (a redirected ``make train``), where the bar cannot redraw.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import ProcessingSpeedColumn
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from rich.text import Text

from conformer_prune.errors import log_to_files

log = logging.getLogger(__name__)


class _StepsPerSecond(ProcessingSpeedColumn):
    """The training task's rate in steps/s (validation batches stay it/s)."""

    def __init__(self, bar: StepProgressBar, style: Any) -> None:
        super().__init__(style)
        self.bar = bar

    def render(self, task: Any) -> Text:
        train = task.id == self.bar.train_progress_bar_id or (
            self.bar.train_progress_bar_id is None and "Validation" not in task.description  # its first frame
        )
        unit = "steps/s" if train else "it/s"
        return Text(f"{task.speed or 0.0:.2f} {unit}", style=self.style)


def format_eta(seconds: float | None) -> str:
    """``H:MM:SS`` (``-:--:--`` when unknown)."""
    return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))


class StepProgressBar(RichProgressBar):
    """Rich progress bar over global steps (``step N/max_steps``) with rate and ETA; see the module doc."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start: tuple[float, int] | None = None  # (time, global step) when fitting started

    @property
    def budget(self) -> int | float:
        """The step budget (``trainer.max_steps``; ``inf`` without one)."""
        max_steps = self.trainer.max_steps
        return max_steps if max_steps and max_steps > 0 else float("inf")

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'step':{len(self.validation_description)}}"  # as wide as "Validation": no jump when it shows

    def configure_columns(self, trainer: L.Trainer) -> list:
        columns = super().configure_columns(trainer)
        return [_StepsPerSecond(self, style=c.style) if isinstance(c, ProcessingSpeedColumn) else c for c in columns]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._start = (time.monotonic(), trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # one task for the whole run: never reset at an epoch boundary (the rate and ETA would restart)
        if self.is_disabled:
            return
        if self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self.refresh()

    def _initialize_train_progress_bar_id(self) -> None:
        if self.progress is None:
            return
        description = self._get_train_description(0)
        if self.theme.description:
            description = f"[{self.theme.description}]{description}"
        # start at the global step (a resumed run), so the rate does not count the steps done before
        self.train_progress_bar_id = self.progress.add_task(
            description, total=self.budget, completed=self.trainer.global_step
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def rate_and_eta(self) -> tuple[float | None, float | None]:
        """Steps per second since fitting started, and the seconds left at that rate."""
        if self._start is None:
            return None, None
        seconds, steps = time.monotonic() - self._start[0], self.trainer.global_step - self._start[1]
        if seconds <= 0 or steps <= 0:
            return None, None
        rate = steps / seconds
        left = self.budget - self.trainer.global_step
        return rate, (left / rate if left != float("inf") else None)

    def progress_line(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str:
        """``step 250/1500 (17%) | 1.92 steps/s | ETA 0:10:50 | train/loss: 1.234 | val/wer: 0.456 ...``."""
        budget = self.budget
        step = trainer.global_step
        done = f" ({100 * step / budget:.0f}%)" if budget != float("inf") else ""
        rate, eta = self.rate_and_eta()
        metrics = self.get_metrics(trainer, pl_module)
        shown = " | ".join(
            f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items() if k != "v_num"
        )
        total = "?" if budget == float("inf") else str(int(budget))
        rate_text = "-" if rate is None else f"{rate:.2f}"
        return f"step {step}/{total}{done} | {rate_text} steps/s | ETA {format_eta(eta)}" + (
            f" | {shown}" if shown else ""
        )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        line = self.progress_line(trainer, pl_module)
        console = getattr(self, "_console", None)
        if self.is_enabled and console is not None and console.is_terminal:
            log_to_files(line, name=__name__)  # the bar shows it on the terminal
        else:
            log.info(line)


class ModelSummary(RichModelSummary):
    """Lightning's rich model summary, without the FLOPs column and total when they are 0 (Lightning
    counts FLOPs only for a module with an ``example_input_array``; ours have none, so it printed
    ``Total FLOPs: 0``). Multiply-accumulates per second of audio are in the export's ``report.json``
    and the end-of-run summary."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops:
            RichModelSummary.summarize(
                summary_data,
                total_parameters,
                trainable_parameters,
                model_size,
                total_training_modes,
                total_flops,
                **summarize_kwargs,
            )
            return
        from rich import get_console
        from rich.table import Table

        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left", no_wrap=name == "Name")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(
            f"[bold]params[/]: {get_human_readable_count(int(trainable_parameters)).strip()} trainable, "
            f"{get_human_readable_count(int(frozen)).strip()} frozen ({model_size:.2f} MB)"
        )
