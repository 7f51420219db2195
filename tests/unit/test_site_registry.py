"""A new site kind is its host module + one registry entry: the test tree adds one and everything handles it.

The toy kind is a bottleneck adapter (``LayerNorm -> Linear(D -> U) -> ReLU -> site -> Linear(U -> D)``) added
to every block's residual stream, registered with :func:`conformer_prune.sites.registered` for the test only.
The encoder builds, names and compacts it, compaction counts it in closed form, the exporter writes, verifies
and reloads it, config validation instantiates its strategy, and the baselines score, count and scale it.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from conformer_prune.dropout import AdaptiveDropout, NoDropout, UnitDropout
from conformer_prune.models.conformer import ConformerEncoder
from conformer_prune.models.slicing import slice_linear
from conformer_prune.sites import SiteKind, kinds, registered, site_kinds
from tests.helpers import (
    StandInData,
    net_config,
    prune_randomly_,
    save_checkpoint,
    single_thread,  # noqa: F401 - autouse fixture
    train_tokenizer,
)


class ToyAdapter(nn.Module):
    """``(B, T, D) -> (B, T, D)``: a bottleneck whose ``U`` hidden units are a prunable site."""

    def __init__(self, d_model: int, width: int, dropout_rate: float, dropout) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.down = nn.Linear(d_model, width)
        self.unit_dropout: UnitDropout = (dropout or NoDropout)(width)
        self.up = nn.Linear(width, d_model)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.up(self.unit_dropout(torch.relu(self.down(self.norm(x))))))  # (B, T, D)

    @torch.no_grad()
    def compact_(self) -> None:
        gate = self.unit_dropout.eval_gate().to(self.down.weight)
        keep = gate != 0
        self.down = slice_linear(self.down, out_keep=keep)
        self.up = slice_linear(self.up, in_keep=keep, in_scale=gate[keep])
        self.unit_dropout = NoDropout(int(keep.sum()))


TOY = SiteKind(
    kind="toy",
    config_key="toy",
    host="toy",
    strategy="unit_dropout",
    width_key="toy",
    group="adapter",
    width=lambda adapter: adapter.down.out_features,
    dense_width=lambda g: int(g["d_model"]) // 2,
    unit_cost=lambda adapter: adapter.down.in_features + 1 + adapter.up.out_features,
    owned=lambda adapter: list(adapter.parameters()),
    score=lambda adapter: adapter.down.weight.norm(dim=1) * adapter.up.weight.norm(dim=0),
    build=ToyAdapter,
)
GEOMETRY = dict(input_dim=20, d_model=16, num_layers=2, num_heads=2, d_ff=24, kernel_size=5, subsampling_channels=4)


@pytest.fixture
def toy_site():
    with registered(TOY):
        yield TOY
    assert "toy" not in kinds()


def test_the_encoder_builds_names_and_sizes_the_new_site(toy_site) -> None:
    enc = ConformerEncoder(**GEOMETRY, **{spec.dropout_arg: AdaptiveDropout for spec in site_kinds()})
    assert kinds()[-1] == "toy"
    toy = [s for s in enc.sites() if s.kind == "toy"]
    assert [s.name for s in toy] == ["layers.0.toy", "layers.1.toy"]
    assert all(isinstance(s.module, AdaptiveDropout) and s.module.num_units == 8 for s in toy)
    assert all(layer.widths()["toy"] == 8 for layer in enc.layers)
    assert sum(isinstance(m, UnitDropout) for m in enc.modules()) == len(enc.sites()) == 2 * len(kinds())
    with pytest.raises(ValueError, match=r"unknown argument.*'tyo_dropout'.*toy_dropout"):
        ConformerEncoder(**GEOMETRY, tyo_dropout=AdaptiveDropout)


def test_compaction_removes_its_pruned_units_exactly_and_counts_them_in_closed_form(toy_site) -> None:
    from conformer_prune.pruning.compact import compact_copy, count_params, params_if_compacted

    enc = ConformerEncoder(**GEOMETRY, **{spec.dropout_arg: AdaptiveDropout for spec in site_kinds()})
    prune_randomly_(enc, keep_frac=0.5, seed=3)
    enc.eval()
    x, lens = torch.randn(2, 40, 20), torch.tensor([40, 31])
    compacted = compact_copy(enc)
    torch.testing.assert_close(compacted(x, lens)[0], enc(x, lens)[0], atol=1e-5, rtol=1e-5)
    kept = [int(s.module.keep_mask().sum()) for s in enc.sites() if s.kind == "toy"]
    assert [layer.widths()["toy"] for layer in compacted.layers] == kept and min(kept) < 8
    assert count_params(compacted) == params_if_compacted(enc) < count_params(enc)
    rebuilt = ConformerEncoder(**GEOMETRY, layer_widths=compacted.layer_widths())
    rebuilt.load_state_dict(compacted.state_dict(), strict=True)


def test_the_export_writes_verifies_and_reloads_it(toy_site, tmp_path) -> None:
    from conformer_prune.checkpoint import instantiate_node
    from conformer_prune.export import export_checkpoint
    from conformer_prune.inference import load_model
    from conformer_prune.pruning.compact import kept_units

    tokenizer = train_tokenizer(tmp_path)
    config = net_config("ctc", tokenizer.vocab_size)
    assert "toy_dropout" in config["encoder"]  # the test helpers derive the site keys from the registry
    net = instantiate_node(config)
    prune_randomly_(net, keep_frac=0.5, seed=4)
    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", net, config, tokenizer)
    data = StandInData()
    data.setup()
    report = export_checkpoint(ckpt, tmp_path / "export", datamodule=data)
    assert report["kept"]["toy"] == kept_units(net)["toy"]
    assert report["site_params_after"]["toy"] < report["site_params_before"]["toy"]
    loaded = load_model(tmp_path / "export")
    assert loaded.config["net"]["encoder"]["toy_dropout"] is None
    assert [w["toy"] for w in loaded.net.encoder.layer_widths()] == [k for k, _ in report["kept"]["toy"]]
    x, lens = torch.randn(1, 50, 20), torch.tensor([50])
    torch.testing.assert_close(loaded.net(x, lens)[0], net.eval()(x, lens)[0], atol=1e-4, rtol=0)


def test_validation_instantiates_its_strategy(toy_site, tmp_path) -> None:
    from conformer_prune.cli.validate import ConfigError, validate
    from tests.unit.config.test_compose import compose_train

    common = [
        f"hydra.run.dir={tmp_path}",
        f"paths.data_dir={tmp_path}/data",
        "+model.net.encoder.toy_dropout=${dropout.toy}",
    ]
    validate(compose_train([*common, "+dropout.toy=${dropout.strategy}"]))
    bad = compose_train([*common, "+dropout.toy={_target_: conformer_prune.dropout.AdaptiveDropout, _partial_: true, "
                                  "init_keep_prob: 2.0}"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"dropout\.toy.*init_keep_prob"):
        validate(bad)


def test_the_baselines_score_count_and_scale_it(toy_site) -> None:
    from conformer_prune import baselines
    from conformer_prune.dropout.fixed_mask import FixedMaskDropout

    enc = ConformerEncoder(**GEOMETRY, **{spec.dropout_arg: FixedMaskDropout for spec in site_kinds()})
    counts = baselines.counts_from_ratio(enc, 0.5)
    assert counts["toy"] == [[4, 8], [4, 8]]
    applied = baselines.magnitude_prune_(enc, counts)
    scores = baselines.unit_scores(enc)[(0, "toy")]
    kept = enc.layers[0].toy.unit_dropout.mask.bool()
    assert applied["toy"] == counts["toy"] and scores[kept].min() >= scores[~kept].max()
    widths, factor, params = baselines.scale_to_params(GEOMETRY, baselines.encoder_params(GEOMETRY, None) // 2)
    assert widths[0]["toy"] == max(1, round(factor * 8))
    assert params == baselines.encoder_params(GEOMETRY, widths)


def test_the_report_names_an_ablation_at_the_new_site(toy_site) -> None:
    from conformer_prune.report import method_of

    adaptive = {"_target_": "conformer_prune.dropout.AdaptiveDropout", "_partial_": True}
    standard = {"_target_": "conformer_prune.dropout.StandardDropout", "_partial_": True}
    dropout = {
        "strategy": adaptive,
        "fallback": standard,
        **{key: "${.fallback}" for key in ("ffn", "query", "value", "conv")},
    }
    method = method_of({"dropout": {**dropout, "toy": "${.strategy}"}}, {"dropout": "adaptive_toy"})
    assert (method.label, method.kind, method.uses_alpha) == ("adaptive dropout (adapter only)", "ablation", True)
