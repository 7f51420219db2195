"""DurationBucketSampler: bound, coverage, determinism per (seed, epoch), DDP partition, exact resume."""

from __future__ import annotations

import numpy as np
import pytest

from conformer_prune.data.batching import DurationBucketSampler

DURATIONS = np.random.default_rng(0).uniform(1.0, 12.0, 300).tolist()


def _epoch(sampler: DurationBucketSampler, epoch: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_batches_respect_the_padded_seconds_bound_and_cover_everything_once() -> None:
    sampler = DurationBucketSampler(DURATIONS, max_batch_seconds=40.0)
    batches = _epoch(sampler, 0)
    assert len(batches) == len(sampler) == sampler.num_global_batches
    for batch in batches:
        assert len(batch) * max(DURATIONS[i] for i in batch) <= 40.0
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(DURATIONS)))


def test_too_long_item_gets_its_own_batch() -> None:
    sampler = DurationBucketSampler([1.0, 1.0, 50.0, 1.0], max_batch_seconds=10.0, shuffle=False)
    assert [2] in list(sampler)


def test_order_is_deterministic_per_seed_and_epoch() -> None:
    a = DurationBucketSampler(DURATIONS, 40.0, seed=3)
    b = DurationBucketSampler(DURATIONS, 40.0, seed=3)
    assert _epoch(a, 0) == _epoch(b, 0)
    assert _epoch(a, 1) == _epoch(b, 1) != _epoch(a, 0)
    assert _epoch(a, 0) != _epoch(DurationBucketSampler(DURATIONS, 40.0, seed=4), 0)
    assert _epoch(a, 5) == _epoch(a, 5)  # re-iterating an epoch repeats it
    assert len(_epoch(a, 0)) == len(_epoch(a, 7)) == len(a)  # the count never changes between epochs


def test_unshuffled_batches_go_shortest_first() -> None:
    batches = list(DurationBucketSampler(DURATIONS, 40.0, shuffle=False))
    longest = [max(DURATIONS[i] for i in b) for b in batches]
    assert longest == sorted(longest)


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("replicas", [2, 3])
def test_ddp_ranks_get_equal_counts_and_partition_the_epoch(replicas: int, drop_last: bool) -> None:
    ranks = [
        DurationBucketSampler(DURATIONS, 40.0, seed=1, num_replicas=replicas, rank=r, drop_last=drop_last)
        for r in range(replicas)
    ]
    per_rank = [_epoch(s, 2) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(ranks[0])
    total = ranks[0].num_global_batches
    seen = [tuple(b) for batches in per_rank for b in batches]
    if drop_last:
        assert len(seen) == (total // replicas) * replicas == len(set(seen))
    else:
        assert {tuple(b) for b in _epoch(DurationBucketSampler(DURATIONS, 40.0, seed=1), 2)} == set(seen)
        assert len(seen) - len(set(seen)) == (-total) % replicas  # only the padding repeats


@pytest.mark.parametrize("replicas", [2, 7, 8])
def test_unpadded_ddp_ranks_share_every_evaluation_batch_exactly_once(replicas: int) -> None:
    single = list(DurationBucketSampler(DURATIONS, 40.0, shuffle=False))
    assert len(single) % replicas == (0 if replicas == 2 else 4)  # 60 batches: uneven for 7 and 8 ranks
    ranks = [
        DurationBucketSampler(DURATIONS, 40.0, shuffle=False, num_replicas=replicas, rank=r, pad=False)
        for r in range(replicas)
    ]
    per_rank = [list(s) for s in ranks]
    assert [len(b) for b in per_rank] == [len(s) for s in ranks]
    assert max(len(b) for b in per_rank) - min(len(b) for b in per_rank) <= 1
    assert sum(len(b) for b in per_rank) == len(single)
    assert sorted(map(tuple, (b for batches in per_rank for b in batches))) == sorted(map(tuple, single))


def test_resume_at_batch_k_equals_the_rest_of_the_uninterrupted_epoch() -> None:
    full = _epoch(DurationBucketSampler(DURATIONS, 40.0, seed=7), 3)
    running = DurationBucketSampler(DURATIONS, 40.0, seed=7)
    running.set_epoch(3)
    iterator = iter(running)
    done = [next(iterator) for _ in range(5)]
    state = running.state_dict()
    assert state == {"epoch": 3, "batches_done": 5, "seed": 7}

    resumed = DurationBucketSampler(DURATIONS, 40.0, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # what Lightning calls at the start of the resumed epoch
    assert done + list(resumed) == full
    assert len(list(resumed)) == len(full)  # the offset applies once
    resumed.load_state_dict(state)
    resumed.set_epoch(4)  # another epoch: the offset does not leak into it
    assert list(resumed) == _epoch(DurationBucketSampler(DURATIONS, 40.0, seed=7), 4)


def test_resume_after_a_complete_epoch_starts_the_next() -> None:
    sampler = DurationBucketSampler(DURATIONS, 40.0)
    sampler.load_state_dict({"epoch": 2, "batches_done": len(sampler)})
    assert sampler.epoch == 3 and len(list(sampler)) == len(sampler)


def test_start_at_and_invalid_arguments() -> None:
    sampler = DurationBucketSampler(DURATIONS, 40.0)
    sampler.start_at(len(sampler) - 1, epoch=0)
    assert len(list(sampler)) == 1
    assert sampler.sampler is sampler  # Lightning's set_epoch hook finds it there
    with pytest.raises(ValueError, match="cannot start at batch"):
        sampler.start_at(len(sampler) + 1)
    with pytest.raises(ValueError, match="max_batch_seconds"):
        DurationBucketSampler(DURATIONS, 0)
    with pytest.raises(ValueError, match="rank 2 of num_replicas 2"):
        DurationBucketSampler(DURATIONS, 40.0, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="empty dataset"):
        DurationBucketSampler([], 40.0)
