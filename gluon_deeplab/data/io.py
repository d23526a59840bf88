"""Reading images and label maps from disk, with one-line errors that name the file.

Image rule (documented in the README): 8-bit RGB is used as is; grayscale (L, LA, 1), palette (P)
and CMYK images are converted to RGB with PIL's standard conversion; RGBA/LA drop their alpha
channel (no compositing); 16-bit-per-channel RGB PNGs are accepted (Pillow keeps the high byte of
each channel: a full-range rescale); 16-bit grayscale, 32-bit integer and float images (I;16, I,
F) are rejected because their value range is ambiguous (12-bit? depth?): convert them yourself.

Label rule: a label is a single-channel index map (palette "P" PNG, grayscale "L" PNG, or the
``GTcls.Segmentation`` array of an SBD ``.mat``). 16-bit label PNGs are accepted because their
values are class indices; every value must be < num_classes or the ignore value, else an error.
Colour-coded (RGB) label images are rejected: a colour-to-index mapping would be a guess.

Truncated files are refused, whatever ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` says: importing
gluoncv sets that flag for the whole process, and a truncated label would then train as class 0
where its data is missing. Every decode here runs under :func:`strict_decoding`.

EXIF orientation: images are turned as their EXIF ``Orientation`` tag says (as every viewer shows
them); labels are not (VOC-style index PNGs carry no EXIF), so an image/label pair that only lines
up without the rotation fails the size check, or is misaligned if it is square.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps

IMAGE_MODES_TO_RGB = ("L", "LA", "1", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
REJECTED_IMAGE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
LABEL_MODES = ("P", "L", "I;16", "I;16B", "I;16L", "I;16N", "I")


class DataError(ValueError):
    """A sample (image, label, list entry) that cannot be used, with the file it came from."""


_strict_lock = threading.Lock()
_strict_depth = 0
_strict_saved = False


@contextlib.contextmanager
def strict_decoding() -> Iterator[None]:
    """Within this block PIL refuses truncated files ("image file is truncated"), whatever
    another library set ``ImageFile.LOAD_TRUNCATED_IMAGES`` to; the flag is restored after the
    last nested or concurrent block ends."""
    global _strict_depth, _strict_saved
    with _strict_lock:
        if _strict_depth == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
        _strict_depth += 1
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        with _strict_lock:
            _strict_depth -= 1
            if _strict_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


def _rgb_of(img: Image.Image, name: str, wide_gray: bool) -> np.ndarray:
    """A decoded PIL image turned upright (EXIF) and converted by the image rule; with
    ``wide_gray``, 16-bit grayscale is taken as full range (its high byte)."""
    img = ImageOps.exif_transpose(img)
    mode = img.mode
    if wide_gray and mode.startswith("I;16"):
        img = Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8), "L")
        mode = img.mode
    if mode in REJECTED_IMAGE_MODES or mode.startswith("I;16"):
        raise DataError(f"{name}: {mode} image (16/32-bit or float) is not supported; "
                        "convert it to 8-bit RGB")
    if mode != "RGB":
        if mode not in IMAGE_MODES_TO_RGB:
            raise DataError(f"{name}: unsupported image mode {mode}; expected 8-bit RGB")
        img = img.convert("RGB")
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{name}: expected an H x W x 3 image, got shape {array.shape}")
    return array


def read_image(path: str, wide_gray: bool = False) -> np.ndarray:
    """Read an image as RGB uint8 H x W x 3 (see the module docstring for the conversion rule;
    ``wide_gray``: 16-bit grayscale accepted as full range, as inference takes it)."""
    try:
        with strict_decoding(), Image.open(path) as img:
            img.load()
            return _rgb_of(img, path, wide_gray)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt image ({err})") from None


def image_rgb(image: Any, name: str = "image") -> np.ndarray:
    """What users hand inference as RGB uint8 H x W x 3: a file path, a PIL image (turned
    upright by its EXIF tag, converted as :func:`read_image` does, 16-bit grayscale as full
    range) or an H x W x 3 uint8 array (taken as RGB as it is); ``name`` names it in errors."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image), wide_gray=True)
    if isinstance(image, Image.Image):
        try:
            with strict_decoding():
                image.load()
                return _rgb_of(image, name, wide_gray=True)
        except DataError:
            raise
        except (OSError, ValueError, SyntaxError) as err:
            raise DataError(f"{name}: unreadable or corrupt image ({err})") from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
                or 0 in image.shape:
            raise DataError(f"{name}: expected an H x W x 3 uint8 RGB array, got "
                            f"{image.dtype} {image.shape}")
        return image
    raise DataError(f"{name}: expected an image file path, a PIL image or an H x W x 3 uint8 "
                    f"array, got {type(image).__name__}")


def read_label_png(path: str) -> np.ndarray:
    """Read a palette / grayscale (8 or 16-bit) index PNG as an integer H x W array (raw values)."""
    try:
        with strict_decoding(), Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in LABEL_MODES:
                raise DataError(
                    f"{path}: label image has mode {mode}; expected a single-channel index map "
                    "(palette or grayscale PNG), not a colour-coded image")
            array = np.asarray(img)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable or corrupt label image ({err})") from None
    if array.ndim != 2:
        raise DataError(f"{path}: expected an H x W label map, got shape {array.shape}")
    return array


def read_label_mat(path: str) -> np.ndarray:
    """Read ``GTcls.Segmentation`` of an SBD (Hariharan et al.) ``cls/*.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, mat_dtype=False, squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except Exception as err:  # scipy raises many types for corrupt files
        raise DataError(f"{path}: unreadable .mat file ({err})") from None
    gt = mat.get("GTcls")
    seg = getattr(gt, "Segmentation", None) if gt is not None else None
    if seg is None:
        raise DataError(f"{path}: no GTcls.Segmentation in this .mat file (not an SBD cls file)")
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise DataError(f"{path}: GTcls.Segmentation must be H x W, got shape {seg.shape}")
    return seg


def read_label_any(path: str) -> np.ndarray:
    """An SBD ``.mat`` (GTcls.Segmentation) or an index/palette PNG, by file extension."""
    return read_label_mat(path) if path.lower().endswith(".mat") else read_label_png(path)


def validate_label(label: np.ndarray, image_shape: tuple, num_classes: int, ignore_label: int,
                   path: str) -> np.ndarray:
    """Check size and values of a raw label map; return it as uint8 with ignore mapped to 255."""
    if label.shape != tuple(image_shape[:2]):
        raise DataError(
            f"{path}: label size {label.shape[1]}x{label.shape[0]} (WxH) != image size "
            f"{image_shape[1]}x{image_shape[0]}")
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise DataError(f"{path}: label values must be integers")
        label = label.astype(np.int64)
    ignore = label == ignore_label
    bad = ~ignore & ((label < 0) | (label >= num_classes))
    if bad.any():
        values = np.unique(label[bad])
        shown = ", ".join(str(int(v)) for v in values[:8])
        raise DataError(
            f"{path}: label values {{{shown}}} outside [0, {num_classes}) and not the ignore "
            f"value {ignore_label}")
    if ignore_label != 255 or label.dtype != np.uint8:
        out = label.astype(np.uint8)
        out[ignore] = 255
        return out
    return label



# -- palette PNG masks (written by the synthetic set, eval, predict and ensemble) ---------------
PALETTE_SIZE = 256


def voc_colormap(n: int = PALETTE_SIZE) -> np.ndarray:
    """The first ``n`` colours (uint8, n x 3) of VOC's bit-interleaved palette.

    Entry 255 (the ignore label) is (224, 224, 192), as in the VOC ground truth files.
    """
    if not 1 <= n <= PALETTE_SIZE:
        raise ValueError(f"colour map size must be in [1, {PALETTE_SIZE}], got {n}")
    cmap = np.zeros((PALETTE_SIZE, 3), dtype=np.uint8)
    for index in range(PALETTE_SIZE):
        code, rgb = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        cmap[index] = rgb
    return cmap[:n]


def as_mask(mask: Any) -> np.ndarray:
    """A 2-D uint8 class mask (values 0..255), or a ValueError saying what is wrong."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H x W), got shape {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"mask values must be in [0, 255], got [{mask.min()}, {mask.max()}]")
        mask = mask.astype(np.uint8)
    return mask


def mask_image(mask: Any) -> Image.Image:
    """A palette ("P" mode) PIL image of a class mask with the full 256-entry VOC palette."""
    image = Image.fromarray(as_mask(mask), mode="P")
    image.putpalette(voc_colormap().ravel().tolist())
    return image


def save_mask(mask: Any, path: str) -> str:
    """Write a class mask (H x W, values 0..255) as a palette PNG; returns ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    mask_image(mask).save(path, format="PNG")
    return path
