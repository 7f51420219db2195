"""Time the RNN-T loss, forward + backward, of both backends of ``conformer_prune.models.losses.rnnt_loss``.

Usage: ``python benchmarks/bench_rnnt_loss.py [--repeats 5] [--threads 2] [--device cpu]``

Defaults mirror one CPU quickstart batch: B=8 utterances, T=250 encoder frames (10 s after 4x
subsampling), U=60 labels, V=257. Each backend runs one warm-up, then ``--repeats`` timed runs; the
median is reported. Other jobs on a shared machine slow CPU timings a lot, so ``/proc/loadavg`` is
printed before and after. The last line is machine-readable:
``torch_s=<median> torchaudio_s=<median> ratio=<torchaudio_s / torch_s>``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from conformer_prune.models.losses import rnnt_loss


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "n/a"


def time_backend(backend: str, logits: torch.Tensor, args: tuple, repeats: int) -> list[float]:
    times = []
    for i in range(repeats + 1):
        x = logits.detach().requires_grad_(True)
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        rnnt_loss(x, *args, backend=backend).backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i:  # the first run is the warm-up
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--labels", type=int, default=60)
    parser.add_argument("--vocab", type=int, default=257)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    opts = parser.parse_args()

    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    B, T, U, V = opts.batch, opts.frames, opts.labels, opts.vocab
    logits = torch.randn(B, T, U + 1, V, device=opts.device)
    args = (
        torch.randint(1, V, (B, U), device=opts.device),
        torch.full((B,), T, device=opts.device),
        torch.full((B,), U, device=opts.device),
    )
    print(f"B={B} T={T} U={U} V={V} threads={opts.threads} device={opts.device} torch={torch.__version__}")
    print(f"loadavg before: {loadavg()}")
    medians = {}
    for backend in ("torch", "torchaudio"):
        times = time_backend(backend, logits, args, opts.repeats)
        medians[backend] = statistics.median(times)
        print(f"{backend:>10}: median {medians[backend]:.3f} s  runs " + " ".join(f"{t:.3f}" for t in times))
    print(f"loadavg after: {loadavg()}")
    ratio = medians["torchaudio"] / medians["torch"]
    print(f"torch_s={medians['torch']:.4f} torchaudio_s={medians['torchaudio']:.4f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
