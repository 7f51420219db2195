"""Evaluate a checkpoint or export: python scripts/evaluate.py model_path=<ckpt|export dir> data.eval_subsets=[...]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.cli.evaluate import evaluate


@hydra.main(config_path="../conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        evaluate(cfg)


if __name__ == "__main__":
    main()
