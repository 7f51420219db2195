"""Shared test helpers: keep patterns, non-trivial weights, the closed-form parameter count, and
hand-built training checkpoints (no Lightning run needed).

Imported as ``tests.helpers`` (the suite runs as ``python -m pytest`` from the repository root).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

ADAPTIVE = {"_target_": "conformer_prune.dropout.AdaptiveDropout", "_partial_": True, "init_keep_prob": 0.9}
STANDARD = {"_target_": "conformer_prune.dropout.StandardDropout", "_partial_": True, "drop_prob": 0.1}
TINY_ENCODER = {
    "_target_": "conformer_prune.models.ConformerEncoder",
    "input_dim": 20,
    "d_model": 16,
    "num_layers": 2,
    "num_heads": 2,
    "d_ff": 24,
    "kernel_size": 5,
    "subsampling_channels": 4,
    "dropout_rate": 0.1,
    "attention_dropout": 0.1,
    "layer_widths": None,
}
TEXTS = ["HELLO WORLD", "THE QUICK BROWN FOX", "JUMPS OVER THE LAZY DOG'S BACK"]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models on a shared 2-core machine run 20-100x faster on one intra-op thread (autouse where imported)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StrideEncoder(nn.Module):
    """Stand-in encoder for head tests: Conv1d (kernel 3, stride 2) + ReLU + Linear; halves the frames."""

    def __init__(self, input_dim: int = 8, d_model: int = 48) -> None:
        super().__init__()
        self.d_model = d_model
        self.conv = nn.Conv1d(input_dim, d_model, kernel_size=3, stride=2, padding=1)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T', D)
        return self.out(x), (lens - 1) // 2 + 1


def set_keep(site, keep: list[bool], rng: torch.Generator) -> None:
    """Kept units get random logits above 0 (σ>0.5), pruned ones below."""
    mag = torch.rand(len(keep), generator=rng) * 4 + 0.05
    with torch.no_grad():
        site.keep_logits.copy_(torch.where(torch.tensor(keep, dtype=torch.bool), mag, -mag))


def randomize_(module: nn.Module, rng: torch.Generator) -> None:
    """Non-trivial BatchNorm statistics and position biases (fresh BN is the identity and would hide bugs)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(0, 1, generator=rng)
                m.running_var.uniform_(0.5, 2.0, generator=rng)
                m.weight.normal_(1, 0.2, generator=rng)
                m.bias.normal_(0, 0.2, generator=rng)
        for name, p in module.named_parameters():
            if name.endswith("pos_bias_u") or name.endswith("pos_bias_v"):
                p.normal_(0, 0.5, generator=rng)


def closed_form_params(d: int, widths: list[dict], kernel: int, sub: int, feat: int) -> int:
    """Encoder parameter count from the per-layer widths alone."""
    f = ((feat - 3) // 2 + 1 - 3) // 2 + 1
    total = (9 * sub + sub) + (9 * sub * sub + sub) + (sub * f * d + d)  # front end
    for w in widths:
        ffn = sum(2 * d + (2 * d * u + u + d) for u in (w["ffn1"], w["ffn2"]))  # LN + linears
        sq, sv = sum(w["qk_dims"]), sum(w["v_dims"])
        attn = 2 * d + 2 * (d * sq + sq) + d * sq + 2 * sq + (d * sv + sv) + (sv * d + d)
        c = w["conv"]
        conv = 2 * d + (d * 2 * c + 2 * c) + c * kernel + 2 * c + (c * d + d)
        total += ffn + attn + conv + 2 * d  # + final LN
    return total


def net_config(head: str = "ctc", vocab_size: int = 30, site: dict | None = ADAPTIVE, **encoder) -> dict:
    """A resolved ``net_config`` as ``scripts/train.py`` stores it in checkpoints (tiny encoder)."""
    enc = {**copy.deepcopy(TINY_ENCODER), **encoder}
    from conformer_prune.sites import site_kinds

    for spec in site_kinds():
        enc[spec.dropout_arg] = copy.deepcopy(site)
    if head == "ctc":
        return {"_target_": "conformer_prune.models.ctc.CTCModel", "vocab_size": vocab_size, "blank": 0, "encoder": enc}
    return {
        "_target_": "conformer_prune.models.transducer.TransducerModel",
        "vocab_size": vocab_size,
        "pred_dim": 8,
        "pred_layers": 1,
        "joint_dim": 8,
        "blank": 0,
        "loss_backend": "torch",
        "encoder": enc,
    }


def train_tokenizer(tmp_path: Path):
    """A SentencePiece character model (blank 0, unk 1) trained on :data:`TEXTS`."""
    from conformer_prune.data.tokenizer import Tokenizer

    return Tokenizer.train(TEXTS, tmp_path / "tok" / "char.model", "char")


def feature_config(n_mels: int = 20, seed: int = 0) -> dict:
    """A feature extractor config with non-trivial CMVN statistics."""
    from conformer_prune.data.features import FeatureExtractor, FeatureSettings

    config = FeatureExtractor(FeatureSettings(n_mels=n_mels)).config()
    gen = torch.Generator().manual_seed(seed)
    config["cmvn"] = {
        "mean": (torch.randn(n_mels, generator=gen) - 5).tolist(),
        "std": (torch.rand(n_mels, generator=gen) + 1).tolist(),
        "num_frames": 1000,
    }
    return config


def prune_randomly_(net: nn.Module, keep_frac: float, seed: int) -> None:
    """Randomise BN statistics and give every adaptive site a random keep pattern (``keep_frac`` kept)."""
    from conformer_prune.pruning.compact import encoder_of

    rng = torch.Generator().manual_seed(seed)
    randomize_(net, rng)
    for site in encoder_of(net).sites():
        keep = (torch.rand(site.module.num_units, generator=rng) < keep_frac).tolist()
        set_keep(site.module, keep, rng)


def save_checkpoint(path: Path, net: nn.Module, config: dict, tokenizer, features: dict | None = None) -> Path:
    """Write what ``ASRTask`` checkpoints hold: ``net.``-prefixed weights, hyper-parameters, tokenizer bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {
                "alpha": 1e-4,
                "net_config": config,
                "feature_config": features if features is not None else feature_config(),
            },
            "tokenizer_model": tokenizer.model_bytes,
            "epoch": 0,
            "global_step": 3,
        },
        path,
    )
    return path


class StandInData:
    """What export needs from a data module (``setup``, ``eval_subsets``, ``eval_dataloader``).

    Args:
        batches: evaluation batches (dicts with ``features`` ``(B, T, F)`` and ``feature_lens``); ``None``
            generates one batch of ``input_dim`` features in :meth:`setup`.
        input_dim: feature dim ``F`` of the generated batch.
    """

    def __init__(self, batches: list[dict] | None = None, input_dim: int = 20) -> None:
        self.batches = batches
        self.input_dim = input_dim

    def setup(self, stage: str | None = None) -> None:
        if self.batches is None:
            gen = torch.Generator().manual_seed(7)
            lens = torch.tensor([90, 64])
            self.batches = [{"features": torch.randn(2, 90, self.input_dim, generator=gen), "feature_lens": lens}]

    def check(self, stage: str = "fit", **kwargs) -> None:
        """Nothing to check: the batches are in memory."""

    def restore(self, tokenizer=None, feature_config=None) -> None:
        """The batches are features already: nothing to restore."""

    def eval_subsets(self) -> list[str]:
        return ["dev-clean"]

    def eval_dataloader(self, subset: str) -> list[dict]:
        return self.batches


# -- running scripts as a user would, many at a time ----------------------------------------------------
TINY_TRAIN = ("scripts/train.py", "debug=fast", "model/encoder=tiny", "threads=1", "logger=csv")
"""A few steps of the tiny model on the embedded corpus (train -> evaluate -> export)."""
SCRIPT_PRELOAD = ["torch", "lightning", "hydra", "omegaconf", "rich", "conformer_prune.cli.validate",
                  "conformer_prune.cli.train", "conformer_prune.export", "conformer_prune.cli.evaluate",
                  "conformer_prune.console"]  # fmt: skip


def _script_child(root: str, argv: list[str], env: dict[str, str | None], out: str, err: str) -> None:
    """In a forked child: fds 1/2 to files, ``sys.argv``/env/cwd set, the script run as ``__main__``."""
    import os
    import runpy
    import sys

    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own stdout
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.chdir(root)
    sys.argv = list(argv)
    runpy.run_path(str(Path(root) / argv[0]), run_name="__main__")  # SystemExit carries the exit status


def run_scripts(
    root: Path,
    runs: list[tuple[list[str], dict[str, str | None]]],
    out_dir: Path,
    parallel: int = 2,
    timeout: float = 300.0,
) -> list[dict]:
    """Run ``scripts/*.py`` command lines (``[script, *overrides]``, extra environment) as separate processes,
    ``parallel`` at a time; returns ``{"rc", "stdout", "stderr"}`` per run, in order.

    The processes are forked from a multiprocessing *forkserver* that has imported torch, Lightning, Hydra
    and this package once (:data:`SCRIPT_PRELOAD`), so a run costs what the script does, not the ~5 s
    of imports; each is otherwise a fresh process running the script as ``__main__`` with its own
    ``sys.argv``, environment, stdout, stderr and exit status. A run past ``timeout`` seconds is killed
    (``rc`` ``None``).
    """
    import multiprocessing as mp
    import time

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(SCRIPT_PRELOAD)
    out_dir.mkdir(parents=True, exist_ok=True)
    pending = list(enumerate(runs))
    running: dict[int, Any] = {}
    codes: dict[int, int | None] = {}
    while pending or running:
        while pending and len(running) < parallel:
            i, (argv, env) = pending.pop(0)
            proc = ctx.Process(
                target=_script_child, args=(str(root), argv, env, str(out_dir / f"{i}.out"), str(out_dir / f"{i}.err"))
            )
            proc.start()
            running[i] = (proc, time.monotonic())
        for i, (proc, started) in list(running.items()):
            proc.join(timeout=0.05)
            if proc.exitcode is None and time.monotonic() - started > timeout:
                proc.kill()
                proc.join()
                codes[i] = None
                del running[i]
            elif proc.exitcode is not None:
                codes[i] = proc.exitcode
                del running[i]
    return [
        {
            "rc": codes[i],
            "stdout": (out_dir / f"{i}.out").read_text(errors="replace"),
            "stderr": (out_dir / f"{i}.err").read_text(errors="replace"),
        }
        for i in range(len(runs))
    ]


def tiny_tree_overrides(tree: Path, cache_dir: Path) -> list[str]:
    """``scripts/train.py`` overrides for a few-step run on the ``tiny_librispeech`` tree (conftest.py):
    its ``LibriSpeech`` directory ``tree``, a character tokenizer and CMVN cached in ``cache_dir``, the tiny
    encoder, one process thread, CSV logs and no rich console output."""
    return [
        "data=librispeech",
        f"paths.data_dir={tree.parent}",
        f"data.cache_dir={cache_dir}",
        "data.tokenizer.model_type=char",
        "data.num_workers=0",
        "data.pin_memory=false",
        "data.features.speed_perturb=null",
        "data.max_batch_seconds=2",
        "model/encoder=tiny",
        "logger=csv",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "threads=1",
    ]


def path_without(program: str, shadow: Path) -> str:
    """A ``PATH`` with every program of the current one except ``program`` (symlinked into ``shadow``).

    For tests that need a machine without an optional tool that this one has installed (flite): the
    subprocesses they start cannot find it either.
    """
    shadow.mkdir(parents=True, exist_ok=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for entry in Path(directory).iterdir():
            link = shadow / entry.name
            if entry.name != program and not link.exists() and not link.is_symlink() and os.access(entry, os.X_OK):
                link.symlink_to(entry)
    return str(shadow)
