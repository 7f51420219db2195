"""The GPU presets mean it: GPU trainer, bf16, warm-up and validation sized for their step counts, and one
definition per recipe (transducer_m is librispeech960_transducer; transducer_s|l derive from it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[3] / "conf"
CPU_PRESETS = {"transducer_quick"}  # the CPU Transducer on the embedded corpus
GPU_PRESETS = sorted(
    p.stem
    for p in (CONF / "experiment").glob("*.yaml")
    if p.stem.startswith(("transducer_", "librispeech")) and p.stem not in CPU_PRESETS
)


def compose_experiment(name: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=[f"experiment={name}"])


def test_the_gpu_presets_are_the_ones_the_readme_names() -> None:
    assert GPU_PRESETS == [
        "librispeech100_ctc",
        "librispeech960_ctc",
        "librispeech960_transducer",
        "transducer_l",
        "transducer_m",
        "transducer_s",
    ]


@pytest.mark.parametrize("name", GPU_PRESETS)
def test_gpu_preset_pins_the_gpu_trainer_and_a_schedule_for_its_steps(name: str) -> None:
    cfg = compose_experiment(name)
    steps = cfg.trainer.max_steps
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
    assert steps >= 50_000
    warmup = cfg.model.scheduler.warmup_steps
    assert warmup >= 5000 and 0.03 <= warmup / steps <= 0.1, warmup  # thousands, not the CPU quickstart's 100
    assert steps / 40 <= cfg.trainer.val_check_interval <= steps / 10
    assert cfg.data.num_workers >= 4 and cfg.data.max_batch_seconds >= 300  # GPU-sized batches
    assert cfg.model.optimizer.lr <= 2.0e-3  # below the 2.2M-parameter CPU quickstart's 4e-3


def test_transducer_m_is_librispeech960_transducer_and_s_l_only_change_sizes_and_lr() -> None:
    base = OmegaConf.to_container(compose_experiment("librispeech960_transducer"))
    assert OmegaConf.to_container(compose_experiment("transducer_m")) == base
    for name, d_model in (("transducer_s", 144), ("transducer_l", 512)):
        cfg = OmegaConf.to_container(compose_experiment(name))
        assert cfg["model"]["net"]["encoder"]["d_model"] == d_model
        for key in ("data", "trainer", "pruning", "dropout", "decoding"):
            assert cfg[key] == base[key], (name, key)
        assert cfg["model"]["scheduler"] == base["model"]["scheduler"]
