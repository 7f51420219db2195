"""Duration-bucketed batches with a bound on padded audio seconds, deterministic and DDP-aware.

Batches are packed once from the utterances sorted by duration, so each holds utterances of similar
length and ``len(batch) * longest <= max_batch_seconds`` (an utterance longer than the bound gets a
batch of its own). Every epoch shuffles the *order* of the batches with ``(seed, epoch)``, the way
fairseq does: the number of batches is the same every epoch, which keeps Lightning's epoch length and
every DDP rank's batch count exact.

Under DDP every rank builds the same global order and takes every ``num_replicas``-th batch; for
training the list is padded by repeating its first batches (or truncated with ``drop_last``) so that all
ranks get the same number of batches. Evaluation samplers use ``pad=False``: every batch exactly once,
so the ranks' counts may differ by one (the metrics are reduced once per epoch, not per step).

Exact mid-epoch resume: ``load_state_dict({"epoch": e, "batches_done": k})`` makes the next
iteration of epoch ``e`` start at this rank's batch ``k``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

log = logging.getLogger(__name__)


def pack_by_duration(durations: Sequence[float], max_batch_seconds: float, order: np.ndarray) -> list[list[int]]:
    """Greedy packing of ``order`` (indices sorted by duration) into padded-seconds-bounded batches."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for idx in order.tolist():
        dur = float(durations[idx])
        new_longest = max(longest, dur)
        if current and new_longest * (len(current) + 1) > max_batch_seconds:
            batches.append(current)
            current, new_longest = [], dur
        current.append(idx)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


class DurationBucketSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of dataset indices.

    Args:
        durations: duration of every item, in seconds.
        max_batch_seconds: bound on ``batch size * longest item`` (padded audio seconds).
        shuffle: shuffle the batch order every epoch (``False``: shortest batches first, fixed).
        seed: base seed; the order of epoch ``e`` depends on ``(seed, e)`` only.
        num_replicas: DDP world size.
        rank: this process's DDP rank.
        drop_last: drop the last global batches instead of repeating the first ones, when the
            batch count does not divide by ``num_replicas``.
        pad: repeat batches so that every rank gets as many (training); ``False``: every batch exactly
            once and uneven counts (evaluation). ``drop_last`` takes precedence.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        pad: bool = True,
    ) -> None:
        if max_batch_seconds <= 0:
            raise ValueError(f"data.max_batch_seconds must be > 0, got {max_batch_seconds}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid DDP placement: rank {rank} of num_replicas {num_replicas}")
        self.durations = np.asarray(durations, dtype=np.float64)
        if len(self.durations) == 0:
            raise ValueError("cannot batch an empty dataset: the subset has no utterances left")
        self.max_batch_seconds = float(max_batch_seconds)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.pad = pad
        self.epoch = 0
        self._start_batch = 0
        self._start_epoch: int | None = None
        self._yielded = 0
        # Stable sort by duration; ties broken by a seeded permutation (not by index).
        tie_break = np.random.default_rng(self.seed).permutation(len(self.durations))
        order = np.lexsort((tie_break, self.durations))
        self._batches = pack_by_duration(self.durations, self.max_batch_seconds, order)
        too_long = int((self.durations > self.max_batch_seconds).sum())
        if too_long:
            log.warning(
                "%d utterances are longer than max_batch_seconds=%s: each gets a batch of its own",
                too_long,
                self.max_batch_seconds,
            )
        n = len(self._batches)
        if drop_last and n >= num_replicas:
            self._per_rank = n // num_replicas
        elif pad:
            self._per_rank = math.ceil(n / num_replicas)
        else:  # batches rank, rank + R, rank + 2R, ... < n
            self._per_rank = len(range(rank, n, num_replicas))

    @property
    def sampler(self) -> DurationBucketSampler:
        """Itself: Lightning calls ``set_epoch`` on ``dataloader.batch_sampler.sampler`` each epoch."""
        return self

    @property
    def num_global_batches(self) -> int:
        """Batches before the DDP split."""
        return len(self._batches)

    def __len__(self) -> int:
        """Batches this rank yields in a full epoch."""
        return self._per_rank

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order. A pending resume offset survives only for its own epoch."""
        self.epoch = int(epoch)
        if self._start_epoch is not None and self._start_epoch != self.epoch:
            self._start_batch, self._start_epoch = 0, None

    def epoch_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of this rank for ``epoch`` (default: the current one), in order."""
        epoch = self.epoch if epoch is None else epoch
        order = np.arange(len(self._batches))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self._batches))
        if not self.pad and not self.drop_last:
            return [list(self._batches[i]) for i in order[self.rank :: self.num_replicas]]
        total = self._per_rank * self.num_replicas
        if total > len(order):
            order = np.concatenate([order, np.resize(order, total - len(order))])
        order = order[:total]
        return [list(self._batches[i]) for i in order[self.rank :: self.num_replicas]]

    def __iter__(self) -> Iterator[list[int]]:
        start = self._start_batch if self._start_epoch in (None, self.epoch) else 0
        self._start_batch, self._start_epoch = 0, None
        self._yielded = start
        for batch in self.epoch_batches()[start:]:
            self._yielded += 1
            yield batch

    def start_at(self, batch: int, epoch: int | None = None) -> None:
        """Make the next iteration of ``epoch`` (default: the current one) begin at batch ``batch``."""
        if not 0 <= batch <= self._per_rank:
            raise ValueError(f"cannot start at batch {batch}: an epoch has {self._per_rank} batches on this rank")
        epoch = self.epoch if epoch is None else int(epoch)
        self.epoch = epoch
        self._start_batch, self._start_epoch = int(batch), epoch

    def state_dict(self) -> dict[str, Any]:
        """``epoch`` and ``batches_done`` (batches handed out in the current iteration)."""
        return {"epoch": self.epoch, "batches_done": self._yielded, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration of ``state["epoch"]`` starts at ``state["batches_done"]``."""
        if int(state.get("seed", self.seed)) != self.seed:
            log.warning(
                "sampler state was saved with seed %s, this sampler uses %s: the order will differ",
                state.get("seed"),
                self.seed,
            )
        batches_done = int(state.get("batches_done", 0))
        epoch = int(state.get("epoch", 0))
        if batches_done >= self._per_rank:  # the saved epoch was complete: go on with the next one
            self.epoch, self._start_batch, self._start_epoch = epoch + 1, 0, None
            return
        self.start_at(batches_done, epoch)
