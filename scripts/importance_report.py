"""Importance controls report: python scripts/importance_report.py sweep_dir=<dir> [out_dir=<dir>]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.controls import write_report


@hydra.main(config_path="../conf", config_name="importance_report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        write_report(cfg.sweep_dir, cfg.out_dir, cfg.subset)


if __name__ == "__main__":
    main()
