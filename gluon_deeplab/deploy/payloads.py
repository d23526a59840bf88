"""What the service reads and writes: an uploaded image checked from its header before it is
decoded (size, pixel count: a PNG bomb is refused unread), decoded strictly (a truncated file
is an error whatever gluoncv set ``LOAD_TRUNCATED_IMAGES`` to), and a :class:`Segmentation`
as a class-id PNG, a VOC-coloured overlay or JSON in Hugging Face's image-segmentation shape.
"""

from __future__ import annotations

import base64
import io
import struct
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
from PIL import Image

from ..data.io import DataError, image_rgb
from ..evaluation.segmenter import MAX_SIDE
from ..evaluation.visualize import overlay

IMAGE_TYPES = ("image/png", "image/jpeg")
FORMATS = ("png", "overlay", "json")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


class RequestError(Exception):
    """A request refused with an HTTP ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _png_header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) of a PNG's IHDR, read without PIL (which refuses 0 x 0 outright)."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _checked_size(width: int, height: int, max_pixels: int,
                  padded: Optional[Callable[[int, int], Tuple[int, int]]]) -> None:
    if width == 0 or height == 0:
        raise RequestError(400, f"the image is {width}x{height}: expected at least 1x1 pixels")
    if width * height > max_pixels:
        raise RequestError(413, f"the image is {width}x{height} = {width * height} pixels, "
                                f"over this service's --max_pixels {max_pixels}")
    ph, pw = padded(height, width) if padded is not None else (height, width)
    if max(ph, pw) > MAX_SIDE:
        raise RequestError(413, f"the image is {width}x{height}: the model takes sides up to "
                                f"{MAX_SIDE} pixels (MXNet's limit; padded: {pw}x{ph})")
    if ph * pw > max_pixels:
        raise RequestError(413, f"the image is {width}x{height}, which the model runs padded "
                                f"to {pw}x{ph} = {ph * pw} pixels, over this service's "
                                f"--max_pixels {max_pixels}")


def decode_image(data: bytes, max_pixels: int,
                 padded: Optional[Callable[[int, int], Tuple[int, int]]] = None) -> np.ndarray:
    """The RGB uint8 array of an uploaded PNG or JPEG: its size is checked from the header
    first (``padded(h, w)``: the input shape the model runs, also within ``max_pixels``), so
    that a huge image is refused before any decoding. :class:`RequestError` otherwise."""
    if not data:
        raise RequestError(400, "empty body: expected a PNG or JPEG image")
    header = _png_header_size(data)
    if header is not None:
        _checked_size(header[0], header[1], max_pixels, padded)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise RequestError(413, f"the image is too large ({err})") from None
    except Exception as err:
        if data.startswith((PNG_SIGNATURE, JPEG_SIGNATURE)):  # a PNG or JPEG, cut or broken
            raise RequestError(400, f"the image: unreadable or corrupt header ({err})") from None
        raise RequestError(415, f"the body ({len(data)} bytes) is not a PNG or JPEG "
                                "image") from None
    _checked_size(image.width, image.height, max_pixels, padded)
    try:
        return image_rgb(image, name="the image")
    except DataError as err:
        raise RequestError(400, str(err)) from None


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """The class-id mask as an 8-bit grayscale PNG (pixel value = class id)."""
    return _png(np.ascontiguousarray(mask, dtype=np.uint8))


def overlay_png(image: np.ndarray, mask: np.ndarray, alpha: float) -> bytes:
    """The image with the VOC colours of its classes blended in at ``alpha``."""
    return _png(overlay(image, mask, alpha))


def segmentation_json(result: Any) -> Dict[str, Any]:
    """Size, class names, pixels per class and, per class present, a 0/255 mask as base64
    PNG: ``segments`` is a list of ``{label, score, mask}`` as Hugging Face's
    image-segmentation pipeline returns (score None: semantic segmentation has none)."""
    mask = result.mask
    segments = [{"label": name, "score": None,
                 "mask": base64.b64encode(mask_png((mask == i) * np.uint8(255))).decode()}
                for i, name in enumerate(result.classes) if (mask == i).any()]
    return {"width": int(mask.shape[1]), "height": int(mask.shape[0]),
            "classes": list(result.classes), "pixels_per_class": result.pixels_per_class(),
            "segments": segments}


def parse_format(fmt: str, alpha: str) -> Tuple[str, float]:
    """The ``?format=`` and ``?alpha=`` of a request, checked."""
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        value = float(alpha)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise RequestError(400, f"alpha must be a number in [0, 1], got {alpha!r}")
    return fmt, value
