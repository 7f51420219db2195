"""Train (and prune) a Conformer: python scripts/train.py [group=option ...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

import conformer_prune.baselines  # noqa: F401  (registers the cp.* resolvers of the baseline experiments)
from conformer_prune.entry import entry_point
from conformer_prune.report import sweep_objective
from conformer_prune.train import train


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with entry_point():
        return sweep_objective(train(cfg), cfg)  # the configured `objective` (for Optuna), else None


if __name__ == "__main__":
    main()
