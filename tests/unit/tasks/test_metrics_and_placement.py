"""Corpus error rates from summed edit counts (as the DDP reduction does) and the evaluation device."""

from __future__ import annotations

from types import SimpleNamespace

import jiwer
import pytest
import torch

from conformer_prune.distributed import resolve_eval_device, run_on_global_zero
from conformer_prune.tasks.metrics import CorpusErrorRate

REFS = ["HELLO WORLD", "THE QUICK BROWN FOX", "A", "JUMPS OVER THE DOG"]
HYPS = ["HELLO WORD", "THE QUICK FOX FOX FOX", "", "JUMPS OVER THE LAZY DOG"]


@pytest.mark.parametrize("unit", ["word", "char"])
def test_error_rate_of_shards_summed_equals_the_corpus_rate(unit: str) -> None:
    expected = (jiwer.wer if unit == "word" else jiwer.cer)(REFS, HYPS)
    shards = [CorpusErrorRate(unit), CorpusErrorRate(unit)]
    shards[0].update(HYPS[:1], REFS[:1])  # rank 0: one short utterance
    shards[1].update(HYPS[1:], REFS[1:])  # rank 1: the rest
    merged = CorpusErrorRate(unit)
    merged.errors = shards[0].errors + shards[1].errors  # what dist_reduce_fx="sum" does
    merged.total = shards[0].total + shards[1].total
    assert float(merged.compute()) == pytest.approx(expected, abs=1e-12)
    per_rank_mean = (float(shards[0].compute()) + float(shards[1].compute())) / 2
    assert per_rank_mean != pytest.approx(expected, abs=1e-3)  # the old per-rank average is not the corpus rate
    assert float(CorpusErrorRate(unit).compute()) == 0.0


def test_eval_device_auto_follows_the_training_device_and_bad_names_fail() -> None:
    cpu_trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert resolve_eval_device("auto", cpu_trainer) == torch.device("cpu")
    assert resolve_eval_device(None, cpu_trainer) == torch.device("cpu")
    assert resolve_eval_device("cpu", cpu_trainer) == torch.device("cpu")
    with pytest.raises(ValueError, match="eval_device='tpu'"):
        resolve_eval_device("tpu", cpu_trainer)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available: use eval_device=cpu"):
            resolve_eval_device("cuda", cpu_trainer)
        assert resolve_eval_device("auto") == torch.device("cpu")


def test_a_single_process_just_runs_the_rank_zero_work() -> None:
    assert run_on_global_zero(SimpleNamespace(world_size=1, global_rank=0), lambda: {"wer": 0.5}) == {"wer": 0.5}
