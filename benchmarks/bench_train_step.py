"""Training step of our Conformer blocks vs ``torchaudio.models.Conformer`` of the same size, side by side.

Blocks only (no subsampling front end, no head), forward + backward of a mean-square loss on a batch of
``--batch`` utterances of ``--seconds`` (``8 x 10 s`` = 8 x 249 frames after 4x subsampling), at the
quickstart size (4 x 144, kernel 15) and the S preset (16 x 144, kernel 31) of ``conf/model/encoder``,
each with that preset's dropout rates. Ours runs with no unit-dropout strategy (like torchaudio) and, for
information, with the quickstart's adaptive dropout at every site; ``--bf16`` adds ours under
``torch.autocast("cpu", torch.bfloat16)`` (what ``trainer.precision=bf16-mixed`` runs).

The variants alternate step by step (so drifting machine load hits all alike) after warm-up; each figure
is the median of ``--steps`` steps (wall clock, or ``--clock cpu``: the thread's CPU time, robust to a
loaded machine at ``--threads 1``). The last line is
``ratio=<torchaudio / ours (fp32, no strategy)>`` for the last preset (goal: >= 1.3).

    .venv/bin/python benchmarks/bench_train_step.py --threads 2 --steps 10
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from conformer_prune.dropout import AdaptiveDropout
from conformer_prune.models import ConformerEncoder
from conformer_prune.models.attention import relative_positions

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("quickstart", "s")
SITE_KEYS = ("ffn_dropout", "query_dropout", "value_dropout", "conv_dropout")


def preset_args(preset: str) -> dict:
    """The encoder preset's constructor arguments (dropout strategies left out)."""
    cfg = yaml.safe_load((ROOT / "conf" / "model" / "encoder" / f"{preset}.yaml").read_text())
    return {k: v for k, v in cfg.items() if not k.startswith("_") and k not in SITE_KEYS and k != "layer_widths"}


class OurBlocks(nn.Module):
    """Our encoder's Conformer blocks on already subsampled ``(B, T, D)`` frames."""

    def __init__(self, encoder: ConformerEncoder) -> None:
        super().__init__()
        self.layers, self.d_model = encoder.layers, encoder.d_model

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        t = x.size(1)
        pad_mask = torch.arange(t)[None, :] >= lens[:, None]  # (B, T)
        pos_emb = relative_positions(t, self.d_model, x.device, x.dtype)  # (2T-1, D)
        for layer in self.layers:
            x = layer(x, pos_emb, pad_mask)
        return x


class TorchaudioBlocks(nn.Module):
    def __init__(self, args: dict) -> None:
        super().__init__()
        from torchaudio.models import Conformer

        self.conformer = Conformer(
            input_dim=args["d_model"],
            num_heads=args["num_heads"],
            ffn_dim=args["d_ff"],
            num_layers=args["num_layers"],
            depthwise_conv_kernel_size=args["kernel_size"],
            dropout=args["dropout_rate"],
        )

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        return self.conformer(x, lens)[0]


def build_variants(
    preset: str, bf16: bool
) -> dict[str, tuple[nn.Module, Callable[[], contextlib.AbstractContextManager]]]:
    """Name → (blocks in train mode, autocast context) for one preset."""
    args = preset_args(preset)
    torch.manual_seed(0)
    ours = OurBlocks(ConformerEncoder(**args)).train()
    adaptive = functools.partial(AdaptiveDropout, noise="utterance")
    sites = dict.fromkeys(SITE_KEYS, adaptive)
    ours_adaptive = OurBlocks(ConformerEncoder(**args, **sites)).train()
    fp32 = contextlib.nullcontext
    variants = {
        "torchaudio": (TorchaudioBlocks(args).train(), fp32),
        "ours": (ours, fp32),
        "ours_adaptive": (ours_adaptive, fp32),
    }
    if bf16:
        variants["ours_bf16"] = (ours, functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16))
        variants["torchaudio_bf16"] = (
            variants["torchaudio"][0],
            functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16),
        )
    return variants


def train_step(net: nn.Module, autocast: Callable, x: Tensor, lens: Tensor, clock: Callable[[], float]) -> float:
    """Seconds of one forward + backward (gradients cleared first, outside the timing)."""
    net.zero_grad(set_to_none=True)
    start = clock()
    with autocast():
        out = net(x, lens)
    out.float().square().mean().backward()
    return clock() - start


def compare(
    preset: str, batch: int, seconds: float, steps: int, warmup: int, bf16: bool, clock: Callable[[], float]
) -> dict[str, list[float]]:
    """Interleaved step times per variant (seconds)."""
    variants = build_variants(preset, bf16)
    d_model = preset_args(preset)["d_model"]
    frames = ((int(seconds * 100) - 3) // 2 + 1 - 3) // 2 + 1  # after 4x subsampling
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, frames, d_model, generator=gen)
    lens = torch.full((batch,), frames)
    lens[1::2] = frames - frames // 10  # a bucketed batch: some padding
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(warmup + steps):
        for name, (net, autocast) in variants.items():
            elapsed = train_step(net, autocast, x, lens, clock)
            if i >= warmup:
                times[name].append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=",".join(PRESETS), help="conf/model/encoder presets, comma-separated")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: the thread's CPU time (robust to load; --threads 1)",
    )
    args = parser.parse_args()
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    ratio = float("nan")
    for preset in args.presets.split(","):
        times = compare(preset, args.batch, args.seconds, args.steps, args.warmup, args.bf16, clock)
        median = {k: statistics.median(v) for k, v in times.items()}
        load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
        print(
            f"preset={preset} threads={torch.get_num_threads()} batch={args.batch}x{args.seconds:g}s "
            f"steps={args.steps} clock={args.clock} loadavg={' '.join(load)} torch={torch.__version__}"
        )
        for name, values in times.items():
            print(
                f"  {name:16s} median {median[name]:.3f} s  min {min(values):.3f}  max {max(values):.3f}  "
                f"torchaudio/this {median['torchaudio'] / median[name]:.2f}"
            )
        ratio = median["torchaudio"] / median["ours"]
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
