"""On-disk layouts (VOC 2012, SBD .mat, SegmentationClassAug, own folder) and bad input."""

from __future__ import annotations

import os
import struct
import warnings
import zlib

import numpy as np
import pytest
import scipy.io
import scipy.sparse
from PIL import Image

from gluon_deeplab.data import VOC_CLASSES, DataError, get_dataset, read_image
from gluon_deeplab.evaluation import save_mask

H, W = 30, 40


def _sample(seed):
    """An RGB image and a label (classes 0..3, a 255 border band like VOC's)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    label = np.zeros((H, W), np.uint8)
    label[5:20, 8:30] = seed % 3 + 1
    label[4, 8:30] = label[20, 8:30] = 255
    return image, label


def _write_list(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(ids) + "\n")


def _write_voc(voc, train, val):
    for i, sid in enumerate(train + val):
        image, label = _sample(i)
        os.makedirs(os.path.join(voc, "JPEGImages"), exist_ok=True)
        Image.fromarray(image).save(os.path.join(voc, "JPEGImages", sid + ".jpg"), quality=95)
        save_mask(label, os.path.join(voc, "SegmentationClass", sid + ".png"))
    sets = os.path.join(voc, "ImageSets", "Segmentation")
    _write_list(os.path.join(sets, "train.txt"), train)
    _write_list(os.path.join(sets, "val.txt"), val)
    _write_list(os.path.join(sets, "trainval.txt"), train + val)
    return voc


def _write_sbd_mat(path, label):
    """A cls .mat in SBD's structure: GTcls.{Boundaries, Segmentation, CategoriesPresent}."""
    boundaries = np.empty((20, 1), dtype=object)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix(label.shape, dtype=np.uint8)
    present = np.unique(label[(label > 0) & (label < 255)]).astype(np.uint8)
    gt = {"Boundaries": boundaries, "Segmentation": label, "CategoriesPresent": present}
    scipy.io.savemat(path, {"GTcls": gt})


def _write_sbd(base, train, val):
    os.makedirs(os.path.join(base, "img"), exist_ok=True)
    os.makedirs(os.path.join(base, "cls"), exist_ok=True)
    for i, sid in enumerate(train + val):
        image, label = _sample(i + 10)
        label[label == 255] = 0  # SBD has no border band
        Image.fromarray(image).save(os.path.join(base, "img", sid + ".jpg"), quality=95)
        _write_sbd_mat(os.path.join(base, "cls", sid + ".mat"), label)
    _write_list(os.path.join(base, "train.txt"), train)
    _write_list(os.path.join(base, "val.txt"), val)


def _write_folder(root, ids, image_ext=".png"):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    for i, sid in enumerate(ids):
        image, label = _sample(i)
        Image.fromarray(image).save(os.path.join(root, "images", sid + image_ext))
        Image.fromarray(label).save(os.path.join(root, "labels", sid + ".png"))
    _write_list(os.path.join(root, "train.txt"), ids)
    return root


def _png16_rgb(path, array):
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# -- VOC 2012 -----------------------------------------------------------------------------------
def test_voc_reads_palette_png_labels_with_255_borders(tmp_path):
    voc = _write_voc(str(tmp_path / "VOC2012"), ["2007_000001", "2007_000002"], ["2008_000003"])
    ds = get_dataset("voc", str(tmp_path), "val", mode="val")
    assert ds.ids == ["2008_000003"] and ds.num_classes == 21 and ds.classes == list(VOC_CLASSES)
    image, label = ds.load(0)
    np.testing.assert_array_equal(label, _sample(2)[1])
    assert image.shape == (H, W, 3) and (label == 255).sum() == 44
    assert ds.image_path(0) == os.path.join(voc, "JPEGImages", "2008_000003.jpg")


def test_voc_train_split_is_train_only_and_root_may_be_voc2012_or_vocdevkit(tmp_path):
    _write_voc(str(tmp_path / "VOCdevkit" / "VOC2012"), ["a1", "a2"], ["b1"])
    for root in (tmp_path, tmp_path / "VOCdevkit", tmp_path / "VOCdevkit" / "VOC2012"):
        assert get_dataset("voc", str(root), "train").ids == ["a1", "a2"]
    assert get_dataset("voc", str(tmp_path), "trainval").ids == ["a1", "a2", "b1"]
    with pytest.raises(DataError, match=r"test\.txt.*available: train, trainval, val"):
        get_dataset("voc", str(tmp_path), "test")


# -- SBD (.mat) ---------------------------------------------------------------------------------
def test_vocaug_reads_gtcls_segmentation_from_mat(tmp_path):
    _write_sbd(str(tmp_path / "VOCaug" / "dataset"), ["s1", "s2"], ["s3"])
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ds = get_dataset("vocaug", str(tmp_path), "train", mode="val")
    image, label = ds.load(1)
    expect = _sample(11)[1]
    expect[expect == 255] = 0
    np.testing.assert_array_equal(label, expect)
    assert get_dataset("vocaug", str(tmp_path), "val").ids == ["s3"]


def test_vocaug_train_excludes_every_voc2012_val_id(tmp_path):
    _write_sbd(str(tmp_path / "VOCaug" / "dataset"), ["s1", "v1", "s2", "v2"], ["s3"])
    with pytest.warns(UserWarning, match="cannot exclude VOC 2012 val"):
        assert len(get_dataset("vocaug", str(tmp_path), "train")) == 4
    _write_voc(str(tmp_path / "VOC2012"), ["t1"], ["v1", "v2"])
    assert get_dataset("vocaug", str(tmp_path), "train").ids == ["s1", "s2"]
    other = tmp_path / "elsewhere"
    _write_voc(str(other / "VOC2012"), ["t1"], ["s1"])
    ds = get_dataset("vocaug", str(tmp_path), "train", voc_root=str(other))
    assert ds.ids == ["v1", "s2", "v2"]


# -- SegmentationClassAug -----------------------------------------------------------------------
def _write_voc_aug(root, train_aug, val, caffe_style=False, list_dir=""):
    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    os.makedirs(os.path.join(root, "SegmentationClassAug"), exist_ok=True)
    for i, sid in enumerate(sorted(set(train_aug + val))):
        image, label = _sample(i)
        Image.fromarray(image).save(os.path.join(root, "JPEGImages", sid + ".jpg"))
        Image.fromarray(label, mode="L").save(os.path.join(root, "SegmentationClassAug",
                                                           sid + ".png"))
    lines = [f"/JPEGImages/{s}.jpg /SegmentationClassAug/{s}.png" for s in train_aug] \
        if caffe_style else train_aug
    _write_list(os.path.join(root, list_dir, "train_aug.txt"), lines)
    _write_list(os.path.join(root, list_dir, "val.txt"), val)


def test_voc_aug_reads_grayscale_pngs_and_both_list_styles(tmp_path):
    _write_voc_aug(str(tmp_path / "a"), ["x1", "x2"], ["y1"], caffe_style=True)
    ds = get_dataset("voc_aug", str(tmp_path / "a"), "train_aug")
    assert ds.ids == ["x1", "x2"]
    assert set(np.unique(ds.load(0)[1]).tolist()) == {0, 1, 255}
    assert get_dataset("voc_aug", str(tmp_path / "a"), "train").ids == ["x1", "x2"]
    _write_voc_aug(str(tmp_path / "b"), ["x1"], ["y1"], list_dir="ImageSets/Segmentation")
    assert get_dataset("voc_aug", str(tmp_path / "b"), "val", mode="val").ids == ["y1"]


def test_voc_aug_train_aug_with_voc_val_images_is_an_error_naming_them(tmp_path):
    _write_voc_aug(str(tmp_path), ["x1", "y2", "x3", "y1"], ["y1", "y2"])
    with pytest.raises(DataError, match=r"train_aug\.txt: 2 VOC 2012 val image\(s\).*y1, y2"):
        get_dataset("voc_aug", str(tmp_path), "train_aug")


# -- own folder ---------------------------------------------------------------------------------
def test_folder_dataset_with_own_class_count_and_ignore_value(tmp_path):
    root = str(tmp_path)
    os.makedirs(tmp_path / "img")
    os.makedirs(tmp_path / "ann")
    image, label = _sample(0)
    label[label == 255] = 9
    Image.fromarray(image).save(tmp_path / "img" / "p1.jpg")
    Image.fromarray(label).save(tmp_path / "ann" / "p1.png")
    _write_list(os.path.join(root, "lists", "mine.txt"), ["p1"])
    ds = get_dataset("folder", root, "train", num_classes=4, ignore_label=9, image_dir="img",
                     label_dir="ann", list_file="lists/mine.txt", classes=["a", "b", "c", "d"])
    _, out = ds.load(0)
    assert ds.ignore_label == 255 and ds.classes == ["a", "b", "c", "d"]
    assert (out == 255).sum() == (label == 9).sum() and out.max() == 255
    with pytest.raises(ValueError, match="needs num_classes"):
        get_dataset("folder", root, "train", image_dir="img", label_dir="ann")
    with pytest.raises(ValueError, match="ignore_label must not be a class"):
        get_dataset("folder", root, "train", num_classes=10, ignore_label=9, image_dir="img",
                    label_dir="ann", list_file="lists/mine.txt")


# -- bad input ----------------------------------------------------------------------------------
def test_corrupt_image_is_an_error_naming_the_file_when_loaded(tmp_path):
    root = _write_folder(str(tmp_path), ["a", "b"])
    bad = os.path.join(root, "images", "b.png")
    open(bad, "wb").write(b"\x89PNG\r\n\x1a\nnot really")
    ds = get_dataset("folder", root, num_classes=4)  # lazy: opening is fine
    ds[0]
    with pytest.raises(DataError, match=rf"{bad}: unreadable or corrupt image"):
        ds[1]


def test_label_size_mismatch_is_an_error_naming_the_label(tmp_path):
    root = _write_folder(str(tmp_path), ["a"])
    path = os.path.join(root, "labels", "a.png")
    Image.fromarray(np.zeros((H, W + 1), np.uint8)).save(path)
    with pytest.raises(DataError, match=rf"{path}: label size 41x30 \(WxH\) != image size 40x30"):
        get_dataset("folder", root, num_classes=4).load(0)


def test_label_values_out_of_range_are_an_error_listing_them(tmp_path):
    root = _write_folder(str(tmp_path), ["a"])
    path = os.path.join(root, "labels", "a.png")
    label = np.zeros((H, W), np.uint8)
    label[0, :3] = [4, 7, 255]
    Image.fromarray(label).save(path)
    with pytest.raises(DataError, match=rf"{path}: label values {{4, 7}} outside \[0, 4\)"):
        get_dataset("folder", root, num_classes=4)[0]
    assert get_dataset("folder", root, num_classes=8).load(0)[1][0, 2] == 255


def test_list_entry_without_files_is_an_error_at_construction(tmp_path):
    root = _write_folder(str(tmp_path), ["a", "b"])
    _write_list(os.path.join(root, "train.txt"), ["a", "ghost", "b"])
    with pytest.raises(DataError, match=r"train\.txt: entry 'ghost' has no image"):
        get_dataset("folder", root, num_classes=4)
    os.remove(os.path.join(root, "labels", "b.png"))
    _write_list(os.path.join(root, "train.txt"), ["a", "b"])
    with pytest.raises(DataError, match=r"entry 'b' has no label b\.png"):
        get_dataset("folder", root, num_classes=4)


def test_empty_split_and_missing_list_file_are_errors(tmp_path):
    root = _write_folder(str(tmp_path), ["a"])
    with pytest.raises(DataError, match=r"val\.txt: split list file not found"):
        get_dataset("folder", root, "val", num_classes=4)
    _write_list(os.path.join(root, "empty.txt"), [""])
    with pytest.raises(DataError, match=r"empty\.txt: empty split list"):
        get_dataset("folder", root, num_classes=4, list_file="empty.txt")
    with pytest.raises(DataError, match="root folder not found"):
        get_dataset("voc", str(tmp_path / "nothing"))


def test_grayscale_rgba_cmyk_and_48bit_images_convert_to_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    gray = read_image(str(tmp_path / "gray.png"))
    assert gray.shape == (6, 5, 3) and (gray == rgb[:, :, :1]).all()
    rgba = np.concatenate([rgb, np.zeros((6, 5, 1), np.uint8)], 2)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(str(tmp_path / "rgba.png")), rgb)  # alpha dropped
    Image.new("CMYK", (5, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    cmyk = read_image(str(tmp_path / "cmyk.jpg"))
    assert cmyk.shape == (6, 5, 3) and cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1:].max() < 50
    _png16_rgb(str(tmp_path / "rgb48.png"), rgb.astype(np.uint16) * 257)
    np.testing.assert_array_equal(read_image(str(tmp_path / "rgb48.png")), rgb)


def test_16bit_grayscale_and_float_images_are_rejected(tmp_path):
    Image.fromarray(np.full((4, 4), 4000, np.uint16)).save(tmp_path / "g16.png")
    with pytest.raises(DataError, match=r"g16\.png: I;16 image .* convert it to 8-bit RGB"):
        read_image(str(tmp_path / "g16.png"))
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f\.tif: F image"):
        read_image(str(tmp_path / "f.tif"))


def test_colour_label_is_rejected_and_16bit_label_is_accepted(tmp_path):
    root = _write_folder(str(tmp_path), ["a"])
    path = os.path.join(root, "labels", "a.png")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path)
    with pytest.raises(DataError, match="label image has mode RGB"):
        get_dataset("folder", root, num_classes=4).load(0)
    label = _sample(0)[1].astype(np.uint16)
    Image.fromarray(label).save(path)
    np.testing.assert_array_equal(get_dataset("folder", root, num_classes=4).load(0)[1], label)


def test_skip_bad_skips_with_a_counted_warning_and_check_finds_every_bad_sample(tmp_path):
    root = _write_folder(str(tmp_path), ["a", "b", "c", "d"])
    open(os.path.join(root, "images", "b.png"), "wb").write(b"junk")
    bad_label = np.full((H, W), 6, np.uint8)
    Image.fromarray(bad_label).save(os.path.join(root, "labels", "c.png"))
    _write_list(os.path.join(root, "train.txt"), ["a", "b", "c", "d", "ghost"])
    strict_list = os.path.join(root, "strict.txt")
    _write_list(strict_list, ["a", "b", "c", "d"])
    strict = get_dataset("folder", root, num_classes=4, list_file="strict.txt")
    problems = strict.check(raise_error=False)
    assert len(problems) == 2 and "b.png" in problems[0] and "c.png" in problems[1]
    with pytest.raises(DataError, match="2 bad sample"):
        strict.check()
    with pytest.warns(UserWarning, match="skipping 1 list entries"):
        ds = get_dataset("folder", root, num_classes=4, skip_bad=True, mode="val")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, label = ds[1]
    messages = [str(r.message) for r in record if "skipping" in str(r.message)]
    assert len(messages) == 2 and "1 skipped so far" in messages[0] and "b.png" in messages[0]
    assert "2 skipped so far" in messages[1] and "c.png" in messages[1]
    np.testing.assert_array_equal(label.asnumpy(), ds.load(3)[1])  # next good sample: d
    assert sorted(ds.skipped) == ["b", "c"]
    ds2 = get_dataset("folder", root, num_classes=4, skip_bad=True, list_file="strict.txt")
    with pytest.warns(UserWarning, match="dropped 2 bad sample"):
        ds2.check()
    assert ds2.ids == ["a", "d"]
