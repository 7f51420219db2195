"""Random-units control: python scripts/permute_units.py checkpoint=<ckpt> out=<ckpt> seed=<k>"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.controls import permute_keep_logits


@hydra.main(config_path="../conf", config_name="permute_units", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        permute_keep_logits(cfg.checkpoint, cfg.out, cfg.seed)


if __name__ == "__main__":
    main()
