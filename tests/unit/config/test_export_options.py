"""One set of export settings (conf/export_options/default.yaml) for the end-of-training export and
scripts/export.py: both read it, both pass every key to export_checkpoint, both validate it."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from conformer_prune.cli import export as cli_export
from conformer_prune.cli import train as cli_train
from conformer_prune.cli.validate import ConfigError, validate
from conformer_prune.export import export_checkpoint

CONF = Path(__file__).resolve().parents[3] / "conf"
OPTIONS = OmegaConf.to_container(OmegaConf.load(CONF / "export_options" / "default.yaml"))


def compose_config(name: str, overrides: list[str], tmp_path: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=[f"hydra.run.dir={tmp_path}", *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg


@pytest.fixture
def captured(monkeypatch) -> list[dict]:
    """export_checkpoint's keyword arguments, as the two entry points call it (nothing is exported)."""
    calls: list[dict] = []

    @functools.wraps(export_checkpoint)  # the real signature: scripts/export.py passes what it names
    def fake_export_checkpoint(*args, **kwargs) -> dict:
        calls.append(kwargs)
        return {"params_after": 1, "encoder_params_after": 1, "macs_per_second_after": 1}

    monkeypatch.setattr("conformer_prune.export.export_checkpoint", fake_export_checkpoint)
    monkeypatch.setattr(cli_export, "export_checkpoint", fake_export_checkpoint)
    return calls


def test_both_entry_points_compose_the_same_settings(tmp_path) -> None:
    train = compose_config("train", [], tmp_path)
    export = compose_config("export", ["ckpt_path=x.ckpt"], tmp_path)
    assert OmegaConf.to_container(train.export_options) == OPTIONS
    assert {key: export[key] for key in OPTIONS} == OPTIONS
    assert OPTIONS["torchscript"] is False  # what a training run's export always wrote


@pytest.mark.parametrize("override", ["torchscript=true", "onnx=true", "threshold=0.3", "atol=0.001"])
def test_every_setting_reaches_export_checkpoint_from_both(override: str, tmp_path, captured) -> None:
    key, value = override.split("=")
    expected = {**OPTIONS, key: {"true": True, "0.3": 0.3, "0.001": 0.001}[value]}
    train = compose_config("train", [f"export_options.{override}"], tmp_path)
    results = {"params": {}, "macs_per_second": {}}
    cli_train._export("last.ckpt", tmp_path, datamodule=None, options=train.export_options, results=results)
    export = compose_config("export", ["ckpt_path=x.ckpt", override], tmp_path)
    cli_export.export(export)
    from_train, from_script = captured
    assert {k: from_train[k] for k in OPTIONS} == expected
    assert {k: from_script[k] for k in OPTIONS} == expected
    assert from_script["ckpt_path"] == "x.ckpt" and from_script["overwrite"] is False


@pytest.mark.parametrize(
    "override, message",
    [("threshold=1.5", r"export_options\.threshold must be in \[0, 1\)"), ("torchscript=3", "torchscript")],
)
def test_training_refuses_a_bad_setting_before_it_trains(override: str, message: str, tmp_path) -> None:
    cfg = compose_config("train", [f"export_options.{override}", f"paths.data_dir={tmp_path}/data"], tmp_path)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)
