"""The data order of a run: seeded epoch permutations, every step's global batch and its shard per
process, and a one-step prefetch."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import torch

from clvsmim.data import get_batch
from clvsmim.rng import pcg_hash

# --------------------------------------------------------------------------- data order

def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The global sample order of one epoch: a permutation of ``range(n)`` seeded by ``(seed, epoch)``."""
    mixed = pcg_hash(pcg_hash(torch.tensor(seed, dtype=torch.int64)) ^ epoch)
    generator = torch.Generator().manual_seed(int(mixed))
    return torch.randperm(n, generator=generator)


class BatchPlan:
    """Global batch indices of every step, and each process's shard of them."""

    def __init__(self, num_samples: int, batch_size: int, seed: int):
        if num_samples < batch_size:
            raise ValueError(f"dataset has {num_samples} samples, fewer than one batch of {batch_size}")
        self.num_samples, self.batch_size, self.seed = num_samples, batch_size, seed
        self.steps_per_epoch = num_samples // batch_size
        self._epoch, self._perm = -1, None

    def global_indices(self, step: int) -> torch.Tensor:
        """The ``batch_size`` dataset indices of 0-based step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, epoch_permutation(self.num_samples, self.seed, epoch)
        return self._perm[within * self.batch_size:(within + 1) * self.batch_size]

    def shard(self, indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
        """Contiguous slice ``[rank·B/W, (rank+1)·B/W)`` of a global batch."""
        per = len(indices) // world
        return indices[rank * per:(rank + 1) * per]


def default_batch_fn(dataset, indices: torch.Tensor):
    return get_batch(dataset, indices)


def prefetched(produce: Callable[[int], Any], steps: range) -> Iterator[tuple[int, Any]]:
    """Yield ``(s, produce(s))`` for ``s`` in ``steps`` while the next item loads in a thread."""
    if not steps:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(produce, steps[0])
        for i, s in enumerate(steps):
            item = pending.result()
            if i + 1 < len(steps):
                pending = pool.submit(produce, steps[i + 1])
            yield s, item
