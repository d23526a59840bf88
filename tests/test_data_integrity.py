"""Reading refuses damaged data: truncated images / labels (whatever PIL's global flag says,
in loader worker processes too), EXIF orientation applied to images."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, ImageFile

from gluon_deeplab.data import DataError, get_dataset, make_dataloader, read_image
from gluon_deeplab.data.io import read_label_png, save_mask


def _folder_set(root, truncate_image=False, truncate_label=False, size=(40, 48)):
    """A 'folder' dataset of two pairs; the first may have a truncated JPEG or label PNG."""
    os.makedirs(os.path.join(root, "images"))
    os.makedirs(os.path.join(root, "labels"))
    rng = np.random.default_rng(0)
    for sid in ("a", "b"):
        image = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        Image.fromarray(image).save(os.path.join(root, "images", sid + ".jpg"), quality=90)
        save_mask(rng.integers(0, 3, size).astype(np.uint8),
                  os.path.join(root, "labels", sid + ".png"))
    with open(os.path.join(root, "train.txt"), "w") as f:
        f.write("a\nb\n")
    for flag, name in ((truncate_image, "images/a.jpg"), (truncate_label, "labels/a.png")):
        if flag:
            path = os.path.join(root, name)
            data = open(path, "rb").read()
            with open(path, "wb") as f:
                f.write(data[: len(data) * 2 // 3])
    return root


@pytest.fixture
def gluoncv_imported():
    """Importing gluoncv sets PIL's LOAD_TRUNCATED_IMAGES for the whole process."""
    import gluoncv  # noqa: F401
    from gluoncv.data import mhp  # noqa: F401  (the module that sets the flag)

    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # as gluoncv leaves it, whatever ran before
    yield
    ImageFile.LOAD_TRUNCATED_IMAGES = old


@pytest.mark.parametrize("kind", ["image", "label"])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_truncated_files_are_refused_after_gluoncv_import(tmp_path, gluoncv_imported, kind,
                                                         num_workers):
    root = _folder_set(str(tmp_path / "set"), truncate_image=kind == "image",
                       truncate_label=kind == "label")
    bad = os.path.join(root, "images/a.jpg" if kind == "image" else "labels/a.png")
    ds = get_dataset("folder", root, "train", mode="val", num_classes=3)
    loader = make_dataloader(ds, 1, num_workers=num_workers, timeout=60)
    with pytest.raises(DataError) as err:
        for _ in loader:
            pass
    message = str(err.value)
    assert bad in message and "truncated" in message and "\n" not in message
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left as it was


def test_truncated_file_reads_refused_and_intact_ones_unchanged(tmp_path, gluoncv_imported):
    root = _folder_set(str(tmp_path / "set"), truncate_image=True, truncate_label=True)
    with pytest.raises(DataError, match="a.jpg: unreadable or corrupt image.*truncated"):
        read_image(os.path.join(root, "images", "a.jpg"))
    with pytest.raises(DataError, match="a.png: unreadable or corrupt label.*truncated"):
        read_label_png(os.path.join(root, "labels", "a.png"))
    assert read_image(os.path.join(root, "images", "b.jpg")).shape == (40, 48, 3)


def test_exif_orientation_is_applied_to_images(tmp_path):
    pixels = np.zeros((20, 30, 3), np.uint8)
    pixels[:5, :5] = 255  # white top-left corner in the stored pixels
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = str(tmp_path / "rotated.jpg")
    image.save(path, exif=exif.tobytes(), quality=95)
    shown = read_image(path)
    assert shown.shape == (30, 20, 3)  # displayed portrait, as every viewer shows it
    assert shown[:5, -5:].mean() > 200 and shown[:5, :5].mean() < 50  # corner now top-right
