"""Every option of every config group composes, and what can be instantiated instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from conformer_prune.cli.validate import ConfigError, validate
from conformer_prune.dropout import UnitDropout
from conformer_prune.sites import config_keys, kinds, site_kind

CONF = Path(__file__).resolve().parents[3] / "conf"
GROUPS = [
    "data",
    "model",
    "model/encoder",
    "decoding",
    "dropout",
    "pruning",
    "callbacks",
    "trainer",
    "logger",
    "experiment",
    "debug",
]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def resolve_all(cfg) -> None:
    for key in cfg:
        if key != "hydra" and OmegaConf.is_config(cfg[key]):
            OmegaConf.to_container(cfg[key], resolve=True)


def compose_train(overrides: list[str]):
    overrides = ["paths.output_dir=${hydra:run.dir}", *overrides]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group: str, option: str, tmp_path) -> None:
    overrides = [f"{group}={option}", f"hydra.run.dir={tmp_path}", f"paths.data_dir={tmp_path}/data"]
    if group == "model/encoder" and option in {"m", "l"}:
        overrides.append("trainer=cpu")
    if group == "decoding" and option == "transducer":
        overrides.append("model=transducer")  # transducer decoders on the default CTC model are refused
    if group == "callbacks" and option == "none":
        overrides.append("export=false")  # no checkpoint callback: nothing to export (refused with export=true)
    cfg = compose_train(overrides)
    resolve_all(cfg)  # every interpolation outside hydra's own node resolves
    validate(cfg)
    for name, node in (cfg.callbacks or {}).items():
        if node and "_target_" in node:
            callback = instantiate(node)
            assert type(callback) is get_class(node._target_) and isinstance(callback, L.Callback), name
            assert_arguments_reached(callback, node, name)
    if cfg.get("logger"):
        logger = instantiate(cfg.logger)
        assert type(logger) is get_class(cfg.logger._target_) and isinstance(logger, Logger)
        assert Path(logger.save_dir) == Path(cfg.paths.output_dir) and logger.name == cfg.logger.name


def assert_arguments_reached(obj, node, name: str) -> None:
    """Every argument the object keeps under its own name (or ``_name``) holds the configured value (a
    nested node: the object it builds); at least one argument is checked when there are any."""
    args = [key for key in node if not key.startswith("_")]
    checked = 0
    for key in args:
        attr = next((a for a in (key, f"_{key}") if hasattr(obj, a)), None)
        if attr is None:
            continue
        kept, value = getattr(obj, attr), node[key]
        if OmegaConf.is_config(value):
            value = instantiate(value)
        elif key.endswith("dirpath"):
            kept, value = Path(kept).resolve(), Path(value).resolve()
        assert kept == value, (name, key, kept, value)
        checked += 1
    assert checked or not args, f"{name}: none of {args} is kept under its name"


@pytest.mark.parametrize("strategy", options("dropout"))
def test_dropout_option_reaches_every_site(strategy: str, tmp_path) -> None:
    cfg = compose_train([f"dropout={strategy}", "model/encoder=tiny", f"hydra.run.dir={tmp_path}"])
    enc = instantiate(cfg.model.net.encoder)
    expected = {k: instantiate(cfg.dropout[k])(3).__class__ for k in config_keys()}
    for site in enc.sites():
        assert type(site.module) is expected[site_kind(site.kind).config_key], site.name
    assert sum(isinstance(m, UnitDropout) for m in enc.modules()) == len(enc.sites()) == 2 * len(kinds())


def test_unknown_key_and_unknown_option_fail_while_composing(tmp_path) -> None:
    with pytest.raises(ConfigCompositionException, match="pruning.alfa"):
        compose_train(["pruning.alfa=1"])
    with pytest.raises(ConfigCompositionException, match="dropout"):
        compose_train(["dropout=adaptve"])


@pytest.mark.parametrize("removed", ["tags=[quickstart]"])
def test_settings_nothing_read_are_gone(removed: str) -> None:
    """Keys that no code read were removed; setting one is an error, not a silent no-op."""
    with pytest.raises(ConfigCompositionException, match=removed.split("=")[0]):
        compose_train([removed])


@pytest.mark.parametrize(
    "override, key",
    [
        ("pruning.alpha=-1", "pruning.alpha"),
        ("model.net.encoder.num_heads=5", "model.net.encoder"),
        ("pruning.threshold=1.5", "dropout"),
        ("pruning.target.start_frac=0.9", "pruning.target"),
        ("trainer.max_steps=0", "trainer.max_steps"),
        ("model.optimizer.lr=-1", "model.optimizer"),
        ("trainer.max_steps=abc", "trainer.max_steps"),
        ("pruning.alpha=abc", "pruning.alpha"),  # named as written, not as the model.alpha it feeds
        ("trainer.val_check_interval=0", "trainer.val_check_interval"),
        ("trainer.val_check_interval=2000", "trainer.val_check_interval"),  # after the 1500-step budget
        ("trainer.precision=17", "trainer.precision"),
        ("decoding=transducer", "decoding.greedy"),
        ("eval_checkpoint=middle", "eval_checkpoint"),
        ("callbacks=none", "export"),
        ("+callbacks.sparsity_monitor.every_n_step=3", "callbacks.sparsity_monitor.every_n_step"),
    ],
)
def test_invalid_values_name_their_key(override: str, key: str, tmp_path) -> None:
    cfg = compose_train([override, f"hydra.run.dir={tmp_path}"])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(cfg)


def test_encoder_is_built_on_meta_device_during_validation(tmp_path) -> None:
    cfg = compose_train(["model/encoder=l", f"hydra.run.dir={tmp_path}"])
    with torch.device("meta"):
        enc = instantiate(cfg.model.net.encoder)
    assert next(enc.parameters()).is_meta


def test_quickstart_experiment_is_the_default_run(tmp_path) -> None:
    """``experiment=quickstart`` only pins what ``scripts/train.py`` runs with no arguments."""
    common = [f"hydra.run.dir={tmp_path}", f"paths.data_dir={tmp_path}/data"]
    default = compose_train(common)
    pinned = compose_train([*common, "experiment=quickstart"])

    def plain(cfg) -> dict:
        return {
            key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
            for key in cfg
            if key != "hydra"
        }

    assert plain(pinned) == plain(default)


@pytest.mark.parametrize(
    ("objective", "ok"),
    [
        ("cer/test-clean", True),
        ("wer_greedy/dev-other", True),
        ("params/compacted_total", True),
        ("cer/test-nope", False),
        ("cer", False),
        ("accuracy/test-clean", False),
    ],
)
def test_objective_must_name_a_number_of_the_run(objective: str, ok: bool, tmp_path) -> None:
    cfg = compose_train([f"objective={objective}", f"hydra.run.dir={tmp_path}", f"paths.data_dir={tmp_path}/data"])
    if ok:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match="objective="):
            validate(cfg)


def test_an_unusable_eval_device_fails_before_the_run(tmp_path) -> None:
    cfg = compose_train(["eval_device=tpu", f"hydra.run.dir={tmp_path}", f"paths.data_dir={tmp_path}/data"])
    with pytest.raises(ConfigError, match="eval_device"):
        validate(cfg)
    if not torch.cuda.is_available():
        cfg = compose_train(["eval_device=cuda:0", f"hydra.run.dir={tmp_path}", f"paths.data_dir={tmp_path}/data"])
        with pytest.raises(ConfigError, match="CUDA is not available"):
            validate(cfg)


@pytest.mark.parametrize(
    ("overrides", "lr"),
    [([], 0.02), (["experiment=librispeech960_ctc"], 0.002), (["trainer.max_steps=6000"], 0.01)],
    ids=["quickstart", "librispeech960", "4x_steps"],
)
def test_the_keep_logits_noise_walk_is_the_same_whatever_the_run_length(overrides, lr, tmp_path) -> None:
    """The default logit optimiser's lr is walk / sqrt(max_steps): 0.02 at the quickstart's 1500 steps."""
    cfg = compose_train([*overrides, f"hydra.run.dir={tmp_path}", f"paths.data_dir={tmp_path}/data"])
    logits = [torch.zeros(3, requires_grad=True)]
    optimizer = instantiate(cfg.pruning.logit_optimizer)(logits)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr, rel=0.01)
    assert cfg.pruning.logit_scheduler is None
