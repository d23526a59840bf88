"""gluon_deeplab.load_segmenter: checkpoints and exports (fp32, INT8) through one API; the
images users hand it; class names old and new; batches equal to images alone."""

from __future__ import annotations

import json
import os

import mxnet as mx
import numpy as np
import pytest
from PIL import Image, ImageFile
from test_data_formats import _png16_rgb

import gluon_deeplab as gd
from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import load_checkpoint, save_checkpoint
from gluon_deeplab.data import VOC_CLASSES, get_dataset, normalize, synthetic_classes
from gluon_deeplab.deploy import export_checkpoint, read_meta
from gluon_deeplab.deploy.export_format import export_model
from gluon_deeplab.evaluation import DenseCRF, predict_probabilities
from gluon_deeplab.evaluation.inference import predict_probabilities_batch

SYNTHETIC = ["background", "stripes_1", "checker_2"]


@pytest.fixture(scope="module")
def models(trained_synthetic, tmp_path_factory):
    """(data root, checkpoint, fp32 export prefix, INT8 export prefix) of the trained model."""
    root, checkpoint = trained_synthetic
    folder = tmp_path_factory.mktemp("segmenter_exports")
    fp32, int8 = str(folder / "fp32"), str(folder / "int8")
    export_checkpoint(checkpoint, fp32)
    export_checkpoint(checkpoint, int8, dtype="int8", num_calib_images=2,
                      calib_dataset=get_dataset("synthetic", root, "train", mode="val"),
                      calib_size=(48, 64))
    return root, checkpoint, fp32, int8


def _val_images(root, count=3):
    return [os.path.join(root, "JPEGImages", f) for f in
            sorted(os.listdir(os.path.join(root, "JPEGImages")))][:count]


def test_checkpoint_fp32_and_int8_exports_segment_alike(models):
    root, checkpoint, fp32, int8 = models
    images = _val_images(root)
    by_checkpoint = gd.load_segmenter(checkpoint).segment(images, probabilities=True)
    net = gd.load_segmenter(checkpoint).net
    for result, path in zip(by_checkpoint, images):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        assert result.name == path and result.classes == SYNTHETIC
        assert result.mask.dtype == np.uint8 and result.mask.shape == rgb.shape[:2]
        assert result.probabilities.shape == (3,) + rgb.shape[:2]
        expected = predict_probabilities(net, normalize(rgb), mx.cpu())  # predict.py's
        np.testing.assert_array_equal(result.mask, expected.argmax(axis=0))
    for source in (fp32, fp32 + "-symbol.json", os.path.dirname(checkpoint)):
        segmenter = gd.load_segmenter(source)
        assert segmenter.classes == SYNTHETIC
        for got, want in zip(segmenter.segment(images, probabilities=True), by_checkpoint):
            np.testing.assert_array_equal(got.mask, want.mask)
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-5)
    quantized = gd.load_segmenter(int8, precision="int8")
    assert quantized.model.precision == "int8" and quantized.classes == SYNTHETIC
    for got, want in zip(quantized.segment(images), by_checkpoint):
        assert (got.mask == want.mask).mean() > 0.9


def test_one_image_gives_one_result_and_a_list_a_list(models):
    _, checkpoint, _, _ = models
    segmenter = gd.load_segmenter(checkpoint)
    image = np.zeros((20, 30, 3), np.uint8)
    one = segmenter.segment(image)
    assert isinstance(one, gd.Segmentation) and one.mask.shape == (20, 30)
    assert one.probabilities is None and one.name is None
    assert sum(one.pixels_per_class().values()) == 600
    assert set(one.pixels_per_class()) <= set(SYNTHETIC)
    listed = segmenter.segment([image])
    assert isinstance(listed, list) and len(listed) == 1
    np.testing.assert_array_equal(listed[0].mask, one.mask)


def test_batch_gives_each_image_what_it_gives_alone(models):
    root, checkpoint, _, _ = models
    segmenter = gd.load_segmenter(checkpoint)
    base = np.asarray(Image.open(_val_images(root, 1)[0]).convert("RGB"))
    rng = np.random.RandomState(0)
    sizes = [(40, 50), (45, 60), (33, 49), (48, 64), (41, 52)]  # four of them padded to 49x65
    images = [np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR)) for h, w in sizes]
    images[1] = rng.randint(0, 256, images[1].shape).astype(np.uint8)
    for scales, flip in (((1.0,), False), ((1.0,), True), ((0.75, 1.0), True)):
        keys = [segmenter.batch_key(h, w, scales) for h, w in sizes]
        assert len(set(keys)) < len(keys), keys  # some images do share a batch
        alone = segmenter.segment(images, scales, flip, probabilities=True)
        batched = segmenter.segment(images, scales, flip, probabilities=True, batch_size=4)
        for single, together in zip(alone, batched):
            np.testing.assert_array_equal(together.mask, single.mask)
            np.testing.assert_allclose(together.probabilities, single.probabilities,
                                       atol=1e-5)
    x = [normalize(images[0]), normalize(images[2])]  # padded to 49x65 and 49x49
    with pytest.raises(ValueError, match="share their padded input shapes"):
        predict_probabilities_batch(segmenter.net, x, mx.cpu())


def test_crf_refines_the_probabilities_it_is_given(models):
    pytest.importorskip("pydensecrf.densecrf", reason="CRF needs pydensecrf2 ([crf] extra)")
    root, checkpoint, _, _ = models
    segmenter = gd.load_segmenter(checkpoint)
    image = _val_images(root, 1)[0]
    plain = segmenter.segment(image, probabilities=True)
    refined = segmenter.segment(image, crf=True, probabilities=True)
    expected = DenseCRF()(plain.image, plain.probabilities)
    np.testing.assert_allclose(refined.probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(refined.mask, expected.argmax(axis=0))


def _same_as_array(segmenter, source, rgb):
    got = segmenter.segment(source)
    np.testing.assert_array_equal(got.image, rgb)
    np.testing.assert_array_equal(got.mask, segmenter.segment(rgb).mask)


def test_every_kind_of_image_is_segmented_as_viewers_show_it(models, tmp_path):
    segmenter = gd.load_segmenter(models[1])
    rng = np.random.RandomState(1)
    gray = rng.randint(0, 256, (30, 40)).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    _same_as_array(segmenter, str(tmp_path / "gray.png"), rgb)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    with Image.open(tmp_path / "gray16.png") as img:
        assert img.mode.startswith("I")  # a 16-bit grayscale file indeed
    _same_as_array(segmenter, str(tmp_path / "gray16.png"), rgb)
    colour = rng.randint(0, 256, (30, 40, 3)).astype(np.uint8)
    _png16_rgb(str(tmp_path / "rgb16.png"), colour.astype(np.uint16) * 257)
    _same_as_array(segmenter, str(tmp_path / "rgb16.png"), colour)
    alpha = np.concatenate([colour, np.full((30, 40, 1), 7, np.uint8)], axis=2)
    Image.fromarray(alpha, "RGBA").save(tmp_path / "rgba.png")
    _same_as_array(segmenter, tmp_path / "rgba.png", colour)  # a pathlib.Path too
    palette = Image.fromarray(colour).quantize(16)
    palette.save(tmp_path / "palette.png")
    _same_as_array(segmenter, str(tmp_path / "palette.png"), np.asarray(palette.convert("RGB")))
    _same_as_array(segmenter, Image.fromarray(colour), colour)  # a PIL image in memory


def test_exif_rotated_jpeg_is_turned_upright(models, tmp_path):
    segmenter = gd.load_segmenter(models[1])
    stored = np.random.RandomState(2).randint(0, 256, (24, 40, 3)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: view rotated 90 degrees clockwise
    path = str(tmp_path / "phone.jpg")
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as img:
        decoded = np.asarray(img.convert("RGB"))  # the pixels as stored, not turned
    upright = np.rot90(decoded, k=-1)
    result = segmenter.segment(path)
    assert result.mask.shape == (40, 24)
    np.testing.assert_array_equal(result.image, upright)
    np.testing.assert_array_equal(result.mask, segmenter.segment(upright.copy()).mask)
    with Image.open(path) as img:  # an opened PIL image keeps its EXIF tag
        np.testing.assert_array_equal(segmenter.segment(img).image, upright)


def _error(segmenter, image):
    with pytest.raises(ValueError) as info:
        segmenter.segment(image)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_bad_images_are_one_line_errors_naming_what_was_expected(models, tmp_path,
                                                                 monkeypatch):
    segmenter = gd.load_segmenter(models[1])
    path = str(tmp_path / "cut.jpg")
    noise = np.random.RandomState(3).randint(0, 256, (128, 128, 3)).astype(np.uint8)
    Image.fromarray(noise).save(path, quality=95)  # half of it: the headers and some rows
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as importing gluoncv does
    assert f"{path}: unreadable or corrupt image" in _error(segmenter, path)
    assert "truncated" in _error(segmenter, path).lower()
    with Image.open(path) as img:
        assert "image 0: unreadable or corrupt image" in _error(segmenter, img)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored after the strict decode
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "depth.tif")
    assert "depth.tif: F image" in _error(segmenter, str(tmp_path / "depth.tif"))
    assert "missing.png: image file not found" in _error(segmenter, str(tmp_path / "missing.png"))
    assert "is a folder, expected an image file" in _error(segmenter, str(tmp_path))
    text = _error(segmenter, np.zeros((4, 4, 3), np.float32))
    assert "expected an H x W x 3 uint8 RGB array, got float32 (4, 4, 3)" in text
    assert "got uint8 (4, 4)" in _error(segmenter, np.zeros((4, 4), np.uint8))
    text = _error(segmenter, [np.zeros((4, 4, 3), np.uint8), {"not": "an image"}])
    assert "image 1: expected an image file path, a PIL image or an H x W x 3 uint8" in text
    text = _error(segmenter, np.zeros((1, 40000, 3), np.uint8))  # MXNet fails from 32768 on
    assert "image: 40000x1 runs padded to" in text and "sides up to 32767 pixels" in text


def test_training_records_class_names_and_exports_carry_them(models):
    _, checkpoint, fp32, int8 = models
    assert load_checkpoint(checkpoint).extra["classes"] == SYNTHETIC
    assert read_meta(fp32)["classes"] == read_meta(int8)["classes"] == SYNTHETIC


def test_files_without_class_names_load_with_the_dataset_defaults_said_once(tmp_path, capsys):
    old = save_checkpoint(str(tmp_path / "old.params"), build_model(3, "resnet18_v2"),
                          args={"dataset": "synthetic"})  # as written before names were kept
    assert "classes" not in load_checkpoint(old).extra
    assert gd.load_segmenter(old).classes == synthetic_classes(3) == SYNTHETIC
    assert gd.load_segmenter(old).segment(np.zeros((9, 9, 3), np.uint8)).classes == SYNTHETIC
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {old} records no class names (written before they were); using "
                     "the defaults of synthetic: background, stripes_1, checker_2"]
    export_checkpoint(old, str(tmp_path / "from_old"))
    assert read_meta(str(tmp_path / "from_old"))["classes"] == SYNTHETIC
    # An export of that time: HybridBlock.export and a meta record without names.
    net = build_model(21, "resnet18_v2")
    net.hybridize()
    net(mx.nd.zeros((1, 3, 33, 33)))
    prefix = str(tmp_path / "old_export")
    net.export(prefix, epoch=0)
    with open(prefix + "-meta.json", "w", encoding="utf-8") as f:
        json.dump({"output_stride": 16, "num_classes": 21}, f)
    segmenter = gd.load_segmenter(prefix)
    assert segmenter.classes == list(VOC_CLASSES)
    mask = segmenter.segment(np.zeros((17, 23, 3), np.uint8)).mask
    assert mask.shape == (17, 23) and mask.max() < 21
    assert "using the defaults of its class count: background, aeroplane" in \
        capsys.readouterr().err


def test_bare_export_carries_the_class_names_it_is_given(tmp_path):
    prefix = str(tmp_path / "bare")
    export_model(build_model(2, "resnet18_v2"), prefix, classes=["sky", "ground"])
    assert read_meta(prefix)["classes"] == ["sky", "ground"]
    assert gd.load_segmenter(prefix).segment(np.zeros((9, 9, 3), np.uint8)).classes == \
        ["sky", "ground"]
    with open(prefix + "-meta.json", "w", encoding="utf-8") as f:
        json.dump({"output_stride": 16, "num_classes": 2, "classes": ["sky"]}, f)
    with pytest.raises(ValueError, match="bare-meta.json records 1 class names for a model of "
                                         "2 classes"):
        gd.load_segmenter(prefix)


def test_model_source_and_precision_errors_name_the_file(models, tmp_path):
    _, checkpoint, fp32, _ = models
    with pytest.raises(ValueError, match="is a training checkpoint .fp32.; a int8 model is an "
                                         "export: gluon-deeplab-export --dtype int8"):
        gd.load_segmenter(checkpoint, precision="int8")
    with pytest.raises(ValueError, match=f"{fp32} is a fp32 export, not int8"):
        gd.load_segmenter(fp32, precision="int8")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, int8"):
        gd.load_segmenter(fp32, precision="fp16")
    with pytest.raises(ValueError, match="output_stride applies to checkpoints only"):
        gd.load_segmenter(fp32, output_stride=8)
    missing = str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match=f"{missing}: no checkpoint .* or export"):
        gd.load_segmenter(missing)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        gd.load_segmenter(fp32).segment([np.zeros((9, 9, 3), np.uint8)], batch_size=0)
