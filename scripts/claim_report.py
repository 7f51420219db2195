"""The claim protocol's report: python scripts/claim_report.py sweep_dir=<scripts/claim.sh OUT> [out_dir=<dir>]"""

import hydra
from omegaconf import DictConfig

from conformer_prune.claim_report import report
from conformer_prune.cli.entry import entry_point


@hydra.main(config_path="../conf", config_name="claim_report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with entry_point():
        report(cfg.sweep_dir, cfg.out_dir)


if __name__ == "__main__":
    main()
