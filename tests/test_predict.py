"""scripts/predict.py: palette masks, overlays, panels; checkpoint or export; its errors.
Also the VOC colour map and the picture helpers it uses."""

from __future__ import annotations

import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluon_deeplab import build_model
from gluon_deeplab.checkpoint import save_checkpoint
from gluon_deeplab.data import normalize
from gluon_deeplab.deploy.export_format import export_model
from gluon_deeplab.evaluation import (
    colorize,
    overlay,
    panel,
    predict_probabilities,
    save_mask,
    voc_colormap,
)
from gluon_deeplab.evaluation.predict_cli import main
from gluon_deeplab.evaluation.visualize import PANEL_GAP

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(net, checkpoint path, export prefix) of one small 4-class model."""
    folder = tmp_path_factory.mktemp("model")
    net = build_model(4, "resnet18_v2")
    path = save_checkpoint(str(folder / "model.params"), net)
    prefix = str(folder / "exported")
    export_model(net, prefix)
    return net, path, prefix


def _images(folder, sizes=((36, 52), (40, 40))):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / (f"img{i}.jpg" if i % 2 == 0 else f"img{i}.png")
        Image.fromarray(rng.randint(0, 256, (h, w, 3), np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _read(path):
    with Image.open(path) as img:
        return img.mode, np.asarray(img), img.getpalette()


# -- colour map and pictures ----------------------------------------------------------------------

def test_voc_colormap_has_256_bit_interleaved_entries():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert cmap[255].tolist() == [224, 224, 192]  # VOC's ignore border colour
    assert voc_colormap(21).tolist() == cmap[:21].tolist()
    with pytest.raises(ValueError, match="colour map size"):
        voc_colormap(300)


def test_save_mask_writes_a_palette_png_that_reads_back_as_indices(tmp_path):
    mask = np.array([[0, 1, 2], [15, 20, 255]], np.uint8)
    save_mask(mask, str(tmp_path / "sub" / "m.png"))
    mode, arr, palette = _read(tmp_path / "sub" / "m.png")
    assert mode == "P" and len(palette) == 768 and palette == voc_colormap().ravel().tolist()
    np.testing.assert_array_equal(arr, mask)
    with pytest.raises(ValueError, match="mask values must be in"):
        save_mask(np.array([[300]]), str(tmp_path / "bad.png"))


def test_overlay_blends_class_colours_and_keeps_background():
    image = np.full((2, 2, 3), 100, np.uint8)
    mask = np.array([[0, 1], [2, 0]])
    out = overlay(image, mask, alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [114, 50, 50]  # halfway to (128, 0, 0)
    with pytest.raises(ValueError, match="mask is"):
        overlay(image, np.zeros((3, 2), int))


def test_panel_is_image_label_prediction_side_by_side():
    image = np.zeros((4, 5, 3), np.uint8)
    pred, label = np.ones((4, 5), int), np.full((4, 5), 255)
    out = panel(image, pred, label)
    assert out.shape == (4, 3 * 5 + 2 * PANEL_GAP, 3)
    assert out[0, 5 + PANEL_GAP].tolist() == [224, 224, 192]
    assert out[0, -1].tolist() == colorize(pred)[0, 0].tolist()
    assert panel(image, pred).shape == (4, 2 * 5 + PANEL_GAP, 3)


# -- predict ---------------------------------------------------------------------------------------

def test_predict_from_checkpoint_writes_masks_overlays_and_panels(model, tmp_path):
    net, path, _ = model
    images = _images(tmp_path / "in")
    labels = tmp_path / "labels"
    save_mask(np.full((36, 52), 2, np.uint8), str(labels / "img0.png"))
    save_mask(np.full((40, 40), 1, np.uint8), str(labels / "img1.png"))
    out = tmp_path / "out"
    main(["--checkpoint", path, str(tmp_path / "in"), "--output_dir", str(out),
          "--label_dir", str(labels), "--save_probabilities"])
    assert sorted(os.listdir(out / "panels")) == ["img0.png", "img1.png"]
    for image, (h, w) in zip(images, ((36, 52), (40, 40))):
        stem = os.path.splitext(os.path.basename(image))[0]
        mode, mask, palette = _read(out / "masks" / f"{stem}.png")
        assert mode == "P" and mask.shape == (h, w)
        assert len(palette) == 256 * 3 and palette == voc_colormap().ravel().tolist()
        with Image.open(image) as img:
            rgb = np.asarray(img.convert("RGB"))
        prob = predict_probabilities(net, normalize(rgb), mx.cpu())
        np.testing.assert_array_equal(mask, prob.argmax(axis=0))
        np.testing.assert_allclose(np.load(out / "masks" / f"{stem}.npy"), prob, atol=1e-3)
        mode, over, _ = _read(out / "overlays" / f"{stem}.png")
        assert mode == "RGB" and over.shape == (h, w, 3)
        mode, pan, _ = _read(out / "panels" / f"{stem}.png")
        assert pan.shape == (h, 3 * w + 2 * PANEL_GAP, 3)
    with Image.open(images[0]) as img:  # inputs untouched
        assert img.format == "JPEG"


def test_predict_from_export_matches_checkpoint(model, tmp_path):
    _, path, prefix = model
    _images(tmp_path / "in", sizes=((33, 47),))
    main(["--checkpoint", path, str(tmp_path / "in"), "--output_dir", str(tmp_path / "a")])
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "predict.py"), "--exported", prefix,
         str(tmp_path / "in" / "img0.jpg"), "--output_dir", str(tmp_path / "b"),
         "--scales", "1.0", "--flip"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "wrote 1 masks" in result.stdout
    main(["--checkpoint", path, str(tmp_path / "in"), "--output_dir", str(tmp_path / "flip"),
          "--scales", "1.0", "--flip"])
    flipped = _read(tmp_path / "flip" / "masks" / "img0.png")[1]
    np.testing.assert_array_equal(_read(tmp_path / "b" / "masks" / "img0.png")[1], flipped)
    plain = _read(tmp_path / "a" / "masks" / "img0.png")[1]
    assert (flipped != plain).any()  # the flip counts, so the two paths agree on something
    main(["--exported", prefix, str(tmp_path / "in"), "--output_dir", str(tmp_path / "c")])
    np.testing.assert_array_equal(_read(tmp_path / "c" / "masks" / "img0.png")[1], plain)


def test_unreadable_image_is_an_error_naming_it(model, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", model[1], str(bad), "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "unreadable or corrupt image" in err


def test_predict_never_overwrites_inputs_or_existing_outputs(model, tmp_path, capsys):
    # An input that sits where a mask would be written.
    images = _images(tmp_path / "masks", sizes=((32, 32), (32, 32)))
    before = [open(p, "rb").read() for p in images]
    with pytest.raises(SystemExit):
        main(["--checkpoint", model[1], images[1], "--output_dir", str(tmp_path)])
    assert "is an input image and would be overwritten" in capsys.readouterr().err
    assert [open(p, "rb").read() for p in images] == before

    main(["--checkpoint", model[1], images[0], "--output_dir", str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        main(["--checkpoint", model[1], images[0], "--output_dir", str(tmp_path / "out")])
    assert "exists; choose another --output_dir or pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--label_dir", "{tmp}/nolabels"], "no label for"),
    (["--output_stride", "8", "--exported", "{prefix}"], "not allowed with argument"),
    (["{tmp}/missing.jpg"], "missing.jpg: no such image or folder"),
])
def test_predict_argument_errors(model, tmp_path, capsys, argv, message):
    _images(tmp_path / "in", sizes=((32, 32),))
    argv = [a.format(tmp=tmp_path, prefix=model[2]) for a in argv]
    with pytest.raises(SystemExit):
        main(["--checkpoint", model[1], str(tmp_path / "in"), "--output_dir",
              str(tmp_path / "out")] + argv)
    assert message in capsys.readouterr().err
