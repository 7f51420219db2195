"""Export: the compacted model rebuilt from its config equals the masked model; checkpoints are checked."""

from __future__ import annotations

import copy
import functools
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conformer_prune.checkpoint import build_net, instantiate_node
from conformer_prune.dropout import NoDropout, UnitDropout
from conformer_prune.export import (
    ExportVerificationError,
    VerificationDataError,
    compacted_net_config,
    compare,
    export_checkpoint,
    verify,
)
from conformer_prune.inference import load_model
from conformer_prune.models.transducer import TransducerModel
from conformer_prune.pruning.compact import compact_copy, count_params, encoder_of, kept_units
from conformer_prune.sites import kinds
from tests.helpers import (
    STANDARD,
    closed_form_params,
    net_config,
    prune_randomly_,
    randomize_,
    save_checkpoint,
    set_keep,
    single_thread,  # noqa: F401 - autouse fixture
    train_tokenizer,
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(tmp_path_factory.mktemp("tok"))


def pruned_checkpoint(tmp_path, tokenizer, head: str = "ctc", keep_frac: float = 0.5, site=None):
    if site is None:
        config = net_config(head, tokenizer.vocab_size)
        net = instantiate_node(config)
        prune_randomly_(net, keep_frac, seed=1)
    else:
        config = net_config(head, tokenizer.vocab_size, site)
        net = instantiate_node(config)
        randomize_(net, torch.Generator().manual_seed(1))
    return save_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", net, config, tokenizer), net


@pytest.mark.parametrize("head", ["ctc", "transducer"])
@settings(max_examples=12, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_compacted_model_rebuilt_from_config_equals_masked_model(head: str, data, seed: int) -> None:
    torch.manual_seed(seed)
    rng = torch.Generator().manual_seed(seed)
    config = net_config(head, vocab_size=11)
    net = instantiate_node(config)
    randomize_(net, rng)
    net.eval()
    for site in encoder_of(net).sites():
        n = site.module.num_units
        set_keep(site.module, data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label=site.name), rng)
    features, lens = torch.randn(2, 40, 20), torch.tensor([40, 29])

    compacted = compact_copy(net)
    widths = encoder_of(compacted).layer_widths()
    stock = build_net({"net": compacted_net_config(config, widths)})  # stock code, config alone
    stock.load_state_dict(compacted.state_dict(), strict=True)
    stock.eval()

    expected, expected_lens = net(features, lens)
    out, out_lens = stock(features, lens)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert out_lens.tolist() == expected_lens.tolist()
    if isinstance(net, TransducerModel):
        pred = torch.randn(2, 1, 3, 8)
        torch.testing.assert_close(
            stock.joiner(out[:, :, None], pred), net.joiner(expected[:, :, None], pred), atol=1e-5, rtol=1e-5
        )
    assert all(type(m) is NoDropout for m in stock.modules() if isinstance(m, UnitDropout))
    encoder_params = closed_form_params(16, widths, kernel=5, sub=4, feat=20)
    assert count_params(stock.encoder) == encoder_params
    head_params = count_params(net) - count_params(net.encoder)  # the heads are not pruned
    assert count_params(stock) == encoder_params + head_params
    for layer, w in zip(stock.encoder.layers, widths):
        assert layer.attn.num_heads == len(w["v_dims"]) and all(v > 0 for v in w["v_dims"])


def test_instantiate_node_builds_partials_and_refuses_foreign_targets() -> None:
    factory = instantiate_node(
        {"_target_": "conformer_prune.dropout.StandardDropout", "_partial_": True, "drop_prob": 0.2}
    )
    assert isinstance(factory, functools.partial) and factory(5).drop_prob == 0.2
    assert (
        instantiate_node({"a": [{"_target_": "conformer_prune.dropout.NoDropout", "_args_": [3]}]})["a"][0].num_units
        == 3
    )
    with pytest.raises(ValueError, match="os.system.*outside"):
        instantiate_node({"_target_": "os.system", "_args_": ["true"]})
    with pytest.raises(ValueError, match="nothing_here"):
        instantiate_node({"_target_": "conformer_prune.dropout.nothing_here"})
    for key, value in (("_recursive_", False), ("_convert_", "none")):  # would be silently ignored
        with pytest.raises(ValueError, match=f"unsupported keys \\['{key}'\\].*hydra.utils.instantiate"):
            instantiate_node({"_target_": "conformer_prune.dropout.NoDropout", "_args_": [3], key: value})


def test_export_writes_a_smaller_verified_model_and_its_report(tmp_path, tokenizer) -> None:
    ckpt, net = pruned_checkpoint(tmp_path, tokenizer)
    out = tmp_path / "export"
    with pytest.raises(
        VerificationDataError, match=r"last\.ckpt: cannot verify the export on real utterances.*allow_generated=true"
    ):
        export_checkpoint(ckpt, out)  # no data recorded, no run config: refused, not verified on noise
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".export.tmp")]
    report = export_checkpoint(ckpt, out, allow_generated=True)

    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "model.safetensors",
        "report.json",
        "tokenizer.model",
    ]
    assert json.loads((out / "report.json").read_text()) == report
    assert report["kept"] == kept_units(net)
    assert list(report["kept"]) == list(kinds())
    assert all(len(pairs) == 2 for pairs in report["kept"].values())
    loaded = load_model(out)
    assert report["params_after"] == count_params(loaded.net) < report["params_before"]
    assert report["encoder_params_after"] == count_params(loaded.net.encoder) < report["encoder_params_before"]
    assert sum(report["site_params_after"].values()) < sum(report["site_params_before"].values())
    assert report["file_bytes"]["weights_after"] == (out / "model.safetensors").stat().st_size
    assert report["file_bytes"]["weights_after"] < report["file_bytes"]["weights_before"]
    assert report["macs_per_second_after"] < report["macs_per_second_before"] and report["mac_ratio"] > 1
    assert report["max_abs_diff"] <= 1e-4 and report["verification"]["transcripts_identical"]
    assert any("generated features" in n for n in report["notes"])  # no run config next to this checkpoint
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export.tmp")]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f.write_bytes(b"not a checkpoint"), "not a readable PyTorch checkpoint"),
        (lambda f: f.write_bytes(f.read_bytes()[:2000]), "not a readable PyTorch checkpoint"),
        (lambda f: torch.save({"epoch": 1}, f), "has no state_dict"),
    ],
    ids=["garbage", "truncated", "no-weights"],
)
def test_corrupt_checkpoint_names_the_file_and_writes_nothing(tmp_path, tokenizer, damage, message) -> None:
    ckpt, _ = pruned_checkpoint(tmp_path, tokenizer)
    damage(ckpt)
    with pytest.raises(ValueError, match=message) as err:
        export_checkpoint(ckpt, tmp_path / "export", allow_generated=True)
    assert str(ckpt) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_mismatched_checkpoint_names_the_file_and_writes_nothing(tmp_path, tokenizer) -> None:
    ckpt, net = pruned_checkpoint(tmp_path, tokenizer)
    wrong = net_config("ctc", tokenizer.vocab_size, d_ff=32)  # weights are for d_ff=24
    save_checkpoint(ckpt, net, wrong, tokenizer)
    with pytest.raises(ValueError, match="do not match hyper_parameters.net_config") as err:
        export_checkpoint(ckpt, tmp_path / "export", allow_generated=True)
    assert str(ckpt) in str(err.value) and "size mismatch" in str(err.value)
    save_checkpoint(ckpt, net, net_config("ctc", tokenizer.vocab_size + 1), tokenizer)
    with pytest.raises(ValueError, match=str(ckpt)):
        export_checkpoint(ckpt, tmp_path / "export", allow_generated=True)
    assert not (tmp_path / "export").exists()


def test_failed_verification_refuses_and_writes_nothing(tmp_path, tokenizer, monkeypatch) -> None:
    ckpt, _ = pruned_checkpoint(tmp_path, tokenizer)

    def broken_compact_copy(net):
        compacted = compact_copy(net)
        with torch.no_grad():
            compacted.encoder.layers[0].ffn1.linear2.weight.mul_(1.01)
        return compacted

    monkeypatch.setattr("conformer_prune.export.compact_copy", broken_compact_copy)
    with pytest.raises(ExportVerificationError, match="atol|transcripts differ"):
        export_checkpoint(ckpt, tmp_path / "export", allow_generated=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


class IdsTokenizer:
    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def test_comparison_reports_differing_transcripts_and_verification_refuses_them() -> None:
    net = instantiate_node(net_config("ctc", vocab_size=11))
    prune_randomly_(net, 0.5, seed=1)
    net.eval()
    compacted = compact_copy(net)
    batches = [{"features": torch.randn(3, 60, 20), "feature_lens": torch.tensor([60, 41, 30])}]
    same = compare(net, compacted, batches, IdsTokenizer())
    assert same["transcripts_identical"] and same["first_difference"] is None and same["utterances"] == 3
    assert verify(net, compacted, batches, IdsTokenizer(), atol=1e-4)["transcripts_identical"]
    forced = copy.deepcopy(compacted)  # emits token 1 at every frame; the masked model does not
    with torch.no_grad():
        forced.head.bias[1] += 1e3
    other = compare(net, forced, batches, IdsTokenizer())
    assert not other["transcripts_identical"]
    index, masked_text, compacted_text = other["first_difference"]
    assert index == 0 and set(compacted_text.split()) == {"1"} and masked_text != compacted_text
    with pytest.raises(ExportVerificationError, match=r"greedy transcripts differ \(utterance 0\)"):
        verify(net, forced, batches, IdsTokenizer(), atol=1e9)


def test_non_empty_out_dir_needs_overwrite_and_overwrite_replaces_only_an_export(tmp_path, tokenizer) -> None:
    ckpt, _ = pruned_checkpoint(tmp_path, tokenizer)
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="overwrite=true"):
        export_checkpoint(ckpt, out, allow_generated=True)
    # a directory it did not write is never deleted
    with pytest.raises(ValueError, match=r"not an export directory \(keep\.txt, no config\.yaml\)"):
        export_checkpoint(ckpt, out, allow_generated=True, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    export_checkpoint(ckpt, out, allow_generated=True)
    before = (out / "report.json").stat().st_mtime_ns
    export_checkpoint(ckpt, out, allow_generated=True, overwrite=True, torchscript=True)  # an export is replaced
    assert (out / "model.torchscript.pt").is_file() and (out / "report.json").stat().st_mtime_ns >= before
    (out / "config.yaml").write_text("format: something-else\n")
    with pytest.raises(ValueError, match="not an export directory"):
        export_checkpoint(ckpt, out, allow_generated=True, overwrite=True)  # the marker is part of the proof
    assert (out / "model.safetensors").is_file()


def test_model_without_adaptive_dropout_exports_dense_with_a_note(tmp_path, tokenizer) -> None:
    ckpt, net = pruned_checkpoint(tmp_path, tokenizer, site=STANDARD)
    report = export_checkpoint(ckpt, tmp_path / "export", allow_generated=True)
    assert any("without adaptive dropout" in n and "StandardDropout x10" in n for n in report["notes"])
    assert report["params_after"] == report["params_before"] == count_params(net)
    assert all(k == t for pairs in report["kept"].values() for k, t in pairs)
    assert report["mac_ratio"] == pytest.approx(1.0)
    assert load_model(tmp_path / "export").net.encoder.layer_widths() == net.encoder.layer_widths()


def test_threshold_overrides_the_trained_one(tmp_path, tokenizer) -> None:
    ckpt, _ = pruned_checkpoint(tmp_path, tokenizer)
    # every σ(β) >= 0: nothing pruned
    report = export_checkpoint(ckpt, tmp_path / "all", allow_generated=True, threshold=0.0)
    assert report["threshold"] == 0.0 and report["params_after"] == report["params_before"] - report["strategy_params"]
    assert any("no unit has a retention probability below" in n for n in report["notes"])
    with pytest.raises(ValueError, match="threshold must be in"):
        export_checkpoint(ckpt, tmp_path / "bad", allow_generated=True, threshold=1.5)


def test_verification_rebuilds_the_runs_data_module_from_its_hydra_config(tmp_path, tokenizer) -> None:
    ckpt, _ = pruned_checkpoint(tmp_path, tokenizer)
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text("data:\n  _target_: tests.helpers.StandInData\n")
    report = export_checkpoint(ckpt, tmp_path / "export")
    assert report["verification"]["source"] == "real utterances: dev-clean"
    assert report["verification"]["utterances"] == 2 and report["notes"] == []
