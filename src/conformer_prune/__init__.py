"""conformer-prune: train Conformer ASR models and prune them while they train with adaptive dropout."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str):  # lazy, so `import conformer_prune` stays cheap
    if name == "load_model":
        from conformer_prune.inference import load_model

        return load_model
    raise AttributeError(name)
