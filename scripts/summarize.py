"""Print the per-module parameter table of a configured model; last line total_params=<int>."""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.cli.summarize import summarize


@hydra.main(config_path="../conf", config_name="summarize", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        summarize(cfg)


if __name__ == "__main__":
    main()
