"""GPU check of the real pipeline: bf16-mixed training of the Conformer-S Transducer (experiment=transducer_s)
and of Conformer-S CTC for a few hundred steps on generated data, the end-of-training evaluation on the GPU
with beam search, export, reload of the export on the GPU (``load_model``) and its evaluation; prints steps/s
and peak GPU memory per model, and writes ``gpu_check.json``. About 4-6 min on one H200 (under 8).

    python benchmarks/gpu_check.py --out /tmp/gpu_check            # on a GPU machine
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_dry    # on a CPU: tiny encoder, 6 steps, fp32

It calls :func:`conformer_prune.cli.train.train` with the composed training config (as ``scripts/train.py`` does),
so it exercises the Lightning loop, the torchaudio RNN-T loss on CUDA, bf16 autocast, ``eval_device=auto``
and the exporter. The data is a LibriSpeech-layout tree of "tone speech" written here (each letter a chord
of two sines, words separated by silence, speakers differ in pitch, rate and noise), so it needs no TTS
engine and a model can learn it in a few hundred steps. CI never runs it (it is not under tests/).

On a machine whose Python lacks some of the project's pure-Python dependencies (the H200 image has torch,
lightning, torchaudio, torchmetrics, sentencepiece, safetensors, rich; not Hydra, jiwer, soundfile), carry
wheels for python 3.12: hydra-core omegaconf antlr4-python3-runtime jiwer rapidfuzz soundfile cffi
pycparser, install them with ``pip install --no-index --no-deps --target /tmp/site .whl/*.whl`` and run with
``PYTHONPATH=src:/tmp/site``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from conformer_prune.cli.evaluate import evaluate  # noqa: E402
from conformer_prune.cli.train import train  # noqa: E402

log = logging.getLogger("gpu_check")

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
SAMPLE_RATE = 16000


# -- generated data ---------------------------------------------------------------------------------
def _chords(rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """Two frequencies per letter (200-3400 Hz), distinct for every letter."""
    low = np.linspace(220.0, 900.0, len(LETTERS))
    high = np.linspace(1100.0, 3400.0, len(LETTERS))
    return {c: (float(lo), float(hi)) for c, lo, hi in zip(LETTERS, rng.permutation(low), rng.permutation(high))}


def _speak(text: str, chords: dict, rng: np.random.Generator, pitch: float, rate: float, snr_db: float) -> np.ndarray:
    """Waveform of ``text``: a 45-75 ms chord per letter (times ``rate``), 60-120 ms of silence per space."""
    pieces = [np.zeros(int(0.1 * SAMPLE_RATE))]
    for char in text:
        if char == " ":
            pieces.append(np.zeros(int(rng.uniform(0.06, 0.12) * SAMPLE_RATE)))
            continue
        n = int(rng.uniform(0.045, 0.075) * rate * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        lo, hi = chords[char]
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.5
        pieces.append(envelope * (np.sin(2 * np.pi * lo * pitch * t) + 0.6 * np.sin(2 * np.pi * hi * pitch * t)))
    pieces.append(np.zeros(int(0.1 * SAMPLE_RATE)))
    audio = np.concatenate(pieces) * 0.3
    noise = rng.standard_normal(audio.size) * np.sqrt(np.mean(audio**2) / 10 ** (snr_db / 10))
    return (audio + noise).clip(-1, 1).astype(np.float32)


def write_tone_corpus(root: Path, utterances: dict[str, int], seed: int = 0) -> Path:
    """Write ``root/LibriSpeech/<subset>/<speaker>/<chapter>/`` with ``utterances[subset]`` utterances each
    (10 speakers per subset, 3-8 words from a 300-word vocabulary); returns ``root``."""
    rng = np.random.default_rng(seed)
    chords = _chords(rng)
    words = sorted({"".join(rng.choice(list(LETTERS[:-1]), size=rng.integers(2, 7))) for _ in range(300)})
    for s_index, (subset, count) in enumerate(utterances.items()):
        for speaker in range(10):
            spk_id, chapter = 100 * (s_index + 1) + speaker, 1000 + speaker
            folder = root / "LibriSpeech" / subset / str(spk_id) / str(chapter)
            folder.mkdir(parents=True, exist_ok=True)
            pitch, rate, snr = rng.uniform(0.85, 1.2), rng.uniform(0.8, 1.25), rng.uniform(15, 35)
            lines = []
            for i in range(count // 10):
                text = " ".join(rng.choice(words, size=rng.integers(3, 9)))
                utt = f"{spk_id}-{chapter}-{i:04d}"
                audio = _speak(text, chords, rng, pitch, rate, snr)
                sf.write(folder / f"{utt}.flac", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
                lines.append(f"{utt} {text}")
            (folder / f"{spk_id}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


# -- measurement ------------------------------------------------------------------------------------
class StepTimer(L.Callback):
    """Wall time of every training step (synchronised on CUDA) and the peak GPU memory of ``fit``."""

    records: ClassVar[list[dict[str, Any]]] = []

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        self.times.append(time.perf_counter() - self._start)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steady = self.times[min(10, len(self.times) // 2) :]  # without the first steps (cuDNN/autotune warm-up)
        StepTimer.records.append(
            {
                "steps": len(self.times),
                "steps_per_s": len(steady) / sum(steady) if steady else float("nan"),
                "peak_gpu_gb_fit": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
                "precision": str(trainer.precision),
                "device": str(pl_module.device),
            }
        )


# -- the check --------------------------------------------------------------------------------------
def overrides(head: str, data_root: Path, run_dir: Path, args: argparse.Namespace) -> list[str]:
    if head == "transducer":
        model = ["model/encoder=tiny", "model=transducer"] if args.dry_run else ["experiment=transducer_s"]
    else:
        model = ["model=ctc", f"model/encoder={'tiny' if args.dry_run else 's'}", "decoding=ctc_beam"]
    common = [
        f"trainer={'cpu' if args.dry_run else 'gpu'}",
        "data=librispeech",
        f"paths.data_dir={data_root}",
        f"paths.output_dir={run_dir}",
        f"data.cache_dir={data_root / 'cache'}",
        "data.train_subsets=[train-clean-100]",
        "data.dev_subsets=[dev-clean]",
        "data.test_subsets=[test-clean]",
        "data.eval_subsets=[dev-clean,test-clean]",
        "data.tokenizer.model_type=char",
        "data.features.speed_perturb=null",
        "data.cache_features=true",
        f"data.num_workers={0 if args.dry_run else 4}",
        f"data.pin_memory={'false' if args.dry_run else 'true'}",
        f"data.max_batch_seconds={20 if args.dry_run else 200}",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={max(2, args.steps // 3)}",
        f"model.scheduler.warmup_steps={max(1, args.steps // 10)}",  # the preset's 10k is for 150k steps
        "model.optimizer.lr=2e-3",
        "logger=csv",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        "+callbacks.step_timer._target_=__main__.StepTimer",
        "eval_device=auto",
        f"threads={1 if args.dry_run else 8}",
    ]
    return [*model, *common]


def check_one(head: str, data_root: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = out / head
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides(head, data_root, run_dir, args))
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as @hydra.main does: evaluate.py reads the data config
    start = time.perf_counter()
    results = train(cfg)
    total_s = time.perf_counter() - start
    timing = StepTimer.records[-1]
    peak_all = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0

    # reload the export (load_model, the compacted network) on the evaluation device and score it again
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        ecfg = compose(
            "evaluate",
            overrides=[
                f"model_path={run_dir / 'export'}",
                "data.eval_subsets=[test-clean]",
                f"out_dir={out / (head + '_reload')}",
                "device=auto",
            ],
        )
    start = time.perf_counter()
    reloaded = evaluate(ecfg)
    reload_s = time.perf_counter() - start
    subset = "test-clean"
    row = {
        "head": head,
        "params": results["params"]["total"],
        "params_compacted": results["params"].get("compacted_total"),
        **timing,
        "peak_gpu_gb_all": peak_all,
        "train_seconds": results["train_seconds"],
        "total_seconds": round(total_s, 1),
        "eval_device": results["eval_device"],
        "decoding": results["decoding"],
        "cer_greedy": results["cer_greedy"][subset],
        "cer_beam": results["cer"][subset],
        "wer_beam": results["wer"][subset],
        "rtf_beam": results["rtf"][subset],
        "reload_device": reloaded.get("device"),
        "reload_cer_greedy": reloaded["cer_greedy"][subset],
        "reload_cer_beam": reloaded["cer"][subset],
        "reload_seconds": round(reload_s, 1),
    }
    row["reload_matches"] = (
        abs(row["reload_cer_greedy"] - row["cer_greedy"]) < 0.01
        and abs(row["reload_cer_beam"] - row["cer_beam"]) < 0.01
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny encoder, 6 steps, fp32 (checks the script)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per model (default 300; dry run 6)")
    parser.add_argument("--heads", nargs="+", default=["transducer", "ctc"], choices=["transducer", "ctc"])
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"), help="where runs and gpu_check.json go")
    args = parser.parse_args()
    args.steps = args.steps or (6 if args.dry_run else 300)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    if args.dry_run:
        torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sizes = {"train-clean-100": 60, "dev-clean": 10, "test-clean": 10} if args.dry_run else {
        "train-clean-100": 1200, "dev-clean": 60, "test-clean": 60}  # fmt: skip
    data_root = write_tone_corpus(args.out / "data", sizes)
    log.info("generated data in %.1f s", time.perf_counter() - start)
    if torch.cuda.is_available():
        log.info("device: %s, torch %s", torch.cuda.get_device_name(), torch.__version__)
    rows = [check_one(head, data_root, args.out, args) for head in args.heads]

    print(f"\ngpu_check ({'DRY RUN: CPU, tiny encoder' if args.dry_run else 'GPU'}), {args.steps} steps per model")
    keys = ["head", "params", "params_compacted", "precision", "device", "steps", "steps_per_s", "peak_gpu_gb_fit",
            "peak_gpu_gb_all", "train_seconds", "eval_device", "decoding", "cer_greedy", "cer_beam", "rtf_beam",
            "reload_device", "reload_cer_greedy", "reload_cer_beam", "reload_matches", "total_seconds"]  # fmt: skip
    for key in keys:
        cells = [f"{r[key]:.4g}" if isinstance(r[key], float) else str(r[key]) for r in rows]
        print(f"  {key:<18} " + "  ".join(f"{c:>14}" for c in cells))
    print(f"  wall time: {time.perf_counter() - start:.0f} s")
    (args.out / "gpu_check.json").write_text(json.dumps(rows, indent=2))
    ok = all(r["reload_matches"] for r in rows)
    print("gpu_check: OK" if ok else "gpu_check: the reloaded export does not score like the trained model")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
