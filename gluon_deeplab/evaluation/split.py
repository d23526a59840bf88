"""Evaluation of a whole split: one confusion matrix over every image, all devices busy.

Images are decoded ahead by worker threads (no shared memory, nothing to fork), spread one per
device in groups, and the forward passes of group k+1 are queued before group k's results are
read back: MXNet's engine runs them while the host waits on group k.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ..data.loader import default_num_workers
from .colormap import save_mask
from .inference import CropSize, denormalize, predict_probabilities_nd, save_probability_file
from .metrics import ConfusionMatrix

Sample = Tuple[int, Any, Any]  # (index, normalized image, label)


def _image_ids(dataset: Any) -> List[str]:
    ids = getattr(dataset, "ids", None)
    return [str(i) for i in ids] if ids is not None else [f"{i:06d}" for i in range(len(dataset))]


def _check_contexts(net: Any, ctxs: Sequence[mx.Context]) -> None:
    if not hasattr(net, "collect_params"):
        return
    params = list(net.collect_params().values())
    have = set(params[0].list_ctx()) if params else set(ctxs)
    missing = [str(c) for c in ctxs if c not in have]
    if missing:
        raise ValueError(f"the model's parameters live on {sorted(map(str, have))}, not on "
                         f"{missing}; build or load it with ctx= every evaluation context")


def prefetch_samples(dataset: Any, total: int, num_workers: int,
                     depth: int) -> Iterator[Sample]:
    """``(i, *dataset[i])`` for ``i < total`` in order; ``num_workers`` threads decode up to
    ``depth`` samples ahead of the consumer (0 workers: in the calling thread)."""
    if num_workers <= 0:
        for i in range(total):
            yield (i,) + tuple(dataset[i])
        return
    with ThreadPoolExecutor(num_workers, thread_name_prefix="gluon-deeplab-eval") as pool:
        pending: deque = deque()
        for i in range(total):
            pending.append((i, pool.submit(dataset.__getitem__, i)))
            if len(pending) >= max(1, depth):
                index, future = pending.popleft()
                yield (index,) + tuple(future.result())
        while pending:
            index, future = pending.popleft()
            yield (index,) + tuple(future.result())


def _groups(samples: Iterable[Sample], size: int) -> Iterator[List[Sample]]:
    group: List[Sample] = []
    for sample in samples:
        group.append(sample)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class _Recorder:
    """Reads a queued result back: CRF, confusion matrix, saved files, progress."""

    def __init__(self, confusion: ConfusionMatrix, crf, save_dir: Optional[str],
                 save_probabilities: bool, ids: List[str], bar: tqdm):
        self.confusion, self.crf, self.bar, self.ids = confusion, crf, bar, ids
        self.save_dir, self.save_probabilities = save_dir, save_probabilities
        self.keep_probabilities = crf is not None or bool(save_dir and save_probabilities)

    def __call__(self, index: int, image: Any, label: Any, out: mx.nd.NDArray) -> None:
        if out.ndim == 3:
            prob = out.asnumpy()
            if self.crf is not None:
                prob = self.crf(denormalize(image), prob)
            pred = prob.argmax(axis=0)
        else:
            prob, pred = None, out.asnumpy()
        pred = pred.astype(np.int64)
        label = label.asnumpy() if isinstance(label, mx.nd.NDArray) else label
        self.confusion.update(pred, np.asarray(label).astype(np.int64))
        if self.save_dir:
            stem = os.path.join(self.save_dir, self.ids[index])
            save_mask(pred, stem + ".png")
            if self.save_probabilities:
                save_probability_file(prob, stem + ".npy")
        self.bar.update(1)


def evaluate(net: Callable, dataset: Any, ctxs: Union[mx.Context, Sequence[mx.Context]],
             scales: Sequence[float] = (1.0,), flip: bool = False, fusion: str = "mean",
             crf: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
             progress: bool = True, max_images: Optional[int] = None,
             save_dir: Optional[str] = None, crop_size: CropSize = None,
             num_classes: Optional[int] = None, ignore_label: Optional[int] = None,
             save_probabilities: bool = False, num_workers: Optional[int] = None,
             buckets: bool = True) -> Tuple[Dict[str, Any], ConfusionMatrix]:
    """Evaluate ``net`` on every image of a 'val'-mode dataset; one confusion matrix.

    ``dataset[i]`` gives (normalized 3 x H x W image, H x W label). ``crf`` is a callable
    ``(rgb uint8 H x W x 3, probabilities C x H x W) -> probabilities`` (e.g.
    :class:`gluon_deeplab.evaluation.crf.DenseCRF`). ``save_dir`` receives one palette PNG
    per image named after its id, and with ``save_probabilities`` a ``<id>.npy`` beside it
    (float16 C x H x W, what :mod:`gluon_deeplab.evaluation.ensemble` breaks ties with).
    ``num_workers`` threads decode images ahead (default: 4 per context, at most the CPU
    count; 0: in this thread). ``buckets=False`` pads each image to its own ``stride * k + 1``
    instead of its bucket (:func:`gluon_deeplab.models.bucket_size`).
    Returns (metrics, confusion matrix).
    """
    ctxs = [ctxs] if isinstance(ctxs, mx.Context) else list(ctxs)
    if not ctxs:
        raise ValueError("evaluate needs at least one context")
    num_classes = num_classes or getattr(dataset, "num_classes", None) or net.num_classes
    if ignore_label is None:
        ignore_label = getattr(dataset, "ignore_label", 255)
    net_classes = getattr(net, "num_classes", None)
    if net_classes is not None and net_classes != num_classes:
        raise ValueError(f"the model predicts {net_classes} classes but the dataset has "
                         f"{num_classes}")
    _check_contexts(net, ctxs)
    if num_workers is None:
        num_workers = default_num_workers(len(ctxs))
    confusion = ConfusionMatrix(num_classes, ignore_label)
    total = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress, leave=False)
    record = _Recorder(confusion, crf, save_dir, save_probabilities, _image_ids(dataset), bar)

    def queue(group: List[Sample]) -> List[Tuple[int, Any, Any, mx.nd.NDArray]]:
        queued = []
        for (index, image, label), ctx in zip(group, ctxs):
            prob = predict_probabilities_nd(net, image, ctx, scales, flip, fusion, crop_size,
                                            buckets)
            out = prob if record.keep_probabilities else mx.nd.argmax(prob, axis=0)
            queued.append((index, image, label, out))
        return queued

    samples = prefetch_samples(dataset, total, num_workers, max(num_workers, 2 * len(ctxs)))
    previous: List[Tuple[int, Any, Any, mx.nd.NDArray]] = []
    try:
        for group in _groups(samples, len(ctxs)):
            current = queue(group)  # group k+1 is queued before group k is read back
            for item in previous:
                record(*item)
            previous = current
        for item in previous:
            record(*item)
    finally:
        bar.close()
    return confusion.metrics(), confusion
