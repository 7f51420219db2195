"""Generate the embedded synthetic corpus: ``python scripts/make_corpus.py root=DIR train_minutes=M seed=S``."""

import hydra
from omegaconf import DictConfig, OmegaConf

from conformer_prune.cli.entry import entry_point
from conformer_prune.data.corpus import generate_from_config


@hydra.main(config_path="../conf", config_name="make_corpus", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        generate_from_config(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
