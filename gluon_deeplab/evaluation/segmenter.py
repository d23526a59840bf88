"""The one inference API: ``load_segmenter(path)`` gives a :class:`Segmenter` whose ``segment``
turns images (file paths, PIL images, H x W x 3 uint8 arrays) into class masks at their own
size, in memory. ``predict.py`` writes its files from it, ``eval.py`` loads through it, and
images whose padded input shapes match can run as one batch with each result its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np

from ..data.io import image_rgb
from ..data.transforms import normalize
from ..deploy.export_format import exported_files
from .crf import DenseCRF
from .inference import CropSize, batch_key, predict_probabilities_batch
from .loading import InferenceModel, load_inference_model

PRECISIONS = ("fp32", "bf16", "int8")
EXPORT_SUFFIXES = ("-symbol.json", "-0000.params", "-meta.json")
Contexts = Union[mx.Context, Sequence[mx.Context], None]
# MXNet 1.9's graphs fail (a negative shape, deep in a C++ traceback) on an input side of 32768
# or more: such an image is refused in one line first.
MAX_SIDE = 32767


@dataclass
class Segmentation:
    """One image's result: ``mask`` (H x W uint8 class ids at the image's own size), the
    model's ``classes``, ``probabilities`` (C x H x W float32) when asked for, the RGB
    ``image`` that was segmented (upright) and its ``name`` (the file, when given one)."""

    mask: np.ndarray
    classes: List[str]
    image: np.ndarray
    probabilities: Optional[np.ndarray] = None
    name: Optional[str] = None

    def pixels_per_class(self) -> Dict[str, int]:
        """Pixel count of each class present in the mask, by name."""
        counts = np.bincount(self.mask.ravel(), minlength=len(self.classes))
        return {name: int(counts[i]) for i, name in enumerate(self.classes) if counts[i]}


def _contexts(ctx: Contexts) -> List[mx.Context]:
    if ctx is None:
        return [mx.cpu()]
    ctxs = [ctx] if isinstance(ctx, mx.Context) else list(ctx)
    if not ctxs or not all(isinstance(c, mx.Context) for c in ctxs):
        raise ValueError(f"ctx: expected an mx.Context or a list of them, got {ctx!r}")
    return ctxs


def _crf(crf: Union[bool, DenseCRF, None]) -> Optional[DenseCRF]:
    if crf is True:
        return DenseCRF()
    return crf or None


class Segmenter:
    """A loaded model (:class:`~.loading.InferenceModel`) and the devices it runs on; see
    :meth:`segment`. MXNet is not thread-safe: call it from one thread."""

    def __init__(self, model: InferenceModel, ctx: Contexts = None):
        self.model, self.ctxs = model, _contexts(ctx)

    @property
    def classes(self) -> List[str]:
        return list(self.model.classes)

    @property
    def net(self) -> Any:
        return self.model.net

    def batch_key(self, height: int, width: int, scales: Sequence[float] = (1.0,),
                  crop_size: CropSize = None, buckets: Optional[bool] = None) -> Any:
        """Images of one key (not None) can share a batch (:func:`~.inference.batch_key`)."""
        return batch_key(self.net, height, width, self.ctxs[0], scales, crop_size, buckets)

    def segment(self, images: Any, scales: Sequence[float] = (1.0,), flip: bool = False,
                crf: Union[bool, DenseCRF] = False, probabilities: bool = False, *,
                fusion: str = "mean", crop_size: CropSize = None,
                buckets: Optional[bool] = None, batch_size: int = 1) -> Any:
        """Segment one image (a :class:`Segmentation` back) or a list of them (a list back).

        As ``predict.py``: each image padded to its own ``output_stride * k + 1`` (or its
        size's bucket, ``buckets``; on a GPU by default), at every scale in ``scales`` and
        its mirror with ``flip``, fused by the mean or max (``fusion``), cut into windows
        larger than ``crop_size``, then refined by a dense ``crf`` (True: DeepLab's settings;
        or a :class:`DenseCRF`). ``batch_size`` > 1 runs up to that many images of one
        :meth:`batch_key` as one batch; each result is what the image gives alone.
        """
        single = not isinstance(images, (list, tuple))
        results = list(self.segment_iter([images] if single else images, scales, flip, crf,
                                         probabilities, fusion=fusion, crop_size=crop_size,
                                         buckets=buckets, batch_size=batch_size))
        return results[0] if single else results

    def segment_iter(self, images: Iterable[Any], scales: Sequence[float] = (1.0,),
                     flip: bool = False, crf: Union[bool, DenseCRF] = False,
                     probabilities: bool = False, *, fusion: str = "mean",
                     crop_size: CropSize = None, buckets: Optional[bool] = None,
                     batch_size: int = 1) -> Iterator[Segmentation]:
        """:meth:`segment` of a stream (files of a folder, frames of a video), yielded in
        order; images are read as they are needed, ``batch_size`` x devices at a time."""
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        refine = _crf(crf)
        settings = dict(scales=tuple(scales), flip=flip, fusion=fusion, crop_size=crop_size,
                        buckets=buckets)
        chunk: List[Tuple[np.ndarray, Optional[str]]] = []
        for index, item in enumerate(images):
            chunk.append(_decoded(item, index))
            if len(chunk) == int(batch_size) * len(self.ctxs):
                yield from self._run_chunk(chunk, settings, int(batch_size), refine,
                                           probabilities)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk, settings, int(batch_size), refine, probabilities)

    def _batches(self, chunk: List[Tuple[np.ndarray, Optional[str]]], settings: Dict[str, Any],
                 batch_size: int) -> List[List[int]]:
        """Indices of ``chunk`` grouped by batch key (first appearance first), at most
        ``batch_size`` a group; an image without a key is a group alone."""
        groups: Dict[Any, List[List[int]]] = {}
        order: List[List[int]] = []
        for i, (rgb, name) in enumerate(chunk):
            key = self.batch_key(rgb.shape[0], rgb.shape[1], settings["scales"],
                                 settings["crop_size"], settings["buckets"])
            if key is not None and max(max(shape) for shape in key) > MAX_SIDE:
                raise ValueError(f"{name or 'image'}: {rgb.shape[1]}x{rgb.shape[0]} runs padded "
                                 f"to {key}; the model takes sides up to {MAX_SIDE} pixels")
            batches = groups.setdefault(key, []) if key is not None else []
            if not batches or len(batches[-1]) == batch_size:
                batches.append([])
                order.append(batches[-1])
            batches[-1].append(i)
        return order

    def _run_chunk(self, chunk: List[Tuple[np.ndarray, Optional[str]]],
                   settings: Dict[str, Any], batch_size: int, crf: Optional[DenseCRF],
                   keep: bool) -> Iterator[Segmentation]:
        """Queue every batch of ``chunk`` (round-robin over the devices) before reading any
        back, so that all devices work; then yield the results in input order."""
        queued: Dict[int, mx.nd.NDArray] = {}
        for n, batch in enumerate(self._batches(chunk, settings, batch_size)):
            ctx = self.ctxs[n % len(self.ctxs)]
            probs = predict_probabilities_batch(
                self.net, [normalize(chunk[i][0]) for i in batch], ctx, settings["scales"],
                settings["flip"], settings["fusion"], settings["crop_size"],
                settings["buckets"])
            queued.update(zip(batch, probs))
        for i, (rgb, name) in enumerate(chunk):
            prob = queued.pop(i).asnumpy()
            if crf is not None:
                prob = crf(rgb, prob)
            yield Segmentation(prob.argmax(axis=0).astype(np.uint8), self.classes, rgb,
                               prob.astype(np.float32) if keep else None, name)


def _decoded(item: Any, index: int) -> Tuple[np.ndarray, Optional[str]]:
    """(RGB array, file name or None) of one input; errors name the file or the position."""
    if isinstance(item, (str, os.PathLike)):
        return image_rgb(item), os.fspath(item)
    return image_rgb(item, name=f"image {index}"), None


def export_prefix(path: str) -> Optional[str]:
    """The export prefix ``path`` names (the prefix itself or one of its files), else None."""
    for prefix in [path] + [path[:-len(s)] for s in EXPORT_SUFFIXES if path.endswith(s)]:
        if os.path.isfile(exported_files(prefix)[0]):
            return prefix
    return None


def open_segmenter(checkpoint: Optional[str], exported: Optional[str], ctx: Contexts = None,
                   output_stride: Optional[int] = None,
                   precision: Optional[str] = None) -> Segmenter:
    """A :class:`Segmenter` of a checkpoint or an export named as eval.py and predict.py take
    them (``--checkpoint`` / ``--exported``); ``precision``, when given, must be the model's."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if checkpoint is not None and precision not in (None, "fp32"):
        raise ValueError(f"{checkpoint} is a training checkpoint (fp32); a {precision} model "
                         f"is an export: gluon-deeplab-export --dtype {precision}, then load it")
    ctxs = _contexts(ctx)
    model = load_inference_model(checkpoint, exported, ctxs, output_stride)
    if precision is not None and model.precision != precision:
        raise ValueError(f"{exported} is a {model.precision} export, not {precision}")
    return Segmenter(model, ctxs)


def load_segmenter(path: str, ctx: Contexts = None, precision: Optional[str] = None,
                   output_stride: Optional[int] = None) -> Segmenter:
    """A :class:`Segmenter` of ``path``: an export (its prefix, or one of its files; fp32,
    bf16 or INT8) or a training checkpoint (a ``.params`` file or a run folder). ``ctx``: a
    device or a list (default: the CPU); ``precision``: checked against the model's;
    ``output_stride``: overrides a checkpoint's."""
    path = os.fspath(path)
    prefix = export_prefix(path)
    if prefix is not None:
        if output_stride is not None:
            raise ValueError(f"output_stride applies to checkpoints only ({prefix} is an "
                             "export, whose stride is fixed)")
        return open_segmenter(None, prefix, ctx, precision=precision)
    if os.path.isdir(path) or os.path.isfile(path):
        return open_segmenter(path, None, ctx, output_stride, precision)
    raise FileNotFoundError(f"{path}: no checkpoint (.params file or run folder) or export "
                            f"(PREFIX with {exported_files(path)[0]}) there")
