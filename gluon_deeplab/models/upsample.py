"""Pixel-exact upsampling of a strided feature grid: cell j of stride s stays on pixel ``s * j``.

With "same" padding, cell j of a stride-``s`` grid is centred on pixel ``s * j`` of the finer
grid, so output pixel y must read cell y / s. Bilinear resizing with corners aligned from h
cells to R pixels reads cell y * (h - 1) / (R - 1): the two agree when R = (h - 1) * s + 1
(e.g. 513 at s = 16). So the cells are resized to exactly that size, and the at most s - 1
rows and columns beyond the last cell (the target has ceil(H / s) = h cells) are filled by
edge padding, then cut to the target's size. At H = (h - 1) * s + 1 this is the plain resize.
"""

from __future__ import annotations

from typing import Tuple


def _grid_span(F, cells, factor: int):
    """A 1-channel tensor of (h - 1) * factor + 1 rows and (w - 1) * factor + 1 columns for
    ``cells`` of h x w: the pixels that a stride-``factor`` grid spans, to resize or crop
    "like" (every size comes from the tensor)."""
    ref = F.UpSampling(F.slice_axis(cells, axis=1, begin=0, end=1), scale=factor,
                       sample_type="nearest")
    ref = F.slice_axis(ref, axis=2, begin=0, end=-(factor - 1))
    return F.slice_axis(ref, axis=3, begin=0, end=-(factor - 1))


def pad_to_stride(F, x, stride: int):
    """``x`` (N x C x H x W) padded at the bottom and right with zeros (the mean colour, once
    normalized) to :func:`padded_size` of H and W, as inference pads an image; in a symbol
    graph too, at any input size."""
    if stride == 1:
        return x
    # ceil((H - 1) / stride) + 1 cells: a 1 x 1 pool of that stride with 'full' rounding.
    cells = F.Pooling(F.slice_axis(x, axis=1, begin=0, end=1), kernel=(1, 1),
                      stride=(stride, stride), pool_type="max", pooling_convention="full")
    padded = F.pad(x, mode="constant", constant_value=0.0,
                   pad_width=(0, 0, 0, 0, 0, stride - 1, 0, stride - 1))
    return F.slice_like(padded, _grid_span(F, cells, stride), axes=(2, 3))


def exact_upsample(F, x, like, factor: int):
    """Resize ``x`` (N x C x h x w, cell j at pixel ``factor * j``) to ``like``'s H x W.

    Every size comes from the tensors, so a hybridized graph accepts any input size.
    """
    if factor == 1:
        return F.slice_like(x, like, axes=(2, 3))
    ref = _grid_span(F, x, factor)
    up = F.contrib.BilinearResize2D(x, like=ref, mode="like", align_corners=True)
    up = F.pad(up, mode="edge", pad_width=(0, 0, 0, 0, 0, factor - 1, 0, factor - 1))
    return F.slice_like(up, like, axes=(2, 3))


def exact_upsample_fixed(F, x, size: Tuple[int, int], factor: int):
    """:func:`exact_upsample` to a constant ``size`` (H, W): resizing and padding by constants
    only, for converters (ONNX) that cannot resize "like" another tensor."""
    height, width = size
    exact = [(-(-n // factor) - 1) * factor + 1 for n in (height, width)]
    up = F.contrib.BilinearResize2D(x, height=exact[0], width=exact[1], align_corners=True)
    if exact == [height, width]:
        return up
    return F.pad(up, mode="edge",
                 pad_width=(0, 0, 0, 0, 0, height - exact[0], 0, width - exact[1]))


def padded_size(size: int, stride: int) -> int:
    """The smallest ``stride * k + 1 >= size``: an image padded to it puts its last feature
    cell on its last pixel, so no pixel is extrapolated (official DeepLab's 513)."""
    return stride * max(0, -(-(size - 1) // stride)) + 1


BUCKET_STEP = 128


def bucket_size(size: int, stride: int, step: int = BUCKET_STEP) -> int:
    """The size an evaluation input of ``size`` pixels is padded to: a ``stride * k + 1`` from
    a short fixed ladder, so a run sees few input shapes (each new one re-plans the cached graph
    and, on GPUs, re-runs cuDNN autotune and keeps buffers of its own size). At stride 16:
    17, 33, 65, 129, then every ``step``: 257, 385, 513 (VOC), 641, 769, ... ``>=``
    :func:`padded_size`, so the last feature cell still lies inside the padded input."""
    cells = -(-(size - 1) // stride)  # padded_size's k
    step_cells = max(1, step // stride)
    if cells <= 1:
        return padded_size(size, stride)
    if cells <= step_cells:
        cells = 1 << (cells - 1).bit_length()  # next power of two
    else:
        cells = -(-cells // step_cells) * step_cells
    return stride * cells + 1
