"""Per-sample random draws that do not depend on how a training step's batch is split.

One optimiser step reads a global batch of G samples (`TrainConfig.batch_size`). Under torchrun it is
split over the ranks, and gradient accumulation splits each rank's share into micro-batches. For the
split not to change what is trained, every draw with one value per sample (timesteps, noise, frame
masks, caption dropout, the injector's noise) is made for all G samples, from generators that are in
the same state on every rank and at the start of every micro-batch, and each piece keeps its own rows
(`arlon/training/common.py` restores the generators between micro-batches). So 2 ranks x 4 samples
train exactly what 1 process x 8 samples trains, and a run stopped on 2 ranks resumes on 1.

Outside a training step (sampling, evaluation, tests) no rows are set and every draw is the local
batch's own, byte for byte what it was before this module existed; a whole unsplit batch (rows 0..G of
G) draws the same way.

What stays outside: `nn.Dropout` masks (the AR's `ar.dropout`, 0 in both presets) and the latent
VQ-VAEs' dead-code restarts, which is why those stages train in one process (`DISTRIBUTED_STAGES`).
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T", bound=Sequence)


@dataclass(frozen=True)
class BatchRows:
    """This piece's rows [start, stop) of a global batch of `total` samples."""

    start: int
    stop: int
    total: int

    def __post_init__(self):
        if not 0 <= self.start < self.stop <= self.total:
            raise ValueError(f"rows [{self.start}, {self.stop}) do not lie in a batch of {self.total}")

    @property
    def size(self) -> int:
        return self.stop - self.start


_ROWS: ContextVar[BatchRows | None] = ContextVar("arlon_global_batch_rows", default=None)


@contextlib.contextmanager
def global_batch_rows(rows: BatchRows) -> Iterator[None]:
    """Within the block, `per_sample` draws for the whole global batch and keeps `rows`."""
    token = _ROWS.set(rows)
    try:
        yield
    finally:
        _ROWS.reset(token)


def per_sample(draw: Callable[[int], T], local: int) -> T:
    """`draw(n)` makes one draw for n samples along the first dimension; this returns the local batch's
    `local` rows of it: draw(local) itself outside a split step, else the rows of draw(G)."""
    rows = _ROWS.get()
    if rows is None or rows.size == rows.total:
        return draw(local)
    if rows.size != local:
        raise ValueError(f"a draw for {local} samples inside a split step whose piece holds {rows.size}")
    return draw(rows.total)[rows.start : rows.stop]
