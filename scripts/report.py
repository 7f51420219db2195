"""Report a sweep: python scripts/report.py sweep_dir=<multirun dir> [run_dirs=[...]] [out_dir=...]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.cli.report import report


@hydra.main(config_path="../conf", config_name="report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        report(cfg)


if __name__ == "__main__":
    main()
