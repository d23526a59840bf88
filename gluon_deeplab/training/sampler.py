"""The training data stream: reproducible by (seed, iteration), one shard per distributed worker."""

from __future__ import annotations

from typing import Optional

import numpy as np
from mxnet.gluon.data import DataLoader, Sampler

from ..data import SeededBatchSampler, SegmentationDataset


class ShardBatchSampler(Sampler):
    """Batches of worker ``rank``'s shard (samples ``rank, rank + n, ...``) as dataset keys.

    Wraps the data package's :class:`SeededBatchSampler` over the shard, so batch ``k`` is a
    pure function of (seed, rank, k): a run resumed at iteration ``k`` sees the batches (and
    augmentations) the uninterrupted run would have seen. With one worker the batches are
    exactly those of ``make_dataloader(..., seed=seed)``.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, start_iteration: int,
                 num_iterations: int, rank: int = 0, num_shards: int = 1):
        if not 0 <= rank < num_shards:
            raise ValueError(f"rank {rank} outside 0..{num_shards - 1}")
        self.indices = np.arange(rank, num_samples, num_shards)
        if len(self.indices) == 0:
            raise ValueError(f"{num_samples} training samples cannot feed {num_shards} workers")
        # Shards get distinct augmentation seeds; rank 0 keeps the plain seed.
        shard_seed = int(seed) + (rank << 32)
        self.inner = SeededBatchSampler(len(self.indices), batch_size, True, shard_seed,
                                        "rollover", start_iteration, num_iterations)

    def __iter__(self):
        for batch in self.inner:
            yield [(int(self.indices[i]), key) for i, key in batch]

    def __len__(self) -> int:
        return len(self.inner)


def make_train_loader(dataset: SegmentationDataset, batch_size: int, seed: int,
                      start_iteration: int, max_iter: int, num_workers: int = 0,
                      rank: int = 0, num_shards: int = 1,
                      timeout: Optional[int] = None) -> DataLoader:
    """Batches ``start_iteration .. max_iter - 1`` of this worker's shard of ``dataset``."""
    sampler = ShardBatchSampler(len(dataset), batch_size, seed, start_iteration,
                                max_iter - start_iteration, rank, num_shards)
    kwargs = {"timeout": timeout} if timeout else {}
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, **kwargs)
