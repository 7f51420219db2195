"""Train (and prune) a Conformer: python scripts/train.py [group=option ...] [key=value ...]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.cli.resolvers import register_resolvers
from conformer_prune.cli.train import sweep_objective, train

register_resolvers()  # the cp.* resolvers of the baseline experiments (conf/experiment/dense_*.yaml)


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with entry_point():
        return sweep_objective(train(cfg), cfg)  # the configured `objective` (for Optuna), else None


if __name__ == "__main__":
    main()
