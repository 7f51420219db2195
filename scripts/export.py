"""Export a compacted model: python scripts/export.py ckpt_path=<checkpoint> out_dir=<dir> [threshold=0.5]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.cli.export import export


@hydra.main(config_path="../conf", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        export(cfg)


if __name__ == "__main__":
    main()
