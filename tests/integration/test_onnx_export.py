"""ONNX export: the compacted tiny model's graphs run by onnxruntime match PyTorch (any batch, any length),
a wrong graph is refused, and an export with onnx=true transcribes through transcribe.py backend=onnx."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import onnx
import pytest
import torch
from hydra import compose, initialize_config_dir

from conformer_prune.checkpoint import instantiate_node
from conformer_prune.cli.transcribe import transcribe_files
from conformer_prune.inference import load_model
from conformer_prune.onnx_export import (
    CTC_FILES,
    TRANSDUCER_FILES,
    OnnxModel,
    OnnxVerificationError,
    compare_onnx,
    to_onnx,
    verify_onnx,
)
from conformer_prune.pruning.compact import compact_copy, encoder_of
from tests.helpers import net_config, randomize_, set_keep, single_thread  # noqa: F401 - autouse fixture
from tests.integration.test_export_roundtrip import train_prune_export, write_audio

ROOT = Path(__file__).resolve().parents[2]


class IdsTokenizer:
    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def pruned_compacted(head: str, seed: int = 0) -> torch.nn.Module:
    """A tiny compacted model with about half of every site pruned (heads of different widths)."""
    torch.manual_seed(seed)
    net = instantiate_node(net_config(head, 30))
    rng = torch.Generator().manual_seed(seed)
    randomize_(net, rng)
    for site in encoder_of(net).sites():
        set_keep(site.module, (torch.rand(site.module.num_units, generator=rng) < 0.5).tolist(), rng)
    return compact_copy(net.eval())


@pytest.mark.parametrize("head", ["ctc", "transducer"])
def test_onnxruntime_matches_pytorch_on_new_batch_sizes_and_lengths(head: str) -> None:
    net = pruned_compacted(head)
    assert any(len(set(layer.attn.qk_dims)) > 1 for layer in encoder_of(net).layers)  # the per-head path
    graphs = to_onnx(net, input_dim=20)
    assert list(graphs) == list(CTC_FILES if head == "ctc" else TRANSDUCER_FILES)
    for data in graphs.values():
        onnx.checker.check_model(onnx.load_model_from_string(data))
    runner = OnnxModel(graphs, net, threads=1)
    gen = torch.Generator().manual_seed(5)
    for lens in ([400, 233, 9], [57]):  # longer than the trace example (160 frames), other batch sizes
        features, feature_lens = torch.randn(len(lens), max(lens), 20, generator=gen), torch.tensor(lens)
        with torch.no_grad():
            ref, ref_lens = net(features, feature_lens)
        out, out_lens = runner(features, feature_lens)
        assert out_lens.tolist() == ref_lens.tolist()
        valid = torch.arange(ref.size(1))[None, :] < ref_lens[:, None]
        torch.testing.assert_close(out[valid], ref[valid], atol=1e-5, rtol=1e-5)
        assert runner.transcribe_ids(features, feature_lens) == net.greedy_decode(ref, ref_lens)
    batch = {"features": torch.randn(2, 80, 20, generator=gen), "feature_lens": torch.tensor([80, 44])}
    report = verify_onnx(net, graphs, [batch], IdsTokenizer(), atol=1e-4, input_dim=20)
    assert report["transcripts_identical"] and report["max_abs_diff"] <= 1e-4 and report["utterances"] == 5


def test_verification_refuses_a_graph_of_another_model() -> None:
    net, other = pruned_compacted("ctc", seed=0), pruned_compacted("ctc", seed=1)
    batch = {"features": torch.randn(2, 80, 20), "feature_lens": torch.tensor([80, 44])}
    with pytest.raises(OnnxVerificationError):
        verify_onnx(net, to_onnx(other, input_dim=20), [batch], IdsTokenizer(), atol=1e-4, input_dim=20)


def test_comparison_reports_differing_transcripts_and_verification_refuses_them() -> None:
    net = pruned_compacted("ctc")
    graphs = to_onnx(net, input_dim=20)
    batch = {"features": torch.randn(2, 80, 20), "feature_lens": torch.tensor([80, 44])}
    same = compare_onnx(net, graphs, [batch], IdsTokenizer(), input_dim=20)
    assert same["transcripts_identical"] and same["first_difference"] is None and same["utterances"] == 5
    forced = copy.deepcopy(net)  # PyTorch now emits token 1 at every frame; the graphs do not
    with torch.no_grad():
        forced.head.bias[1] += 1e3
    other = compare_onnx(forced, graphs, [batch], IdsTokenizer(), input_dim=20)
    assert not other["transcripts_identical"]
    index, torch_text, onnx_text = other["first_difference"]
    assert index == 0 and set(torch_text.split()) == {"1"} and onnx_text != torch_text
    with pytest.raises(OnnxVerificationError, match="greedy transcripts differ"):
        verify_onnx(forced, graphs, [batch], IdsTokenizer(), atol=1e9, input_dim=20)


@pytest.fixture(scope="module")
def ctc_onnx(tmp_path_factory):
    return train_prune_export("ctc", tmp_path_factory.mktemp("ctc_onnx"), onnx=True)


def test_export_with_onnx_writes_verified_graphs_and_transcribes_with_onnxruntime(ctc_onnx, tmp_path, capsys) -> None:
    report = ctc_onnx.report
    assert report["onnx"]["transcripts_identical"] and report["onnx"]["max_abs_diff"] <= 1e-4
    assert report["onnx"]["utterances"] == 3 + 3  # the verification utterances + a generated batch
    assert (ctc_onnx.out / "model.onnx").stat().st_size == report["file_bytes"]["model.onnx"]
    good, _ = write_audio(tmp_path)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfgs = [
            compose(
                "transcribe", overrides=[f"model_path={ctc_onnx.out}", f"audio=[{good[0]},{good[1]}]", f"backend={b}"]
            )
            for b in ("torch", "onnx")
        ]
    outputs = []
    for cfg in cfgs:
        assert transcribe_files(cfg) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[1].splitlines()) == 2
    assert isinstance(load_model(ctc_onnx.out, backend="onnx").encode, OnnxModel)


def test_onnx_backend_names_the_missing_graph_and_the_fix(ctc_onnx, tmp_path) -> None:
    out = shutil.copytree(ctc_onnx.out, tmp_path / "export")
    (out / "model.onnx").unlink()  # as exported without onnx=true
    with pytest.raises(ValueError, match=r"model\.onnx does not exist: re-export .* onnx=true"):
        load_model(out, backend="onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        load_model(out, backend="tensorrt")
