"""Size presets mirror Gulati et al. 2020 (arXiv 2005.08100), Table 1: Conformer S/M/L Transducers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from conformer_prune.cli.summarize import vocab_size_of
from conformer_prune.pruning.compact import count_params

CONF = Path(__file__).resolve().parents[3] / "conf"

# Published totals (Table 1 of Gulati et al. 2020), vocabulary 1024, 1-layer LSTM decoder.
PUBLISHED = {"transducer_s": 10.3e6, "transducer_m": 30.7e6, "transducer_l": 118.8e6}


@pytest.mark.parametrize("experiment", sorted(PUBLISHED))
def test_preset_parameter_count_within_3_percent_of_gulati_table_1(experiment: str) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("summarize", overrides=[f"experiment={experiment}", "vocab_size=1024"])
    with open_dict(cfg):
        cfg.model.net.vocab_size = cfg.vocab_size
    with torch.device("meta"):  # no memory for the 118M model
        net = instantiate(cfg.model.net)
    total = count_params(net)
    assert abs(total - PUBLISHED[experiment]) / PUBLISHED[experiment] < 0.03, total


def test_quickstart_preset_size() -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("summarize")
    assert vocab_size_of(cfg) == 30  # the embedded corpus's char tokenizer: 27 characters + blank, unk, boundary
    with open_dict(cfg):
        cfg.model.net.vocab_size = vocab_size_of(cfg)
    total = count_params(instantiate(cfg.model.net))
    assert 2.0e6 < total < 2.5e6


@pytest.mark.parametrize("experiment, expected", [("transducer_s", 1024), ("quickstart", 30)])
def test_summarize_takes_the_vocabulary_from_the_experiments_tokenizer(experiment: str, expected: int) -> None:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("summarize", overrides=[f"experiment={experiment}"])
        assert vocab_size_of(cfg) == expected
        overridden = compose("summarize", overrides=[f"experiment={experiment}", "vocab_size=77"])
        assert vocab_size_of(overridden) == 77
