"""uint8 training batches normalized on the device, the shared-memory check, default workers."""

from __future__ import annotations

import os

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab.data import (
    IGNORE_LABEL,
    PAD_COLOUR,
    PAD_ERROR,
    SharedMemoryError,
    check_shared_memory,
    default_num_workers,
    get_dataset,
    make_dataloader,
    make_synthetic_dataset,
    normalize_batch,
)
from gluon_deeplab.data import loader as loader_module


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth") / "set")
    return make_synthetic_dataset(root, num_train=8, num_val=2, size=(40, 56), num_classes=4,
                                  seed=1)


def _float_batch(ds, loader, iteration):
    """Today's float pipeline on the same keys: host-normalized crops, float labels."""
    samples = [ds.get_numpy(key) for key in loader.batch_sampler.batch(iteration)]
    return np.stack([s[0] for s in samples]), np.stack([s[1] for s in samples])


def test_uint8_batches_normalized_on_the_device_equal_the_float_pipeline(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=72)  # larger than the images: pads
    loader = make_dataloader(ds, 4, seed=7, num_iterations=3)
    ctxs = [mx.cpu(0), mx.cpu(1)]
    padded = 0
    for iteration, (images, labels) in enumerate(loader):
        assert images.dtype == np.uint8 and labels.dtype == np.uint8
        expect_images, expect_labels = _float_batch(ds, loader, iteration)
        np.testing.assert_array_equal(labels.asnumpy(), expect_labels)
        parts = mx.gluon.utils.split_and_load(images, ctxs)
        got = np.concatenate([normalize_batch(p).asnumpy() for p in parts])
        assert [p.context for p in parts] == ctxs and got.dtype == np.float32
        pad = (expect_labels == IGNORE_LABEL)[:, None] & \
            (images.asnumpy() == PAD_COLOUR[None, :, None, None])
        # Inside the crop: the same float32 operations, the same numbers.
        np.testing.assert_array_equal(got[~pad], expect_images[~pad])
        # The padding: the mean rounded to uint8, at most PAD_ERROR from the exact 0.
        assert np.abs(got[pad] - expect_images[pad]).max() <= PAD_ERROR + 1e-7
        padded += int(pad.sum())
    assert padded > 0 and 0.004 < PAD_ERROR < 0.009


def test_float_batches_pass_through_normalize_batch_unchanged():
    batch = mx.nd.array(np.random.RandomState(0).randn(2, 3, 5, 5))
    assert normalize_batch(batch) is batch


def test_uint8_batches_are_a_quarter_of_the_float32_bytes(synth):
    ds = get_dataset("synthetic", synth, "train", crop_size=33)
    images, labels = next(iter(make_dataloader(ds, 4, seed=0, num_iterations=1)))
    expect_images, expect_labels = _float_batch(
        ds, make_dataloader(ds, 4, seed=0, num_iterations=1), 0)
    float_bytes = expect_images.nbytes + expect_labels.nbytes
    uint8_bytes = images.asnumpy().nbytes + labels.asnumpy().nbytes
    assert float_bytes == 4 * uint8_bytes == 4 * 4 * (4 * 33 * 33)


def test_a_training_step_sees_the_same_loss_from_uint8_and_float_batches(synth):
    from gluon_deeplab import build_model
    from gluon_deeplab.training import forward_backward
    from gluon_deeplab.training.loss import SegmentationLoss

    # Crops no larger than the images at scale 1: no padding, so both inputs are equal.
    ds = get_dataset("synthetic", synth, "train", crop_size=32, scale_range=(1.0, 1.0))
    loader = make_dataloader(ds, 4, seed=3, num_iterations=1)
    images, labels = next(iter(loader))
    float_images, float_labels = _float_batch(ds, loader, 0)
    ctxs = [mx.cpu(0), mx.cpu(1)]
    net = build_model(4, "resnet18_v2", ctx=ctxs)
    losses = []
    for x, y in ((images, labels), (mx.nd.array(float_images), mx.nd.array(float_labels))):
        for k, ctx in enumerate(ctxs):
            mx.random.seed(k, ctx=ctx)  # the same dropout masks
        losses.append(forward_backward(net, SegmentationLoss(), x, y, ctxs).asscalar())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


class _StatVfs:
    def __init__(self, free_bytes):
        self.f_frsize = 4096
        self.f_bavail = free_bytes // 4096


def test_too_little_shared_memory_is_a_one_line_error_naming_docker_flags(synth, monkeypatch):
    ds = get_dataset("synthetic", synth, "train", crop_size=64)
    batch_bytes = 4 * 4 * 64 * 64  # batch 4, uint8 image (3 bytes/px) + label (1)
    need = batch_bytes * (2 * 2 + 1)  # gluon prefetches 2 per worker, + the batch in use
    seen = []

    def statvfs(free):
        def fake(path):
            seen.append(path)
            return _StatVfs(free)
        return fake

    monkeypatch.setattr(loader_module.os, "statvfs", statvfs(need - 4096))
    with pytest.raises(SharedMemoryError) as err:
        make_dataloader(ds, 4, num_workers=2)
    message = str(err.value)
    assert "\n" not in message and "--shm-size=1g" in message and "--ipc=host" in message
    assert "--num_workers" in message and seen == ["/dev/shm"]
    assert isinstance(err.value, OSError)  # the training CLI prints it as one line
    monkeypatch.setattr(loader_module.os, "statvfs", statvfs(need))
    make_dataloader(ds, 4, num_workers=2)  # fits exactly
    make_dataloader(ds, 4, num_workers=2, prefetch=0)  # 1 batch only
    monkeypatch.setattr(loader_module.os, "statvfs", statvfs(0))
    make_dataloader(ds, 4, num_workers=0)  # no worker processes: nothing to check
    make_dataloader(ds, 4, num_workers=2, thread_pool=True)
    with pytest.raises(SharedMemoryError, match="1 loader workers keep up to 3 batches"):
        make_dataloader(ds, 4, num_workers=1)


def test_shared_memory_check_skips_systems_without_dev_shm(monkeypatch):
    def missing(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(loader_module.os, "statvfs", missing)
    check_shared_memory(10 ** 12, 8, 4)  # no /dev/shm (macOS): no error
    monkeypatch.undo()
    if os.path.isdir("/dev/shm"):
        with pytest.raises(SharedMemoryError, match="/dev/shm has"):
            check_shared_memory(2 ** 60, 2, 1)


def test_default_num_workers_is_four_per_device_at_most_the_cpu_count():
    assert default_num_workers(1, cpu_count=16) == 4
    assert default_num_workers(2, cpu_count=16) == 8
    assert default_num_workers(8, cpu_count=16) == 16
    assert default_num_workers(8, cpu_count=64) == 32
    assert default_num_workers(4, cpu_count=1) == 1
    assert default_num_workers(1) == min(4, os.cpu_count() or 1)


def test_num_workers_flag_defaults_to_auto_and_an_explicit_value_is_kept():
    from gluon_deeplab.training.cli import build_parser, config_from_args
    from gluon_deeplab.training.config import TrainConfig
    from gluon_deeplab.training.run_setup import loader_workers

    parser = build_parser()
    assert "4 per device" in parser.format_help()
    said = []
    auto = config_from_args(parser.parse_args([]))
    assert auto.num_workers is None
    assert loader_workers(auto, 3, said.append) == default_num_workers(3)
    assert len(said) == 1 and "worker processes" in said[0]
    explicit = config_from_args(parser.parse_args(["--num_workers", "0"]))
    assert loader_workers(explicit, 3, said.append) == 0 and len(said) == 1
    with pytest.raises(ValueError, match="--num_workers must be an integer >= 0"):
        TrainConfig(num_workers=-1).check()
