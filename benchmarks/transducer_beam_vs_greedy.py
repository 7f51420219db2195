"""Is a Transducer's beam search worse than greedy because of the search or because of the model?

For each utterance of a subset, the exact log-probability (RNN-T forward algorithm, summed over alignments)
of the greedy hypothesis, of the beam hypothesis and of the reference, under a training checkpoint:

    python benchmarks/transducer_beam_vs_greedy.py --ckpt <run>/checkpoints/last.ckpt --subset test-clean

If the beam's sequences are at least as probable as greedy's while scoring a worse CER, the search does its
job and the model prefers the wrong (typically shorter) transcripts; if the reference is more probable than
both, the search is missing it. The data comes from the run's own config (``<run>/.hydra/config.yaml``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jiwer
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conformer_prune.cli.evaluate import load_source
from conformer_prune.models.losses import rnnt_loss


@torch.no_grad()
def sequence_log_prob(net, enc: torch.Tensor, labels: list[int]) -> float:
    """``log P(labels | enc)`` for one utterance ``enc (T', D)``."""
    tokens = torch.tensor([labels or [0]])
    pred = net.predictor(tokens)[:, : len(labels) + 1]  # (1, U+1, P)
    logits = net.joiner(enc[None, :, None], pred[:, None])  # (1, T', U+1, V)
    return -rnnt_loss(logits, tokens, torch.tensor([enc.size(0)]), torch.tensor([len(labels)])).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--subset", default="test-clean")
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--max-utts", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = load_source(args.ckpt)
    datamodule = instantiate(OmegaConf.load(args.ckpt.parent.parent / ".hydra" / "config.yaml").data)
    datamodule.restore(source.tokenizer_bytes, source.feature_config)
    datamodule.setup("predict")
    net, tok = source.net.eval(), datamodule.tokenizer
    rows = []
    with torch.no_grad():
        for batch in datamodule.eval_dataloader(args.subset):
            enc, lens = net(batch["features"], batch["feature_lens"])
            greedy = net.greedy_decode(enc, lens)
            beam = net.beam_search(enc, lens, beam_size=args.beam_size)
            for i, text in enumerate(batch["texts"]):
                e = enc[i, : int(lens[i])]
                ref = tok.encode(text)
                rows.append(
                    (text, tok.decode(greedy[i]), tok.decode(beam[i]))
                    + tuple(sequence_log_prob(net, e, s) for s in (greedy[i], beam[i], ref))
                )
            if len(rows) >= args.max_utts:
                break
    refs, greedy_txt, beam_txt = ([r[k] for r in rows] for k in range(3))
    more = sum(r[4] > r[3] + 1e-4 for r in rows)
    less = sum(r[4] < r[3] - 1e-4 for r in rows)
    ref_best = sum(r[5] > max(r[3], r[4]) for r in rows)
    print(f"{len(rows)} utterances of {args.subset}, beam {args.beam_size}")
    for name, hyps in (("greedy", greedy_txt), ("beam", beam_txt)):
        c = jiwer.process_characters(refs, hyps)
        print(
            f"  {name:<6} CER {c.cer:.3f}: {c.substitutions} substitutions, {c.deletions} deletions, "
            f"{c.insertions} insertions; {sum(map(len, hyps))} characters for {sum(map(len, refs))} in the references"
        )
    gain = sum(r[4] - r[3] for r in rows) / len(rows)
    print(f"  beam more probable than greedy: {more}, less: {less}, mean gain {gain:.2f} nats")
    print(f"  reference more probable than both hypotheses: {ref_best} of {len(rows)}")


if __name__ == "__main__":
    main()
