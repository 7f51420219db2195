"""How noisy are the ASR loss's gradients with respect to the keep logits β of a trained model?

Loads a training checkpoint of an adaptive-dropout run, draws ``--batches`` training batches of the
run's own data (training mode: Gumbel noise and SpecAugment on), and records the gradient of the loss
(without the regulariser) with respect to every keep logit. Prints, per range of β, quantiles of the
per-unit |mean| and per-batch std, and the share of units the loss pushes down (mean gradient > 0).
A mean/std ratio well below 1 means Adam moves those logits slowly (about lr × mean/std per step).

    .venv/bin/python benchmarks/logit_gradient_noise.py outputs/reproduce/adaptive/alpha2e-6_seed1/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conformer_prune.cli.evaluate import load_source


def quantiles(values: torch.Tensor) -> str:
    q = torch.quantile(values, torch.tensor([0.1, 0.5, 0.9]))
    return "/".join(f"{float(x):.1e}" for x in q)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="<run>/checkpoints/*.ckpt of an adaptive-dropout run")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    source = load_source(args.checkpoint)
    if source.run_config is None:
        parser.error(f"{args.checkpoint}: no .hydra/config.yaml in its run directory: the data is unknown")
    datamodule = instantiate(OmegaConf.to_container(source.run_config.data, resolve=True))
    datamodule.restore(source.tokenizer_bytes, source.feature_config)
    datamodule.setup("fit")
    net = source.net.train()
    logits = [p for name, p in net.named_parameters() if name.endswith("keep_logits")]
    if not logits:
        parser.error(f"{args.checkpoint}: no keep logits (not an adaptive-dropout run)")

    grads = []
    for i, batch in enumerate(datamodule.train_dataloader()):
        if i >= args.batches:
            break
        net.zero_grad()
        net.loss(batch["features"], batch["feature_lens"], batch["tokens"], batch["token_lens"]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in logits]))
    grads_t = torch.stack(grads)  # (batches, units)
    beta = torch.cat([p.detach().flatten() for p in logits])
    mean, std = grads_t.mean(0), grads_t.std(0)
    print(f"{grads_t.shape[1]} keep logits, {grads_t.shape[0]} batches; quantiles are 10%/50%/90%")
    for low, high in [(-99.0, -2.0), (-2.0, 0.0), (0.0, 2.0), (2.0, 99.0)]:
        sel = (beta >= low) & (beta < high)
        if sel.any():
            print(
                f"beta in [{low:g}, {high:g}): units={int(sel.sum())} |mean|={quantiles(mean[sel].abs())} "
                f"std={quantiles(std[sel])} pushed_down={float((mean[sel] > 0).float().mean()):.2f}"
            )
    ratio = float((mean.abs() / std.clamp_min(1e-12)).median())
    print(f"median_abs_mean_over_std={ratio:.3f}")


if __name__ == "__main__":
    main()
