"""Baselines: width resolvers, uniform scaling to a parameter budget, magnitude pruning with fixed masks."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

import conformer_prune.baselines as baselines
from conformer_prune.callbacks.magnitude import MagnitudePruneInit
from conformer_prune.checkpoint import instantiate_node
from conformer_prune.dropout.fixed_mask import FixedMaskDropout
from conformer_prune.export import export_checkpoint
from conformer_prune.inference import load_model
from conformer_prune.pruning.compact import compact_copy, count_params, encoder_of, kept_units
from tests.helpers import (
    STANDARD,
    feature_config,
    net_config,
    prune_randomly_,
    randomize_,
    save_checkpoint,
    single_thread,  # noqa: F401 - autouse fixture
    train_tokenizer,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
FIXED = {"_target_": "conformer_prune.dropout.fixed_mask.FixedMaskDropout", "_partial_": True, "drop_prob": 0.1}
TINY_PRESET = {"input_dim": 80, "d_ff": 32}  # conf/model/encoder/tiny.yaml on top of tests.helpers.TINY_ENCODER
QUICKSTART = {
    "input_dim": 80,
    "d_model": 144,
    "num_layers": 4,
    "num_heads": 4,
    "d_ff": 576,
    "kernel_size": 15,
    "subsampling_channels": 64,
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def pruned_run(tmp_path_factory, tokenizer) -> SimpleNamespace:
    """A tiny adaptive-dropout run (the conf tiny preset's geometry), about half pruned, and its export."""
    root = tmp_path_factory.mktemp("adaptive")
    config = net_config("ctc", tokenizer.vocab_size, **TINY_PRESET)
    net = instantiate_node(copy.deepcopy(config))
    prune_randomly_(net, 0.5, seed=3)
    ckpt = save_checkpoint(root / "checkpoints" / "last.ckpt", net, config, tokenizer, feature_config(n_mels=80))
    report = export_checkpoint(ckpt, root / "export", allow_generated=True)
    return SimpleNamespace(root=root, export=root / "export", report=report, net=net)


def compose_train(overrides: list[str], tmp_path: Path):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.run.dir={tmp_path}"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg


# -- dense same size -------------------------------------------------------------------------------
def test_dense_same_size_trains_the_compacted_widths(pruned_run, tmp_path) -> None:
    cfg = compose_train(
        ["experiment=dense_same_size", "model/encoder=tiny", f"widths_from={pruned_run.export}"], tmp_path
    )
    assert cfg.method == "dense_same_size"
    encoder = instantiate(cfg.model.net.encoder)
    assert encoder.layer_widths() == load_model(pruned_run.export).net.encoder.layer_widths()
    assert all(type(site.module).__name__ == "StandardDropout" for site in encoder.sites())
    assert count_params(encoder) == pruned_run.report["encoder_params_after"]
    # the run directory works as well as its export
    assert baselines.widths_from(pruned_run.root) == encoder.layer_widths()


def test_widths_from_refuses_another_geometry_and_missing_exports(pruned_run, tmp_path) -> None:
    cfg = compose_train(
        ["experiment=dense_same_size", "model/encoder=quickstart", f"widths_from={pruned_run.export}"], tmp_path
    )
    with pytest.raises(Exception, match=r"widths_from=.*d_model: 16 there, 144 here"):
        OmegaConf.to_container(cfg.model.net.encoder, resolve=True)
    with pytest.raises(ValueError, match="widths_from=.*not an export directory"):
        baselines.widths_from(tmp_path)


def test_baseline_presets_compose_without_a_source_and_refuse_to_train(tmp_path) -> None:
    for experiment, keys in (("dense_same_size", ["widths_from"]), ("dense_uniform", ["target_params", "params_from"])):
        cfg = compose_train([f"experiment={experiment}", "model/encoder=tiny"], tmp_path)
        assert cfg.model.net.encoder.layer_widths is None  # composes: the full-size architecture
        check = instantiate(cfg.callbacks.require_source)
        with pytest.raises(ValueError, match=r"=\.\.\. or ".join(keys)):
            check.setup(None, None, "fit")
        assert any("RegisterResolvers" in c._target_ for c in cfg.hydra.callbacks.values())
    cfg = compose_train(["experiment=dense_same_size", "model/encoder=tiny", "widths_from=/some/export"], tmp_path)
    instantiate(cfg.callbacks.require_source).setup(None, None, "fit")  # set: no error


# -- dense uniform ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.8])
def test_uniform_scaling_hits_the_target_within_one_percent(fraction: float) -> None:
    dense = baselines.encoder_params(QUICKSTART, None)
    target = int(fraction * dense)
    widths, factor, params = baselines.scale_to_params(QUICKSTART, target)
    assert abs(params - target) <= 0.01 * target
    assert params == baselines.encoder_params(QUICKSTART, widths)
    # one factor for every site of every layer
    d_head = QUICKSTART["d_model"] // QUICKSTART["num_heads"]
    for layer in widths:
        assert layer == widths[0]
        assert layer["ffn1"] == layer["ffn2"] == round(factor * QUICKSTART["d_ff"])
        assert layer["qk_dims"] == layer["v_dims"] == [round(factor * d_head)] * QUICKSTART["num_heads"]
        assert layer["conv"] == round(factor * QUICKSTART["d_model"])


def test_closed_form_count_equals_the_built_encoder() -> None:
    g = baselines.geometry(QUICKSTART)
    for factor in (0.1, 0.37, 1.0):
        layer = baselines.uniform_widths(g, factor)[0]
        assert baselines._count_linear(g, layer) == baselines.encoder_params(g, baselines.uniform_widths(g, factor))


def test_uniform_target_out_of_range_is_an_error() -> None:
    dense = baselines.encoder_params(QUICKSTART, None)
    with pytest.raises(ValueError, match="target_params"):
        baselines.scale_to_params(QUICKSTART, dense + 1)
    with pytest.raises(ValueError, match="target_params or params_from, not both"):
        baselines.target_from(1000, "/somewhere")


def test_dense_uniform_matches_an_exports_encoder_size(pruned_run, tmp_path) -> None:
    cfg = compose_train(
        ["experiment=dense_uniform", "model/encoder=tiny", f"params_from={pruned_run.export}"], tmp_path
    )
    encoder = instantiate(cfg.model.net.encoder)
    target = pruned_run.report["encoder_params_after"]
    tiny = TINY_PRESET | {"d_model": 16, "num_layers": 2, "num_heads": 2, "kernel_size": 5, "subsampling_channels": 4}
    _, _, best = baselines.scale_to_params(tiny, target)
    assert count_params(encoder) == best
    assert abs(best - target) <= 0.05 * target  # the tiny model's rounding steps are coarse


# -- magnitude pruning -----------------------------------------------------------------------------
def fixed_mask_net(tokenizer, seed: int = 0):
    config = net_config("ctc", tokenizer.vocab_size, FIXED, **TINY_PRESET)
    net = instantiate_node(copy.deepcopy(config))
    randomize_(net, torch.Generator().manual_seed(seed))
    return config, net


def test_unit_scores_follow_the_documented_norms(tokenizer) -> None:
    _, net = fixed_mask_net(tokenizer)
    layer = net.encoder.layers[1]
    scores = baselines.unit_scores(net.encoder)
    ffn = layer.ffn2
    expected = torch.stack([ffn.linear1.weight[j].norm() * ffn.linear2.weight[:, j].norm() for j in range(32)])
    torch.testing.assert_close(scores[(1, "ffn2")], expected.detach())
    attn = layer.attn
    torch.testing.assert_close(
        scores[(1, "query")], (attn.linear_q.weight.norm(dim=1) * attn.linear_k.weight.norm(dim=1)).detach()
    )
    conv = layer.conv
    j = 3
    glu = torch.cat([conv.pointwise_in.weight[j], conv.pointwise_in.weight[j + 16]])
    assert scores[(1, "conv")][j].item() == pytest.approx((glu.norm() * conv.pointwise_out.weight[:, j].norm()).item())


def test_top_k_keeps_the_largest() -> None:
    keep = baselines.top_k_mask(torch.tensor([0.1, 5.0, 3.0, 0.2, 5.0]), 3)
    assert keep.tolist() == [False, True, True, False, True]
    with pytest.raises(ValueError):
        baselines.top_k_mask(torch.ones(3), 4)


def test_magnitude_init_loads_dense_weights_and_matches_kept_counts(pruned_run, tokenizer, tmp_path) -> None:
    dense_config = net_config("ctc", tokenizer.vocab_size, STANDARD, **TINY_PRESET)
    dense = instantiate_node(copy.deepcopy(dense_config))
    randomize_(dense, torch.Generator().manual_seed(5))
    dense_ckpt = save_checkpoint(
        tmp_path / "dense" / "checkpoints" / "last.ckpt", dense, dense_config, tokenizer, feature_config(n_mels=80)
    )
    config, net = fixed_mask_net(tokenizer, seed=9)
    callback = MagnitudePruneInit(init_from=str(dense_ckpt), counts_from=str(pruned_run.export))
    callback.setup(None, SimpleNamespace(net=net), "fit")

    dense_state = dense.state_dict()
    for name, value in net.state_dict().items():
        if not name.endswith(".mask"):
            torch.testing.assert_close(value, dense_state[name], msg=name)
    assert kept_units(net) == pruned_run.report["kept"]
    # the kept units are the top-k by magnitude
    scores = baselines.unit_scores(net.encoder)
    for site in net.encoder.sites():
        keep = site.module.keep_mask()
        if 0 < keep.sum() < keep.numel():
            assert scores[(site.layer, site.kind)][keep].min() >= scores[(site.layer, site.kind)][~keep].max()

    # the exporter compacts it like an adaptive run: same per-site counts, verified
    ckpt = save_checkpoint(tmp_path / "ft" / "checkpoints" / "last.ckpt", net, config, tokenizer, feature_config(80))
    report = export_checkpoint(ckpt, tmp_path / "ft" / "export", allow_generated=True)
    assert report["kept"] == pruned_run.report["kept"]
    assert report["params_after"] < report["params_before"]
    assert not any("trained without adaptive dropout" in n for n in report["notes"])


def test_magnitude_init_errors_name_the_key(pruned_run, tokenizer, tmp_path) -> None:
    _, net = fixed_mask_net(tokenizer)
    module = SimpleNamespace(net=net)
    with pytest.raises(ValueError, match="init_from"):
        MagnitudePruneInit(counts_from=str(pruned_run.export)).setup(None, module, "fit")
    with pytest.raises(ValueError, match="init_from=.*no training checkpoint"):
        MagnitudePruneInit(init_from=str(tmp_path), keep_ratio=0.5).setup(None, module, "fit")
    wide_config = net_config("ctc", tokenizer.vocab_size, STANDARD, input_dim=80, d_ff=48)
    wide = save_checkpoint(tmp_path / "wide.ckpt", instantiate_node(copy.deepcopy(wide_config)), wide_config, tokenizer)
    with pytest.raises(ValueError, match="init_from=.*do not fit"):
        MagnitudePruneInit(init_from=str(wide), keep_ratio=0.5).setup(None, module, "fit")
    with pytest.raises(ValueError, match="not both"):
        MagnitudePruneInit(init_from="x", counts_from="y", keep_ratio=0.5)
    adaptive_net = instantiate_node(net_config("ctc", tokenizer.vocab_size, **TINY_PRESET))
    with pytest.raises(ValueError, match="dropout=fixed_mask"):
        baselines.magnitude_prune_(adaptive_net.encoder, pruned_run.report["kept"])


def test_keep_ratio_prunes_every_site_alike(tokenizer) -> None:
    _, net = fixed_mask_net(tokenizer)
    counts = baselines.counts_from_ratio(net.encoder, 0.5)
    baselines.magnitude_prune_(net.encoder, counts)
    assert all(k == t // 2 for pairs in kept_units(net).values() for k, t in pairs)
    widths = encoder_of(compact_copy(net)).layer_widths()
    assert widths[0]["ffn1"] == 16 and widths[0]["conv"] == 8


# -- the fixed-mask strategy -----------------------------------------------------------------------
def test_fixed_mask_zeroes_pruned_units_in_training_and_eval() -> None:
    site = FixedMaskDropout(6, drop_prob=0.5)
    site.set_mask(torch.tensor([1, 0, 1, 1, 0, 1]))
    x = torch.randn(4, 10, 6)
    for mode in (True, False):
        y = site.train(mode)(x)
        assert (y[..., [1, 4]] == 0).all()
    torch.testing.assert_close(site.eval()(x), x * site.eval_gate())
    assert site.keep_prob().tolist() == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    other = FixedMaskDropout(6)
    other.load_state_dict(site.state_dict())  # the mask travels in checkpoints
    assert torch.equal(other.eval_gate(), site.eval_gate())
    with pytest.raises(ValueError, match="shape"):
        site.set_mask(torch.ones(5))
    with pytest.raises(ValueError, match="drop_prob"):
        FixedMaskDropout(3, drop_prob=1.0)
