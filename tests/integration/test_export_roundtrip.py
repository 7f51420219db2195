"""Round trip: train a few steps -> export -> load_model -> the masked model's transcripts; TorchScript
parity; the export and transcribe commands' configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from hydra import compose, initialize_config_dir

from conformer_prune.checkpoint import instantiate_node
from conformer_prune.cli.export import export
from conformer_prune.cli.transcribe import transcribe_files
from conformer_prune.data.features import FeatureExtractor
from conformer_prune.export import TORCHSCRIPT_FILE, export_checkpoint
from conformer_prune.inference import load_model, read_audio
from conformer_prune.models.ctc import ctc_greedy_ids
from conformer_prune.models.transducer import TransducerModel
from conformer_prune.pruning.compact import encoder_of
from tests.helpers import (
    TEXTS,
    StandInData,
    feature_config,
    net_config,
    save_checkpoint,
    set_keep,
    single_thread,  # noqa: F401 - autouse fixture
    train_tokenizer,
)

ROOT = Path(__file__).resolve().parents[2]


def waveform(seconds: float, sample_rate: int, seed: int, channels: int = 1) -> torch.Tensor:
    """``(C, N)`` tones + noise: speech-like enough for log-mel features."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    freqs = 200 + 1800 * torch.rand(3, generator=gen)
    tone = sum(torch.sin(2 * torch.pi * f * t) * (1 + torch.sin(2 * torch.pi * 3 * t)) for f in freqs) / 6
    return tone + 0.05 * torch.randn(channels, t.numel(), generator=gen)


def greedy_texts(net, features: torch.Tensor, lens: torch.Tensor, tokenizer) -> list[str]:
    with torch.no_grad():
        out, out_lens = net(features, lens)
        ids = net.greedy_decode(out, out_lens) if isinstance(net, TransducerModel) else ctc_greedy_ids(out, out_lens)
    return [tokenizer.decode(seq) for seq in ids]


def train_prune_export(head: str, tmp: Path, onnx: bool = False) -> SimpleNamespace:
    """Train a tiny model three steps, prune about half of every site, export it with real utterances."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer(tmp)
    features_cfg = feature_config(n_mels=20)
    extractor = FeatureExtractor.from_config(features_cfg)
    feats = [extractor(waveform(1.5 + 0.3 * i, 16000, seed=i)) for i in range(len(TEXTS))]
    lens = torch.tensor([f.size(0) for f in feats])
    features = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (B, T, F)
    tokens = [torch.tensor(tokenizer.encode(t)) for t in TEXTS]
    token_lens = torch.tensor([t.numel() for t in tokens])
    tokens = torch.nn.utils.rnn.pad_sequence(tokens, batch_first=True)

    config = net_config(head, tokenizer.vocab_size)
    net = instantiate_node(config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(3):
        optimizer.zero_grad()
        net.loss(features, lens, tokens, token_lens).backward()
        optimizer.step()
    rng = torch.Generator().manual_seed(0)
    for site in encoder_of(net).sites():
        set_keep(site.module, (torch.rand(site.module.num_units, generator=rng) < 0.5).tolist(), rng)
    net.eval()
    ckpt = save_checkpoint(tmp / "run" / "checkpoints" / "last.ckpt", net, config, tokenizer, features_cfg)
    batch = {"features": features, "feature_lens": lens, "texts": TEXTS}
    report = export_checkpoint(ckpt, tmp / "export", datamodule=StandInData([batch]), torchscript=True, onnx=onnx)
    return SimpleNamespace(
        head=head,
        tmp=tmp,
        ckpt=ckpt,
        out=tmp / "export",
        net=net,
        tokenizer=tokenizer,
        extractor=extractor,
        report=report,
    )


@pytest.fixture(scope="module")
def ctc(tmp_path_factory) -> SimpleNamespace:
    return train_prune_export("ctc", tmp_path_factory.mktemp("ctc"))


@pytest.fixture(scope="module")
def transducer(tmp_path_factory) -> SimpleNamespace:
    return train_prune_export("transducer", tmp_path_factory.mktemp("transducer"))


@pytest.fixture(params=["ctc", "transducer"])
def exported(request) -> SimpleNamespace:
    return request.getfixturevalue(request.param)


def test_exported_model_transcribes_like_the_masked_model(exported) -> None:
    report = exported.report
    assert report["verification"]["source"] == "real utterances: dev-clean" and report["notes"] == []
    assert report["params_after"] < report["params_before"] and report["max_abs_diff"] <= 1e-4

    loaded = load_model(exported.out)
    assert not loaded.net.training and type(loaded.net) is type(exported.net)
    waves = [waveform(1.2, 16000, 10), waveform(0.9, 8000, 11, channels=2), waveform(1.7, 22050, 12)]
    rates = [16000, 8000, 22050]
    feats = [exported.extractor(w, r) for w, r in zip(waves, rates)]  # the training front end
    lens = torch.tensor([f.size(0) for f in feats])
    expected = greedy_texts(
        exported.net, torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lens, exported.tokenizer
    )
    assert loaded.transcribe_batch(waves, rates) == expected
    assert [loaded.transcribe(w, r) for w, r in zip(waves, rates)] == expected
    assert any(expected)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_torchscript_matches_eager_on_a_new_length(exported) -> None:
    scripted = torch.jit.load(str(exported.out / TORCHSCRIPT_FILE))
    net = load_model(exported.out).net
    gen = torch.Generator().manual_seed(3)
    features, lens = torch.randn(3, 187, 20, generator=gen), torch.tensor([187, 140, 61])
    with torch.no_grad():
        (out, out_lens), (ref, ref_lens) = scripted(features, lens), net(features, lens)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        assert out_lens.tolist() == ref_lens.tolist()
        if exported.head == "transducer":
            pred = torch.randn(3, 1, 4, 8, generator=gen)
            torch.testing.assert_close(scripted.joint(ref[:, :, None], pred), net.joiner(ref[:, :, None], pred))
            state = torch.randn(1, 2, 8, generator=gen)
            tokens = torch.tensor([3, 0])
            got, want = scripted.predict(tokens, state, state), net.predictor.step(tokens, (state, state))
            torch.testing.assert_close(got[0], want[0])
            torch.testing.assert_close(got[1:], want[1])


def write_audio(tmp: Path) -> tuple[list[str], list[str]]:
    """Two good files (16 kHz mono FLAC, 8 kHz stereo WAV) and two bad ones (missing, not audio)."""
    good = [str(tmp / "a.flac"), str(tmp / "b.wav")]
    soundfile.write(good[0], waveform(1.1, 16000, 20)[0].numpy(), 16000)
    soundfile.write(good[1], waveform(0.8, 8000, 21, channels=2).T.numpy().astype(np.float32), 8000)
    (tmp / "broken.flac").write_bytes(b"fLaC but not really")
    return good, [str(tmp / "missing.wav"), str(tmp / "broken.flac")]


def test_transcribe_command_prints_each_file_and_reports_bad_ones(ctc, tmp_path, capsys, caplog) -> None:
    exported = ctc
    good, bad = write_audio(tmp_path)
    loaded = load_model(exported.out)
    expected = [f"{p}\t{loaded.transcribe(*read_audio(p))}" for p in good]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "transcribe", overrides=[f"model_path={exported.out}", f"audio=[{good[0]},{bad[0]},{bad[1]},{good[1]}]"]
        )
    caplog.set_level("INFO")
    assert transcribe_files(cfg) == 1
    assert capsys.readouterr().out.splitlines() == expected
    assert "missing.wav: no such file" in caplog.text and "broken.flac: unreadable audio" in caplog.text
    assert "b.wav: 2 channels, downmixed to mono" in caplog.text and "resampled from 8000 Hz to 16000 Hz" in caplog.text


def test_transcribe_script_keeps_stdout_for_transcripts(ctc, tmp_path) -> None:
    exported = ctc
    good, bad = write_audio(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "transcribe.py"),
            f"model_path={exported.out}",
            f"audio=[{good[1]},{bad[0]}]",
            "threads=1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert run.stdout == f"{good[1]}\t{load_model(exported.out).transcribe(*read_audio(good[1]))}\n"
    assert "missing.wav: no such file" in run.stderr and "downmixed to mono" in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "b.wav", "broken.flac"]  # wrote nothing


def test_export_command_config(transducer, tmp_path) -> None:
    exported = transducer
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "export",
            overrides=[
                f"ckpt_path={exported.ckpt}",
                f"out_dir={tmp_path / 'm'}",
                "torchscript=false",
                "threshold=0.5",
                "allow_generated=true",
            ],
        )
    report = export(cfg)
    assert report["threshold"] == 0.5 and report["params_after"] == exported.report["params_after"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.yaml",
        "model.safetensors",
        "report.json",
        "tokenizer.model",
    ]
    assert load_model(tmp_path / "m", decoder="beam").decoder.name == "beam4"


def test_load_model_needs_neither_lightning_nor_hydra(ctc, tmp_path) -> None:
    code = (
        "import sys, torch\n"
        "from conformer_prune import load_model\n"
        f"model = load_model({str(ctc.out)!r})\n"
        "print(model.transcribe(0.1 * torch.randn(2, 12000), 12000))\n"
        "print(sorted(m for m in ('lightning', 'hydra', 'omegaconf') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "[]"
