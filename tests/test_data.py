"""Synthetic set, transforms, seeded/resumable loaders (gluon_deeplab.data)."""

from __future__ import annotations

import filecmp
import json
import os
import runpy

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from gluon_deeplab.data import (
    IGNORE_LABEL,
    MEAN,
    STD,
    DataError,
    SegmentationDataset,
    TrainTransform,
    benchmark_loader,
    get_dataset,
    make_dataloader,
    make_synthetic_dataset,
    normalize,
)

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "make_synthetic.py")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "set")
    return make_synthetic_dataset(root, num_train=12, num_val=4, size=(48, 64), num_classes=5,
                                  seed=3)


def _write_pair(folder, sid, image, label):
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    os.makedirs(os.path.join(folder, "labels"), exist_ok=True)
    Image.fromarray(image).save(os.path.join(folder, "images", sid + ".png"))
    Image.fromarray(label).save(os.path.join(folder, "labels", sid + ".png"))


def _denormalize(image):
    image = image.transpose(1, 2, 0) * np.asarray(STD) + np.asarray(MEAN)
    return np.round(image * 255)


# -- synthetic set ------------------------------------------------------------------------------
def test_synthetic_set_has_voc_layout_palette_labels_and_borders(synth):
    meta = json.load(open(os.path.join(synth, "synthetic.json")))
    assert meta["num_classes"] == 5 and meta["seed"] == 3 and len(meta["classes"]) == 5
    lists = os.path.join(synth, "ImageSets", "Segmentation")
    train = open(os.path.join(lists, "train.txt")).read().split()
    val = open(os.path.join(lists, "val.txt")).read().split()
    trainval = open(os.path.join(lists, "trainval.txt")).read().split()
    assert len(train) == 12 and len(val) == 4 and trainval == train + val
    assert not set(train) & set(val)
    label = Image.open(os.path.join(synth, "SegmentationClass", train[0] + ".png"))
    assert label.mode == "P"
    assert label.getpalette()[3:6] == [128, 0, 0]  # VOC colour of class 1
    values = set()
    for sid in trainval:
        values |= set(np.unique(np.asarray(
            Image.open(os.path.join(synth, "SegmentationClass", sid + ".png")))).tolist())
        assert Image.open(os.path.join(synth, "JPEGImages", sid + ".jpg")).size == (64, 48)
    assert values == {0, 1, 2, 3, 4, 255}


def test_synthetic_set_is_deterministic_by_seed(tmp_path, synth):
    again = make_synthetic_dataset(str(tmp_path / "a"), num_train=12, num_val=4, size=(48, 64),
                                   num_classes=5, seed=3)
    other = make_synthetic_dataset(str(tmp_path / "b"), num_train=12, num_val=4, size=(48, 64),
                                   num_classes=5, seed=4)
    for sub, name in (("JPEGImages", "synth_000005.jpg"), ("SegmentationClass",
                                                            "synth_000005.png")):
        assert filecmp.cmp(os.path.join(synth, sub, name), os.path.join(again, sub, name),
                           shallow=False)
        assert not filecmp.cmp(os.path.join(synth, sub, name), os.path.join(other, sub, name),
                               shallow=False)


def test_synthetic_classes_are_separable_from_local_colour(synth):
    """Nearest class-mean colour of each pixel already labels most val pixels right, so a small
    network can learn the set quickly (class identity is local)."""
    train = get_dataset("synthetic", synth, "train", mode="val")
    val = get_dataset("synthetic", synth, "val", mode="val")
    sums, counts = np.zeros((5, 3)), np.zeros(5)
    for i in range(len(train)):
        image, label = train.load(i)
        for k in range(5):
            sums[k] += image[label == k].sum(0)
            counts[k] += (label == k).sum()
    means = sums / counts[:, None]
    correct = total = 0
    for i in range(len(val)):
        image, label = val.load(i)
        pred = np.argmin(((image[:, :, None, :].astype(float) - means) ** 2).sum(-1), -1)
        keep = label != 255
        correct += (pred[keep] == label[keep]).sum()
        total += keep.sum()
    assert correct / total > 0.8


def test_get_dataset_synthetic_generates_into_empty_root_and_reuses_it(tmp_path):
    root = str(tmp_path / "gen")
    os.mkdir(root)  # an empty folder the user made for it
    ds = get_dataset("synthetic", root, "val", mode="val", num_train=3, num_val=2, size=24,
                     num_classes=3)
    assert len(ds) == 2 and ds.num_classes == 3 and ds.classes[0] == "background"
    stamp = os.path.getmtime(os.path.join(root, "synthetic.json"))
    again = get_dataset("synthetic", root, "train", num_classes=3)
    assert len(again) == 3 and os.path.getmtime(os.path.join(root, "synthetic.json")) == stamp
    with pytest.raises(ValueError, match="has 3 classes"):
        get_dataset("synthetic", root, "train", num_classes=4)


def test_synthetic_generator_refuses_a_non_empty_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        make_synthetic_dataset(str(tmp_path), num_train=2, num_val=1, size=16)
    with pytest.raises(DataError, match="not empty"):
        get_dataset("synthetic", str(tmp_path), "train")
    assert os.listdir(tmp_path) == ["mine.txt"]


def test_make_synthetic_script_writes_a_set_and_refuses_foreign_folder(tmp_path, capsys):
    main = runpy.run_path(SCRIPT, run_name="not_main")["main"]
    out = str(tmp_path / "s")
    main(["--output", out, "--num_train", "2", "--num_val", "1", "--size", "20", "30",
          "--num_classes", "4", "--seed", "7"])
    meta = json.load(open(os.path.join(out, "synthetic.json")))
    assert (meta["num_classes"], meta["seed"], meta["size"]) == (4, 7, [20, 30])
    main(["--output", out, "--num_train", "2", "--num_val", "1", "--size", "20"])  # own set: ok
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.jpg").write_bytes(b"x")
    with pytest.raises(SystemExit, match="refusing"):
        main(["--output", str(tmp_path / "foreign")])
    assert "wrote 2 train + 1 val" in capsys.readouterr().out


# -- transforms ---------------------------------------------------------------------------------
def test_normalize_uses_model_zoo_mean_and_std():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 0, 124
    out = normalize(image)
    assert isinstance(out, mx.nd.NDArray) and out.shape == (3, 2, 3) and out.dtype == np.float32
    expect = [(1 - MEAN[0]) / STD[0], -MEAN[1] / STD[1], (124 / 255 - MEAN[2]) / STD[2]]
    np.testing.assert_allclose(out.asnumpy()[:, 0, 0], expect, rtol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        normalize(image.astype(np.float32))


def _block_image(h=64, w=80, block=16, num_classes=4):
    """A label made of blocks and an image whose colour encodes the label (class k = colour k)."""
    yy, xx = np.mgrid[0:h, 0:w]
    label = (((yy // block) * 3 + (xx // block) * 5) % num_classes).astype(np.uint8)
    colours = np.array([[10, 200, 30], [220, 20, 60], [40, 50, 230], [240, 240, 20]], np.uint8)
    return colours[label], label, colours


def test_train_transform_keeps_image_and_label_aligned():
    image, label, colours = _block_image()
    transform = TrainTransform(crop_size=48, blur_prob=0.0)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out_img, out_lbl = transform(image, label, rng)
        assert out_img.shape == (3, 48, 48) and out_lbl.shape == (48, 48)
        rgb = _denormalize(out_img)
        keep = out_lbl != IGNORE_LABEL
        predicted = np.argmin(np.abs(rgb[:, :, None, :] - colours).sum(-1), -1)
        # Only pixels on block edges may differ (bilinear image vs nearest label).
        assert (predicted[keep] == out_lbl[keep]).mean() > 0.9


def test_train_transform_flip_moves_image_and_label_together():
    image, label, colours = _block_image(32, 32, 8)
    image[:, :16] = colours[0]
    label[:, :16] = 0
    transform = TrainTransform(crop_size=32, scale_range=(1.0, 1.0))
    sides = set()
    for seed in range(10):
        out_img, out_lbl = transform(image, label, np.random.default_rng(seed))
        left_is_zero = bool((out_lbl[:, :16] == 0).all())
        assert left_is_zero == bool(np.abs(_denormalize(out_img)[:, :16] - colours[0]).max() < 2)
        sides.add(left_is_zero)
    assert sides == {True, False}  # both orientations occurred


def test_train_padding_is_ignore_in_label_and_mean_in_image():
    image = np.full((20, 24, 3), 200, np.uint8)
    label = np.ones((20, 24), np.uint8)
    out_img, out_lbl = TrainTransform(crop_size=64, scale_range=(1.0, 1.0))(
        image, label, np.random.default_rng(0))
    pad = out_lbl == IGNORE_LABEL
    assert pad.sum() == 64 * 64 - 20 * 24 and (out_lbl[~pad] == 1).all()
    assert np.abs(out_img[:, pad]).max() == 0.0  # mean colour -> 0 after normalization
    assert np.abs(out_img[:, ~pad]).min() > 0.5


def test_labels_stay_integers_through_random_scaling():
    image, label, _ = _block_image(37, 53, 5)
    label[::7, ::3] = 255
    transform = TrainTransform(crop_size=40)
    for seed in range(8):
        _, out = transform(image, label, np.random.default_rng(seed))
        assert set(np.unique(out).tolist()) <= {0.0, 1.0, 2.0, 3.0, 255.0}


def test_gaussian_blur_option_smooths_the_image():
    image, label, _ = _block_image(48, 48, 4)
    sharp = TrainTransform(crop_size=48, scale_range=(1, 1), flip=False)
    blurred = TrainTransform(crop_size=48, scale_range=(1, 1), flip=False, blur_prob=1.0)
    a, _ = sharp(image, label, np.random.default_rng(0))
    b, _ = blurred(image, label, np.random.default_rng(0))
    assert np.abs(np.diff(b, axis=2)).max() < 0.8 * np.abs(np.diff(a, axis=2)).max()


def test_val_mode_returns_whole_image_and_full_size_label(synth):
    ds = get_dataset("synthetic", synth, "val", mode="val", crop_size=16)
    image, label = ds[0]
    raw_image, raw_label = ds.load(0)
    assert image.shape == (3, 48, 64) and label.shape == (48, 64)
    np.testing.assert_array_equal(label.asnumpy(), raw_label)
    np.testing.assert_allclose(image.asnumpy(), normalize(raw_image).asnumpy())


def test_train_mode_item_is_a_normalized_crop_with_float_label(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=40)
    image, label = ds[(2, (1, 2, 3))]
    assert image.shape == (3, 40, 40) and label.shape == (40, 40)
    assert image.dtype == np.float32 and label.dtype == np.float32
    again, _ = ds[(2, (1, 2, 3))]
    np.testing.assert_array_equal(image.asnumpy(), again.asnumpy())
    assert ds.ids[2] == "synth_000002" and ds.image_path(2).endswith("synth_000002.jpg")


# -- loaders ------------------------------------------------------------------------------------
def _batches(loader):
    return [(d.asnumpy(), lb.asnumpy()) for d, lb in loader]


def test_same_seed_gives_same_batches_and_other_seed_differs(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=24)
    a = _batches(make_dataloader(ds, 4, seed=5))
    b = _batches(make_dataloader(ds, 4, seed=5))
    c = _batches(make_dataloader(ds, 4, seed=6))
    assert len(a) == 3 and a[0][0].shape == (4, 3, 24, 24) and a[0][1].shape == (4, 24, 24)
    for (x, y), (u, v) in zip(a, b):
        np.testing.assert_array_equal(x, u)
        np.testing.assert_array_equal(y, v)
    assert any(not np.array_equal(x, u) for (x, _), (u, _) in zip(a, c))


def test_resume_at_iteration_n_reproduces_the_remaining_batches(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=16)
    # 12 samples, batch 5, rollover: batches cross epoch boundaries.
    full = _batches(make_dataloader(ds, 5, seed=11, num_iterations=7))
    resumed = _batches(make_dataloader(ds, 5, seed=11, start_iteration=4, num_iterations=3))
    for (x, y), (u, v) in zip(full[4:], resumed):
        np.testing.assert_array_equal(x, u)
        np.testing.assert_array_equal(y, v)
    loader = make_dataloader(ds, 5, seed=11)
    epochs = [_batches(loader) for _ in range(3)]  # each pass continues the stream
    assert [len(e) for e in epochs] == [2, 2, 2]
    np.testing.assert_array_equal(epochs[2][0][0], full[4][0])


def test_rollover_covers_every_sample_once_per_epoch_of_the_stream():
    from gluon_deeplab.data import SeededBatchSampler

    sampler = SeededBatchSampler(10, 4, seed=1)
    stream = [k for it in range(5) for k in sampler.batch(it)]
    assert sorted(i for i, _ in stream[:10]) == list(range(10))
    assert sorted(i for i, _ in stream[10:20]) == list(range(10))
    keep = SeededBatchSampler(10, 4, seed=1, last_batch="keep")
    assert [len(keep.batch(i)) for i in range(3)] == [4, 4, 2]
    big = SeededBatchSampler(3, 7, seed=1)  # batch larger than the dataset: spans epochs
    assert len(big) == 1 and sorted(i for i, _ in big.batch(0)[:6]) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="batch_size 7 > 3 samples"):
        SeededBatchSampler(3, 7, last_batch="discard")


def test_shards_split_the_samples_between_distributed_workers():
    from gluon_deeplab.data import SeededBatchSampler

    whole = SeededBatchSampler(10, 2, seed=3)
    assert SeededBatchSampler(10, 2, seed=3, shard=(0, 1)).batch(4) == whole.batch(4)
    shards = [SeededBatchSampler(10, 2, seed=3, shard=(r, 2)) for r in range(2)]
    seen = [{i for it in range(5) for i, _ in shard.batch(it)} for shard in shards]
    assert seen == [{0, 2, 4, 6, 8}, {1, 3, 5, 7, 9}]
    assert shards[0].batch(0)[0][1] != shards[1].batch(0)[0][1]  # own augmentation seeds
    with pytest.raises(ValueError, match="shard rank 2 outside 0..1"):
        SeededBatchSampler(10, 2, shard=(2, 2))
    with pytest.raises(ValueError, match="3 samples cannot feed 4 shards"):
        SeededBatchSampler(3, 1, shard=(3, 4))


def test_worker_loader_matches_single_process_and_splits_over_devices(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=24)
    single = _batches(make_dataloader(ds, 4, seed=2, num_iterations=3))
    workers = make_dataloader(ds, 4, seed=2, num_iterations=3, num_workers=2)
    multi = _batches(workers)
    for (x, y), (u, v) in zip(single, multi):
        np.testing.assert_array_equal(x, u)
        np.testing.assert_array_equal(y, v)
    data, label = next(iter(make_dataloader(ds, 4, seed=2, num_iterations=1, num_workers=2)))
    parts = mx.gluon.utils.split_and_load(data, [mx.cpu(0), mx.cpu(1)])
    assert [p.shape for p in parts] == [(2, 3, 24, 24)] * 2
    val = get_dataset("synthetic", synth, "val", mode="val")
    seen = []
    for batch in make_dataloader(val, 3, num_workers=2):
        assert isinstance(batch, list) and all(i.shape == (3, 48, 64) for i, _ in batch)
        seen.extend(lb.asnumpy() for _, lb in batch)
    assert len(seen) == 4  # every val image once, last partial batch kept
    np.testing.assert_array_equal(seen[3], val.load(3)[1])


def test_benchmark_loader_reports_images_per_second(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=32)
    rate = benchmark_loader(ds, batch_size=2, num_workers=0, num_batches=3)
    assert rate > 1.0


def test_dataset_pickles_for_worker_processes(synth):
    import pickle

    ds = get_dataset("synthetic", synth, "train", crop_size=16)
    clone = pickle.loads(pickle.dumps(ds))
    assert isinstance(clone, SegmentationDataset) and clone.ids == ds.ids
    np.testing.assert_array_equal(clone[(0, (1,))][0].asnumpy(), ds[(0, (1,))][0].asnumpy())
