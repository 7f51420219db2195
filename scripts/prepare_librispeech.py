"""Download and extract LibriSpeech: ``python scripts/prepare_librispeech.py subsets=[dev-clean,test-clean]``."""

import hydra
from omegaconf import DictConfig, OmegaConf

from conformer_prune.cli.entry import entry_point
from conformer_prune.data.download import prepare_from_config


@hydra.main(config_path="../conf", config_name="prepare_librispeech", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        prepare_from_config(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
