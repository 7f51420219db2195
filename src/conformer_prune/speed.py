"""Measurements behind the speed benchmarks: interleaved timings and a per-module profile.

Speed numbers in this project are ratios of models timed side by side in one process, alternating run
by run so that drifting machine load hits them alike, as medians of several runs
(``scripts/bench_inference.py``, ``benchmarks/bench_train_step.py``); never timed tests.

:func:`module_profile` splits a forward pass into the encoder's module groups (subsampling, FFNs,
attention, convolution module, the rest) and gives each group's time beside its multiply-accumulates,
so a speed-up below the MAC ratio can be traced to the groups whose time does not shrink with their
MACs. ``clock=time.thread_time`` (CPU time of the calling thread; with one intra-op thread that is all the
work) is far less sensitive to a loaded machine than wall time.

Shapes: ``B`` batch, ``T`` frames, ``F`` features.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from conformer_prune.pruning.compact import encoder_of

GROUPS = ("subsampling", "ffn", "attention", "conv", "other")
"""Module groups of :func:`module_profile`; ``other``: the LayerNorms, input dropout, the head, glue."""


def interleaved_times(
    runners: Mapping[str, Callable[[], object]],
    runs: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each runner, alternating runners call by call after ``warmup`` rounds."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = clock()
            run()
            times[name].append(clock() - start)
    return times


def _group_modules(net: nn.Module) -> dict[str, list[nn.Module]]:
    encoder = encoder_of(net)
    groups: dict[str, list[nn.Module]] = {"subsampling": [encoder.subsampling], "ffn": [], "attention": [], "conv": []}
    for layer in encoder.layers:
        groups["ffn"] += [layer.ffn1, layer.ffn2]
        groups["attention"] += [layer.attn_norm, layer.attn]
        groups["conv"].append(layer.conv)
    return groups


def group_macs(net: nn.Module, features: Tensor, lens: Tensor) -> dict[str, float]:
    """Multiply-accumulates of one forward pass per module group (:data:`GROUPS`) and ``total``."""
    names = {id(m): name for name, m in net.named_modules()}
    prefix = type(net).__name__
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(features, lens)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    macs = {"total": counts.get("Global", 0) / 2}
    for group, modules in _group_modules(net).items():
        macs[group] = sum(counts.get(f"{prefix}.{names[id(m)]}", 0) for m in modules) / 2
    macs["other"] = macs["total"] - sum(macs[g] for g in GROUPS[:-1])
    return macs


@torch.no_grad()
def module_profile(
    nets: Mapping[str, nn.Module],
    features: Tensor,
    lens: Tensor,
    runs: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, float]]:
    """Median seconds per forward pass of each module group (:data:`GROUPS`) and ``total``, per net.

    The nets run alternately, ``runs`` times each after ``warmup``; forward hooks time every module of a
    group. ``other`` is the total less the timed groups.
    """
    per_run: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in nets}
    spent: dict[str, dict[str, float]] = {name: defaultdict(float) for name in nets}
    handles = []
    for name, net in nets.items():
        for group, modules in _group_modules(net).items():
            for module in modules:
                start: list[float] = []

                def pre(_m: nn.Module, _a: tuple, start: list[float] = start) -> None:
                    start.append(clock())

                def post(
                    _m: nn.Module, _a: tuple, _o: object, start: list[float] = start, acc=spent[name], g=group
                ) -> None:
                    acc[g] += clock() - start.pop()

                handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        for i in range(warmup + runs):
            for name, net in nets.items():
                spent[name].clear()
                begin = clock()
                net(features, lens)
                total = clock() - begin
                if i >= warmup:
                    for group in GROUPS[:-1]:
                        per_run[name][group].append(spent[name][group])
                    per_run[name]["other"].append(total - sum(spent[name].values()))
                    per_run[name]["total"].append(total)
    finally:
        for handle in handles:
            handle.remove()
    return {name: {k: statistics.median(v) for k, v in groups.items()} for name, groups in per_run.items()}


def profile_table(
    profile: Mapping[str, Mapping[str, float]], macs: Mapping[str, Mapping[str, float]], base: str
) -> str:
    """Text table: per group and model, milliseconds and MMACs, and the speed-up against ``base`` beside
    the MAC ratio (a group whose speed-up lags its MAC ratio is where the bound is lost)."""
    names = list(profile)
    head = f"{'group':12s}" + "".join(f" {n + ' ms':>12s} {n + ' MMAC':>13s}" for n in names)
    head += "".join(f" {'speedup ' + n:>16s} {'MAC ratio':>10s}" for n in names if n != base)
    lines = [head]
    for group in (*GROUPS, "total"):
        row = f"{group:12s}"
        for n in names:
            row += f" {profile[n][group] * 1e3:12.2f} {macs[n][group] / 1e6:13.1f}"
        for n in names:
            if n == base:
                continue
            speed = profile[base][group] / profile[n][group] if profile[n][group] > 0 else float("nan")
            ratio = macs[base][group] / macs[n][group] if macs[n][group] > 0 else float("nan")
            row += f" {speed:16.2f} {ratio:10.2f}"
        lines.append(row)
    return "\n".join(lines)
