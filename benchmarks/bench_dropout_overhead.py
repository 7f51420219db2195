"""Training-step time with dropout=standard vs dropout=adaptive on the same model, side by side.

Interleaves the strategies step by step (so machine load hits all alike) on the quickstart encoder +
CTC head with a fixed synthetic batch, and reports medians: standard dropout, adaptive dropout with
Gumbel noise per (batch, frame, unit) (``noise=element``) and per utterance (``noise=utterance``, the
quickstart's default). Last line:
``standard_s=<x> adaptive_s=<y> adaptive_utterance_s=<z> ratio=<y/x> ratio_utterance=<z/x>``
(goal: ratio <= 1.05).

    .venv/bin/python benchmarks/bench_dropout_overhead.py --steps 20 --threads 2
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import torch

from conformer_prune.dropout import AdaptiveDropout, StandardDropout
from conformer_prune.models import ConformerEncoder
from conformer_prune.models.ctc import CTCModel


def build(strategy) -> tuple[CTCModel, torch.optim.Optimizer]:
    torch.manual_seed(0)
    encoder = ConformerEncoder(
        input_dim=80,
        d_model=144,
        num_layers=4,
        num_heads=4,
        d_ff=576,
        kernel_size=15,
        subsampling_channels=64,
        ffn_dropout=strategy,
        query_dropout=strategy,
        value_dropout=strategy,
        conv_dropout=strategy,
    )
    net = CTCModel(encoder, vocab_size=30).train()
    return net, torch.optim.AdamW(net.parameters(), lr=1e-3)


def step(net: CTCModel, optimizer: torch.optim.Optimizer, batch: tuple) -> float:
    start = time.perf_counter()
    loss = net.loss(*batch)
    loss = loss + 1e-4 * sum(m.penalty() for m in net.modules() if hasattr(m, "penalty") and m is not net)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=12, help="utterances of --seconds each (~60 s of audio)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = int(args.seconds * 100)
    gen = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(args.batch, frames, 80, generator=gen),
        torch.full((args.batch,), frames),
        torch.randint(1, 30, (args.batch, 60), generator=gen),
        torch.full((args.batch,), 60),
    )
    runs = {
        "standard": build(functools.partial(StandardDropout, drop_prob=0.1)),
        "adaptive": build(functools.partial(AdaptiveDropout, noise="element")),
        "adaptive_utterance": build(functools.partial(AdaptiveDropout, noise="utterance")),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.warmup + args.steps):
        for name, (net, optimizer) in runs.items():
            elapsed = step(net, optimizer, batch)
            if i >= args.warmup:
                times[name].append(elapsed)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"threads={args.threads} batch={args.batch}x{args.seconds}s steps={args.steps} loadavg={' '.join(load)}")
    for name, values in times.items():
        print(f"{name:18s} median {statistics.median(values):.3f} s  min {min(values):.3f}  max {max(values):.3f}")
    standard, adaptive = statistics.median(times["standard"]), statistics.median(times["adaptive"])
    utterance = statistics.median(times["adaptive_utterance"])
    print(
        f"standard_s={standard:.4f} adaptive_s={adaptive:.4f} adaptive_utterance_s={utterance:.4f} "
        f"ratio={adaptive / standard:.3f} ratio_utterance={utterance / standard:.3f}"
    )


if __name__ == "__main__":
    main()
