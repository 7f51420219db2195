"""Lightning callbacks: schedule drivers, the sparsity monitor, the step progress bar and model summary."""

from conformer_prune.callbacks.progress import ModelSummary, StepProgressBar
from conformer_prune.callbacks.sparsity import SparsityMonitor
from conformer_prune.callbacks.target import RetentionTarget
from conformer_prune.callbacks.temperature import GumbelTemperature

__all__ = ["GumbelTemperature", "ModelSummary", "RetentionTarget", "SparsityMonitor", "StepProgressBar"]
