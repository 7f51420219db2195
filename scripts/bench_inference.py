"""Dense vs compacted inference speed on CPU, next to the MAC ratio (the bound for removing those weights).

Hydra ``key=value`` arguments like the other scripts (``conf/bench_inference.yaml``). Two ways to get
the pair of models:

* an export and its training checkpoint: the masked (dense) model comes from the checkpoint, the
  compacted one from the export directory::

      python scripts/bench_inference.py export=outputs/train/runs/<run>/export \\
          ckpt=outputs/train/runs/<run>/checkpoints/<best>.ckpt

* synthetic, no trained model needed: random weights, an encoder preset of ``conf/model/encoder``, and
  a random keep pattern per site keeping a given fraction of its units (``keep=0.5`` everywhere, or
  ``'keep={ffn: 0.4, query: 0.5, value: 0.6, conv: 0.5}'``)::

      python scripts/bench_inference.py synthetic=true preset=quickstart keep=0.5

Both models run the same random features (``batch`` utterances of ``seconds``) in the same process
with ``threads`` intra-op threads, alternating, after warm-up; each figure is the median of ``runs``
timings. The real-time factor is seconds of compute per second of audio. ``onnx=true`` also times the
compacted model exported to ONNX and run by ONNX Runtime (same threads), and ``profile=true`` prints the
per-module-group time and MACs of both models (:func:`conformer_prune.speed.module_profile`;
``clock=cpu`` times with the thread's CPU time, robust to a loaded machine at ``threads=1``). The last
line is ``speedup=<dense / compacted time> flop_bound=<dense / compacted MACs>``. Nothing is written.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import hydra
import torch
import yaml
from omegaconf import DictConfig
from torch import nn

from conformer_prune.cli.entry import entry_point
from conformer_prune.data.features import FeatureSettings
from conformer_prune.dropout import AdaptiveDropout
from conformer_prune.errors import UserError
from conformer_prune.inference import load_model
from conformer_prune.models import ConformerEncoder
from conformer_prune.models.ctc import CTCModel
from conformer_prune.pruning.compact import compact_copy, count_params, encoder_of, macs_per_second
from conformer_prune.sites import config_keys, kinds_of, site_kinds
from conformer_prune.speed import group_macs, interleaved_times, module_profile, profile_table

ROOT = Path(__file__).resolve().parents[1]


def parse_keep(keep: float | str | Mapping[str, float]) -> dict[str, float]:
    """``0.5``, ``{ffn: 0.4, query: 0.5, ...}`` (or the string ``"ffn=0.4,query=0.5,..."``) → keep fraction per
    site kind.

    Raises:
        UserError: an unknown site group or a fraction outside [0, 1]; names ``keep``.
    """
    groups = {key: kinds_of(key) for key in config_keys()}
    kinds = [k for group in groups.values() for k in group]
    if isinstance(keep, str) and "=" in keep:
        keep = dict((s.strip() for s in item.split("=", 1)) for item in keep.split(","))
    try:
        if not isinstance(keep, Mapping):
            fractions = dict.fromkeys(kinds, float(keep))
        else:
            fractions = dict.fromkeys(kinds, 1.0)
            for group, value in keep.items():
                if group not in groups:
                    raise UserError(f"keep: unknown site group {group!r}; use {sorted(groups)}")
                fractions.update(dict.fromkeys(groups[group], float(value)))
    except (TypeError, ValueError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(f"keep={keep!r}: give a fraction (keep=0.5) or one per site group ({err})") from err
    if not all(0.0 <= v <= 1.0 for v in fractions.values()):
        raise UserError(f"keep: fractions must be in [0, 1], got {fractions}")
    return fractions


def synthetic_pair(
    preset: str, keep: dict[str, float], vocab: int, seed: int
) -> tuple[nn.Module, nn.Module, int, float]:
    """A random CTC model with adaptive dropout at every site, ``keep[kind]`` of each site's units kept; the
    compacted copy, the input dim and the default features' frame rate."""
    cfg = yaml.safe_load((ROOT / "conf" / "model" / "encoder" / f"{preset}.yaml").read_text())
    args = {k: v for k, v in cfg.items() if not k.startswith("_") and not k.endswith("_dropout") and k != "defaults"}
    torch.manual_seed(seed)
    encoder = ConformerEncoder(**args, **{spec.dropout_arg: AdaptiveDropout for spec in site_kinds()})
    dense = CTCModel(encoder, vocab).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for site in encoder.sites():
            units = site.module.num_units
            kept = torch.randperm(units, generator=gen)[: round(keep[site.kind] * units)]
            logits = torch.full((units,), -3.0)
            logits[kept] = 3.0
            site.module.keep_logits.copy_(logits)
    return dense, compact_copy(dense), int(args["input_dim"]), FeatureSettings().frames_per_second


def exported_pair(export_dir: str, ckpt: str) -> tuple[nn.Module, nn.Module, int, float]:
    from conformer_prune.checkpoint import build_dense_net, read_checkpoint

    checkpoint = read_checkpoint(ckpt)
    dense = build_dense_net(checkpoint, ckpt)
    input_dim = int(checkpoint["hyper_parameters"]["net_config"]["encoder"].get("input_dim", 80))
    frames_per_second = FeatureSettings.of(checkpoint["hyper_parameters"]["feature_config"]).frames_per_second
    return dense, load_model(export_dir).net, input_dim, frames_per_second


@torch.no_grad()
def forward(net: nn.Module, features: torch.Tensor, lens: torch.Tensor) -> None:
    net(features, lens)


@hydra.main(config_path="../conf", config_name="bench_inference", version_base="1.3")
def main(args: DictConfig) -> None:
    with entry_point():
        run(args)


def run(args: DictConfig) -> None:
    """The benchmark with the keys of ``conf/bench_inference.yaml``; prints its figures."""
    if bool(args.export) == bool(args.synthetic):
        raise UserError("give export=<dir> ckpt=<file> (an exported run), or synthetic=true (random weights)")
    if args.export and not args.ckpt:
        raise UserError("export= needs ckpt= (the dense model comes from the training checkpoint)")

    torch.set_num_threads(args.threads)
    if args.synthetic:
        keep = parse_keep(args.keep)
        dense, compact, input_dim, frames_per_second = synthetic_pair(args.preset, keep, args.vocab, args.seed)
        what = f"synthetic {args.preset}, keep " + ", ".join(f"{k}={v:g}" for k, v in keep.items())
    else:
        dense, compact, input_dim, frames_per_second = exported_pair(args.export, args.ckpt)
        what = f"export {args.export}"

    frames = int(round(args.seconds * frames_per_second))
    features = torch.randn(args.batch, frames, input_dim, generator=torch.Generator().manual_seed(args.seed))
    lens = torch.full((args.batch,), frames)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    models = {"dense": dense, "compact": compact}
    runners = {name: functools.partial(forward, net, features, lens) for name, net in models.items()}
    if args.onnx:
        from conformer_prune.onnx_export import OnnxModel, to_onnx

        onnx_models = {name: OnnxModel(to_onnx(net, input_dim), net, args.threads) for name, net in models.items()}
        runners["onnx_dense"] = lambda: onnx_models["dense"](features, lens)
        runners["onnx"] = lambda: onnx_models["compact"](features, lens)
    times = interleaved_times(runners, args.runs, args.warmup, clock)  # alternating: load hits all alike
    median = {k: statistics.median(v) for k, v in times.items()}
    audio = args.batch * args.seconds
    macs = {
        "dense": macs_per_second(dense, input_dim, args.seconds, frames_per_second=frames_per_second),
        "compact": macs_per_second(compact, input_dim, args.seconds, frames_per_second=frames_per_second),
    }

    print(f"model: {what}")
    print(f"cpu threads={torch.get_num_threads()} torch={torch.__version__} input={args.batch} x {args.seconds:g} s")
    print(
        f"params: dense {count_params(dense):,} -> compact {count_params(compact):,} "
        f"(encoder {count_params(encoder_of(dense)):,} -> {count_params(encoder_of(compact)):,})"
    )
    kept = {}
    for site in encoder_of(dense).sites():
        k, t = kept.get(site.kind, (0, 0))
        kept[site.kind] = (k + int(site.module.keep_mask().sum()), t + site.module.num_units)
    print("kept units: " + ", ".join(f"{kind} {k}/{t}" for kind, (k, t) in kept.items()))
    heads = [layer.attn.num_heads for layer in encoder_of(compact).layers]
    print(f"heads per layer after compaction: {heads}")
    print(f"MACs per second of audio: dense {macs['dense'] / 1e6:.1f}M -> compact {macs['compact'] / 1e6:.1f}M")
    for name in times:
        runs = ", ".join(f"{t * 1e3:.1f}" for t in sorted(times[name]))
        print(f"{name:8s} RTF {median[name] / audio:.4f} (median of {args.runs} runs, ms: {runs})")
    if args.onnx:
        print(
            f"ONNX Runtime: compact {median['compact'] / median['onnx']:.2f}x PyTorch compact; "
            f"speedup onnx_dense / onnx = {median['onnx_dense'] / median['onnx']:.2f}"
        )
    if args.profile:
        nets = {"dense": dense, "compact": compact}
        profile = module_profile(nets, features, lens, args.runs, args.warmup, clock)
        groups = {name: group_macs(net, features, lens) for name, net in nets.items()}
        print(f"per module group, median of {args.runs} interleaved runs ({args.clock} clock):")
        print(profile_table(profile, groups, base="dense"))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    print(f"load average: {load} (a shared, loaded machine: read ratios, not absolute times)")
    speedup = median["dense"] / median["compact"]
    bound = macs["dense"] / macs["compact"]
    print(f"speedup / flop_bound = {speedup / bound:.2f}")
    print(f"speedup={speedup:.2f} flop_bound={bound:.2f}")


if __name__ == "__main__":
    main()
