"""Transcribe audio with an exported model: python scripts/transcribe.py model_path=<dir> audio=[a.flac,b.wav]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.cli.entry import entry_point
from conformer_prune.cli.transcribe import transcribe_files


@hydra.main(config_path="../conf", config_name="transcribe", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        raise SystemExit(transcribe_files(cfg))


if __name__ == "__main__":
    main()
