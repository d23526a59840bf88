"""Evaluation for GPUs: bucket padding (few input shapes), threads decoding ahead, group k+1
queued before group k is read, static buffers; measured with ``measure_evaluation``."""

from __future__ import annotations

import threading
from unittest import mock

import mxnet as mx
import numpy as np
import pytest
from eval_throughput import distinct_sizes, measure_evaluation

from gluon_deeplab.data import get_dataset, make_synthetic_dataset
from gluon_deeplab.evaluation import evaluate, predict_probabilities
from gluon_deeplab.evaluation import split as split_module
from gluon_deeplab.evaluation.inference import _logits
from gluon_deeplab.models import bucket_size, model_from_checkpoint, padded_size

# Two sizes that are their own bucket (129 = 16*8+1, 65 = 16*4+1): the same input either way.
ON_BUCKET = [(129, 65), (65, 129)]


@pytest.fixture(scope="module")
def model(trained_synthetic):
    root, checkpoint = trained_synthetic
    net, _ = model_from_checkpoint(checkpoint, ctx=[mx.cpu(0), mx.cpu(1)])
    net.hybridize()
    return net, root, checkpoint


@pytest.fixture(scope="module")
def sizes20(tmp_path_factory):
    """A val split of 20 images of 20 distinct sizes (40..160 pixels, 3 classes)."""
    sizes = [hw for hw in distinct_sizes(20, 40, 160, seed=1) if hw not in ON_BUCKET][:18]
    root = str(tmp_path_factory.mktemp("sizes20") / "set")
    make_synthetic_dataset(root, num_train=1, num_val=20, size=(48, 64), num_classes=3,
                           seed=2, val_sizes=sizes + ON_BUCKET)
    return get_dataset("synthetic", root, "val", mode="val"), sizes + ON_BUCKET


def test_bucket_ladder_is_short_and_every_bucket_is_a_stride_multiple_plus_one():
    for stride in (8, 16):
        for n in range(1, 1200):
            b = bucket_size(n, stride)
            assert b >= padded_size(n, stride) and (b - 1) % stride == 0
        assert len({bucket_size(n, stride) for n in range(100, 514)}) == 4  # 129 .. 513
    assert [bucket_size(n, 16) for n in (48, 64, 300, 375, 500, 700)] == \
        [65, 65, 385, 385, 513, 769]


def test_buckets_cut_the_input_shapes_over_20_sizes_and_keep_the_metrics_close(model, sizes20):
    """Measured on this fixture model: shapes 19 -> 9, mean pixel agreement ~0.94 and mIoU
    within ~0.04 of the own-size padding. The extra mean padding is not free for a real CNN:
    the image-pooling branch averages over it and border pixels see it (the pixel-exact probe
    of tests/test_geometry.py agrees exactly). Images already on a bucket agree exactly."""
    net, _, _ = model
    val, sizes = sizes20
    own = measure_evaluation(net, val, mx.cpu(0), buckets=False, num_workers=0)
    bucketed = measure_evaluation(net, val, mx.cpu(0), buckets=True)
    assert own["images"] == 20 and own["images_per_s"] > 0
    padded = {(padded_size(h, 16), padded_size(w, 16)) for h, w in sizes}
    assert own["input_shapes"] == len(padded) >= 18  # some sizes share their S*k+1
    expected = {(bucket_size(h, 16), bucket_size(w, 16)) for h, w in sizes}
    assert bucketed["input_shapes"] == len(expected) <= 9
    assert abs(bucketed["miou"] - own["miou"]) < 0.1
    agreement = []
    for i, hw in enumerate(sizes):
        image, _ = val[i]
        a = predict_probabilities(net, image, mx.cpu(0), buckets=True)
        b = predict_probabilities(net, image, mx.cpu(0), buckets=False)
        if hw in ON_BUCKET:
            np.testing.assert_array_equal(a, b)
        agreement.append((a.argmax(0) == b.argmax(0)).mean())
    assert np.mean(agreement) > 0.85


def test_buckets_are_the_default_on_gpus_and_own_size_padding_on_cpus(model):
    from gluon_deeplab.evaluation import cli

    net, _, _ = model
    seen = []
    probe = lambda x: (seen.append(x.shape), net(x))[1]  # noqa: E731
    image = mx.nd.zeros((1, 3, 40, 70))
    _logits(probe, image, 16)  # a CPU context: the image's own 16k+1
    assert seen[-1][2:] == (padded_size(40, 16), padded_size(70, 16))
    gpu_like = mock.Mock(wraps=image, shape=image.shape, context=mx.gpu(0))
    with mock.patch("mxnet.nd.pad", return_value=image) as pad:
        _logits(lambda x: mx.nd.zeros((1, 2, 65, 129)), gpu_like, 16)
    width = pad.call_args.kwargs["pad_width"]
    assert (40 + width[5], 70 + width[7]) == (bucket_size(40, 16), bucket_size(70, 16))
    parse = cli.build_parser().parse_args
    assert parse(["--checkpoint", "x", "--data_dir", "d"]).buckets is None  # auto: by the device
    assert parse(["--checkpoint", "x", "--data_dir", "d", "--buckets"]).buckets is True
    assert parse(["--checkpoint", "x", "--data_dir", "d", "--no_buckets"]).buckets is False


def test_threaded_evaluation_gives_the_in_thread_confusion_matrix(model, sizes20, monkeypatch):
    net, _, _ = model
    val, sizes = sizes20
    ctxs = [mx.cpu(0), mx.cpu(1)]
    threads = []

    class Recording:
        num_classes, ignore_label, ids = val.num_classes, val.ignore_label, val.ids

        def __len__(self):
            return 5

        def __getitem__(self, i):
            threads.append(threading.current_thread().name)
            return val[i]

    events = []
    by_shape = {(h, w): i for i, (h, w) in enumerate(sizes)}
    real_predict, real_record = split_module.predict_probabilities_nd, \
        split_module._Recorder.__call__

    def predict(net, image, *args):
        events.append(f"q{by_shape[image.shape[1:]]}")
        return real_predict(net, image, *args)

    def record(self, index, *args):
        events.append(f"r{index}")
        return real_record(self, index, *args)

    in_thread, cm_main = evaluate(net, Recording(), ctxs, progress=False, num_workers=0)
    assert set(threads) == {threading.current_thread().name}
    threads.clear()
    monkeypatch.setattr(split_module, "predict_probabilities_nd", predict)
    monkeypatch.setattr(split_module._Recorder, "__call__", record)
    workers, cm_workers = evaluate(net, Recording(), ctxs, progress=False, num_workers=2)
    np.testing.assert_array_equal(cm_workers.matrix, cm_main.matrix)
    assert workers == in_thread
    assert threads and all(name.startswith("gluon-deeplab-eval") for name in threads)
    # 5 images on 2 devices: group k+1 is queued before group k is read back.
    assert events == ["q0", "q1", "q2", "q3", "r0", "r1", "q4", "r2", "r3", "r4"]


def test_eval_loads_checkpoints_with_static_buffers_and_no_buckets_restores_own_padding(
        model, tmp_path):
    from gluon_deeplab.evaluation.loading import load_inference_model
    from gluon_deeplab.evaluation.run import run_eval

    net, root, checkpoint = model
    loaded = load_inference_model(checkpoint, None, [mx.cpu()])
    flags = dict(loaded.net._flags)
    assert flags["static_alloc"] is True and flags["static_shape"] is True
    val = get_dataset("synthetic", root, "val", mode="val")
    own, _ = evaluate(net, val, mx.cpu(), progress=False, buckets=False)
    result = run_eval({"checkpoint": checkpoint, "data_dir": root, "dataset": "synthetic",
                       "no_progress": True, "buckets": False})
    assert result["settings"]["buckets"] is False
    assert result["miou"] == pytest.approx(own["miou"], abs=1e-6)


def test_val_sizes_of_the_synthetic_set_are_checked(tmp_path):
    with pytest.raises(ValueError, match="val_sizes must be at least 8x8"):
        make_synthetic_dataset(str(tmp_path / "s"), num_train=1, num_val=2, val_sizes=[(4, 30)])
