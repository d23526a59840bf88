"""Data loaders: reproducible, resumable batch order and augmentation; worker processes.

Training batches are a pure function of ``(seed, iteration)``: batch ``k`` holds positions
``[k*B, (k+1)*B)`` of an endless stream made of one seeded permutation per epoch ('rollover'), and
the sample at stream position (epoch ``e``, slot ``j``) is augmented with
``np.random.default_rng((seed, 1, e, j))``. So the same seed gives the same batches with any
``num_workers``, and a trainer resuming at iteration N gets exactly the batches it would have seen:

    loader = make_dataloader(ds, B, num_workers=W, seed=S, start_iteration=N,
                             num_iterations=max_iter - N)
    for it, (data, label) in enumerate(loader, start=N): ...
"""

from __future__ import annotations

import os
import time
from typing import List, Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet.gluon.data import DataLoader, Sampler

from .base import SegmentationDataset
from .transforms import to_ndarray


class SeededBatchSampler(Sampler):
    """Batches of ``(index, rng_seed)`` keys; batch ``k`` depends only on (seed, k).

    Without ``num_iterations`` each pass yields one epoch's worth (``len(self)``) of batches and
    the next pass continues where it stopped; with it, one pass yields batches
    ``start_iteration .. start_iteration + num_iterations - 1``. ``shard=(rank, n)`` restricts
    the stream to samples ``rank, rank + n, ...`` (one distributed worker's share), with an
    augmentation seed of its own for ``rank > 0``.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True,
                 seed: Optional[int] = None, last_batch: str = "rollover",
                 start_iteration: int = 0, num_iterations: Optional[int] = None,
                 shard: Tuple[int, int] = (0, 1)):
        rank, num_shards = shard
        if not 0 <= rank < num_shards:
            raise ValueError(f"shard rank {rank} outside 0..{num_shards - 1}")
        self.indices = np.arange(rank, num_samples, num_shards)
        if num_samples and len(self.indices) == 0:
            raise ValueError(f"{num_samples} samples cannot feed {num_shards} shards")
        num_samples = len(self.indices)
        if last_batch not in ("rollover", "keep", "discard"):
            raise ValueError(f"last_batch must be rollover/keep/discard, got {last_batch!r}")
        if batch_size < 1 or num_samples < 1:
            raise ValueError(f"need batch_size >= 1 and samples >= 1, got {batch_size}, "
                             f"{num_samples}")
        if last_batch == "discard" and batch_size > num_samples:
            raise ValueError(f"batch_size {batch_size} > {num_samples} samples "
                             f"with last_batch={last_batch!r}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(np.random.SeedSequence().entropy % (2 ** 63)) if seed is None else seed
        self.seed += rank << 32
        self.last_batch = last_batch
        self.iteration = int(start_iteration)
        self.num_iterations = num_iterations
        self._perm_epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = (np.random.default_rng((self.seed, 0, epoch)).permutation(self.num_samples)
                          if self.shuffle else np.arange(self.num_samples))
            self._perm_epoch = epoch
        return self._perm

    def batches_per_epoch(self) -> int:
        n, b = self.num_samples, self.batch_size
        if self.last_batch == "keep":
            return -(-n // b)
        # rollover: a batch larger than the dataset spans several epochs of the stream
        return max(1, n // b) if self.last_batch == "rollover" else n // b

    def batch(self, iteration: int) -> List[Tuple[int, Tuple[int, int, int, int]]]:
        """The keys of batch number ``iteration`` (counted from the start of training)."""
        n, b = self.num_samples, self.batch_size
        if self.last_batch == "rollover":
            positions = [divmod(p, n) for p in range(iteration * b, (iteration + 1) * b)]
        else:
            epoch, k = divmod(iteration, self.batches_per_epoch())
            positions = [(epoch, j) for j in range(k * b, min(n, (k + 1) * b))]
        return [(int(self.indices[self._permutation(e)[j]]), (self.seed, 1, e, j))
                for e, j in positions]

    def __iter__(self):
        count = self.num_iterations if self.num_iterations is not None else len(self)
        start = self.iteration
        for k in range(start, start + count):
            self.iteration = k + 1
            yield self.batch(k)

    def __len__(self) -> int:
        return self.num_iterations if self.num_iterations is not None else self.batches_per_epoch()


class _NumpySamples:
    """A picklable view of a dataset returning numpy samples (no per-sample NDArray); ``raw``:
    training crops as uint8 (normalized on the device by ``normalize_batch``)."""

    def __init__(self, dataset: SegmentationDataset, raw: bool = False):
        self.dataset = dataset
        self.raw = raw

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        return self.dataset.get_numpy(key, raw=self.raw)


def default_num_workers(num_devices: int, cpu_count: Optional[int] = None) -> int:
    """Loader worker processes when none are asked for: 4 per device (each device needs a
    batch's worth of decoded, augmented crops per step), at most one per CPU."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(4 * max(1, num_devices), cpus))


class SharedMemoryError(OSError):
    """Loader workers would not fit their batches in the free shared memory (/dev/shm)."""


def check_shared_memory(batch_bytes: int, depth: int, num_workers: int,
                        path: str = "/dev/shm") -> None:
    """Raise :class:`SharedMemoryError` when ``depth`` batches of ``batch_bytes`` do not fit in
    the free space of ``path``: worker processes pass their batches through it and die with a
    bus error when it runs out (Docker gives containers 64 MB unless told otherwise)."""
    try:
        stat = os.statvfs(path)
    except (OSError, AttributeError):  # no /dev/shm (macOS, Windows): nothing to check
        return
    free = stat.f_bavail * stat.f_frsize
    need = batch_bytes * depth
    if need <= free:
        return
    mib = 2.0 ** 20
    raise SharedMemoryError(
        f"{path} has {free / mib:.0f} MiB free but {num_workers} loader workers keep up to "
        f"{depth} batches of {batch_bytes / mib:.1f} MiB ({need / mib:.0f} MiB) in it and die "
        f"with a bus error when it runs out: in Docker run with --shm-size="
        f"{-(-2 * need // 2 ** 30)}g or --ipc=host, or lower --num_workers")


def _check_train_shared_memory(dataset: SegmentationDataset, batch_size: int,
                               num_workers: int, prefetch: Optional[int]) -> None:
    """The check above for uint8 training crops and gluon's prefetch depth (2 batches per
    worker by default), plus the batch the training step holds."""
    crop = getattr(dataset.transform, "crop_h", None), getattr(dataset.transform, "crop_w", None)
    if None in crop:
        return
    depth = (2 * num_workers if prefetch is None else int(prefetch)) + 1
    check_shared_memory(batch_size * 4 * crop[0] * crop[1], depth, num_workers)


class _Batchify:
    """Stack numpy samples into (images N x 3 x H x W, labels N x H x W) NDArrays of the
    samples' dtype, or (``as_list``) return a list of float32 (image, label) NDArray pairs
    (validation: sizes differ)."""

    def __init__(self, shared: bool, as_list: bool):
        self.shared = shared
        self.as_list = as_list

    def __call__(self, samples):
        ctx = mx.Context("cpu_shared", 0) if self.shared else mx.cpu()
        if self.as_list:
            return [(to_ndarray(i, ctx), to_ndarray(lb, ctx)) for i, lb in samples]
        return (to_ndarray(np.stack([s[0] for s in samples]), ctx, dtype=None),
                to_ndarray(np.stack([s[1] for s in samples]), ctx, dtype=None))


class SegmentationLoader(DataLoader):
    """A gluon DataLoader that keeps its batch sampler reachable (``loader.batch_sampler``)."""

    def __init__(self, dataset, batch_sampler, batchify_fn, num_workers, **kwargs):
        self.batch_sampler = batch_sampler
        super().__init__(dataset, batch_sampler=batch_sampler, batchify_fn=batchify_fn,
                         num_workers=num_workers, **kwargs)


def make_dataloader(dataset: SegmentationDataset, batch_size: int, shuffle: Optional[bool] = None,
                    num_workers: int = 0, last_batch: Optional[str] = None,
                    seed: Optional[int] = None, start_iteration: int = 0,
                    num_iterations: Optional[int] = None, shard: Tuple[int, int] = (0, 1),
                    **kwargs) -> SegmentationLoader:
    """A DataLoader over ``dataset`` (worker processes when ``num_workers > 0``).

    mode 'train': batches ``(images uint8 N x 3 x C x C, labels uint8 N x C x C)`` for
    ``mx.gluon.utils.split_and_load`` and ``normalize_batch`` on each device (a quarter of the
    bytes of float32); ``last_batch`` defaults to 'rollover'; order and augmentation are
    reproducible by ``seed`` and resumable by ``start_iteration`` (see the module docstring).
    Worker processes need the batches in shared memory: too little free is a
    :class:`SharedMemoryError` here, not a bus error later. mode 'val': batches are lists of
    float32 (image 3 x H x W, label H x W) pairs, ``shuffle`` and ``last_batch`` default to
    False / 'keep' (every image once). ``shard=(rank, num_workers)``: this distributed worker's
    share of the samples. Extra ``kwargs`` go to gluon's DataLoader (e.g. ``timeout``,
    ``prefetch``, ``thread_pool``: worker threads, no shared memory).
    """
    val = dataset.mode == "val"
    if shuffle is None:
        shuffle = not val
    if last_batch is None:
        last_batch = "keep" if val else "rollover"
    sampler = SeededBatchSampler(len(dataset), batch_size, shuffle, seed, last_batch,
                                 start_iteration, num_iterations, shard)
    processes = num_workers > 0 and not kwargs.get("thread_pool", False)
    if processes and not val:
        _check_train_shared_memory(dataset, batch_size, num_workers, kwargs.get("prefetch"))
    return SegmentationLoader(_NumpySamples(dataset, raw=not val), sampler,
                              _Batchify(shared=processes, as_list=val),
                              num_workers=num_workers, **kwargs)


def benchmark_loader(dataset: SegmentationDataset, batch_size: int, num_workers: int = 0,
                     num_batches: int = 20, seed: int = 0) -> float:
    """Images per second of ``make_dataloader`` (first batch = warm-up, not timed)."""
    loader = make_dataloader(dataset, batch_size, num_workers=num_workers, seed=seed,
                             num_iterations=num_batches + 1)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    images = 0
    for batch in it:
        images += len(batch) if isinstance(batch, list) else batch[0].shape[0]
    elapsed = time.perf_counter() - start
    return images / max(elapsed, 1e-9)
