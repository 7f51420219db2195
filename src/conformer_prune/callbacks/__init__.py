"""Lightning callbacks: schedule drivers and the sparsity monitor."""

from conformer_prune.callbacks.sparsity import SparsityMonitor
from conformer_prune.callbacks.target import RetentionTarget
from conformer_prune.callbacks.temperature import GumbelTemperature

__all__ = ["GumbelTemperature", "RetentionTarget", "SparsityMonitor"]
