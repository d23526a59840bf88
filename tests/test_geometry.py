"""Pixel geometry: feature j of a stride-S network must land on pixel S * j at every size.

The probe is a DeepLabV3 whose "backbone" samples input pixel S * j as feature j (what a
"same"-padded strided network does), so the exact answer of the upsampling is known: bilinear
interpolation between those samples, with the last sample held beyond the last cell.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from gluon_deeplab.data import get_dataset
from gluon_deeplab.evaluation import evaluate, predict_probabilities
from gluon_deeplab.models import DeepLabV3, DeepLabV3PlusDecoder, model_from_checkpoint, padded_size

SIZES = [(513, 513), (112, 144), (500, 375), (333, 97), (512, 512), (17, 40), (8, 9)]


class SamplingBackbone(nn.HybridBlock):
    """Feature j = input pixel S * j of channel 0 (tiled to 256 channels): an ideal stride-S
    network with ceil(H / S) cells."""

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.output_stride = stride

    @staticmethod
    def _sample(x, stride: int):
        sampled = mx.sym.Pooling if isinstance(x, mx.sym.Symbol) else mx.nd.Pooling
        cells = sampled(x, kernel=(1, 1), stride=(stride, stride), pool_type="max",
                        pooling_convention="valid")
        return cells.slice_axis(axis=1, begin=0, end=1).tile(reps=(1, 256, 1, 1))

    def stages(self, x):
        feats = self._sample(x, self.output_stride)
        return feats, feats

    def stages_with_low_level(self, x):
        return (self._sample(x, 4),) + self.stages(x)


class Identity(nn.HybridBlock):
    def hybrid_forward(self, F, x):
        return x


def probe_net(stride: int, fixed_size=None) -> DeepLabV3:
    """A DeepLabV3 whose logits (every class) are the sampled input, upsampled."""
    net = DeepLabV3(SamplingBackbone(stride), Identity(), num_classes=2, fixed_size=fixed_size)
    net.classifier.initialize(mx.init.Zero())
    weight = np.zeros((2, 256, 1, 1), dtype=np.float32)
    weight[:, 0] = 1.0
    net.classifier.weight.set_data(mx.nd.array(weight))
    return net


def probe_plus_net(stride: int, fixed_size=None) -> DeepLabV3:
    """:func:`probe_net` with a V3+ decoder that passes the head's channel 0 through: the
    low-level branch is zeroed, each 3x3 conv copies channel 0 (centre tap), BN is identity.
    Its logits are the sampled input upsampled twice (stride S -> 4 -> 1), which is the same
    piecewise-linear function as upsampling once: S -> 1."""
    decoder = DeepLabV3PlusDecoder(256, stride, fixed_size=fixed_size)
    net = DeepLabV3(SamplingBackbone(stride), Identity(), num_classes=2, fixed_size=fixed_size,
                    decoder=decoder)
    net.collect_params().initialize(mx.init.Zero())
    for name, param in decoder._collect_params_with_prefix().items():
        if name.endswith(("gamma", "running_var")):
            param.set_data(mx.nd.ones(param.shape) - (1e-5 if "running_var" in name else 0))
    for conv in (decoder.fuse[0][0], decoder.fuse[1][0]):
        weight = np.zeros(conv.weight.shape, dtype=np.float32)
        weight[0, 0, 1, 1] = 1.0
        conv.weight.set_data(mx.nd.array(weight))
    weight = np.zeros((2, 256, 1, 1), dtype=np.float32)
    weight[:, 0] = 1.0
    net.classifier.weight.set_data(mx.nd.array(weight))
    return net


def exact_answer(image: np.ndarray, stride: int) -> np.ndarray:
    """Pixel y reads feature y / S: interpolate the samples image[S*i, S*j] bilinearly."""
    h, w = image.shape
    rows, cols = np.arange(0, h, stride), np.arange(0, w, stride)
    samples = image[np.ix_(rows, cols)]
    by_rows = np.stack([np.interp(np.arange(h), rows, samples[:, j])
                        for j in range(len(cols))], axis=1)
    return np.stack([np.interp(np.arange(w), cols, by_rows[i]) for i in range(h)], axis=0)


def _image(h: int, w: int, stride: int, seed: int = 0) -> np.ndarray:
    rng = np.random.RandomState(seed + h * 1000 + w)
    image = np.zeros((h, w), dtype=np.float32)
    # A peak on a known feature cell, plus random values on every sampled pixel.
    image[::stride, ::stride] = rng.uniform(0, 1, image[::stride, ::stride].shape)
    image[stride * ((h - 1) // stride // 2), stride * ((w - 1) // stride // 2)] = 5.0
    return image


PROBES = {"v3": probe_net, "v3plus": probe_plus_net}


@pytest.mark.parametrize("model", sorted(PROBES))
@pytest.mark.parametrize("stride", [16, 8])
@pytest.mark.parametrize("hybridize", [False, True])
def test_upsampled_logits_put_feature_j_on_pixel_stride_times_j(model, stride, hybridize):
    """The V3 logits path and the V3+ decoder path (stride S -> 4 -> 1) alike."""
    net = PROBES[model](stride)
    if hybridize:
        net.hybridize()
    for h, w in SIZES:
        image = _image(h, w, stride)
        x = mx.nd.array(np.broadcast_to(image, (1, 3, h, w)))
        logits = net(x)[0, 0].asnumpy()
        assert logits.shape == (h, w)
        peak = np.unravel_index(logits.argmax(), logits.shape)
        assert peak == (stride * ((h - 1) // stride // 2), stride * ((w - 1) // stride // 2)), \
            (h, w)
        np.testing.assert_allclose(logits, exact_answer(image, stride), atol=1e-5,
                                   err_msg=f"{h}x{w}")


@pytest.mark.parametrize("model", sorted(PROBES))
@pytest.mark.parametrize("size", [(112, 144), (513, 513), (40, 17)])
def test_fixed_size_graph_for_onnx_upsamples_like_the_any_size_graph(model, size):
    h, w = size
    image = _image(h, w, 16)
    x = mx.nd.array(np.broadcast_to(image, (1, 3, h, w)))
    fixed = PROBES[model](16, fixed_size=size)(x)[0, 0].asnumpy()
    np.testing.assert_allclose(fixed, exact_answer(image, 16), atol=1e-5)


def test_aux_logits_use_the_stride_of_stage3_features():
    from gluon_deeplab import build_model

    for stride in (8, 16, 32):
        net = build_model(3, "resnet18_v2", output_stride=stride, aux=True)
        logits, aux = net(mx.nd.zeros((1, 3, 45, 70)))
        assert logits.shape == aux.shape == (1, 3, 45, 70)


def test_padded_size_is_the_next_stride_multiple_plus_one():
    assert [padded_size(n, 16) for n in (1, 2, 16, 17, 18, 112, 500, 513, 514)] == \
        [1, 17, 17, 17, 33, 113, 513, 513, 529]
    assert padded_size(375, 8) == 377


@pytest.mark.parametrize("crop_size", [None, 40])
def test_inference_pads_images_so_that_no_pixel_is_extrapolated(crop_size):
    """With the image padded to S*k+1, pixels past the last feature of the unpadded image
    interpolate towards the next sample instead of repeating the last one."""
    stride = 16
    net = probe_net(stride)
    net.hybridize()
    h, w = 56, 75
    image = _image(h, w, stride)
    prob = predict_probabilities(net, mx.nd.array(np.broadcast_to(image, (3, h, w))), mx.cpu(),
                                 crop_size=crop_size)
    # Two equal logits: probability 1/2 everywhere, whatever the geometry. Check the logits.
    np.testing.assert_allclose(prob, 0.5, atol=1e-6)
    from gluon_deeplab.evaluation.inference import _logits

    x = mx.nd.array(np.broadcast_to(image, (1, 3, h, w)))
    padded = np.zeros((padded_size(h, stride), padded_size(w, stride)), np.float32)
    padded[:h, :w] = image
    expected = exact_answer(padded, stride)[:h, :w]
    np.testing.assert_allclose(_logits(net, x, stride)[0, 0].asnumpy(), expected, atol=1e-5)
    # Without the padding the graph holds the last sample (edge padding) instead.
    np.testing.assert_allclose(_logits(net, x, None)[0, 0].asnumpy(),
                               exact_answer(image, stride), atol=1e-5)


def test_trained_model_scores_the_same_at_its_own_size_as_padded_by_hand(trained_synthetic):
    """evaluate() at the images' own size (48x64, not 16k+1) == the images padded by hand to
    49x65 with the mean (label: ignore) and cropped back."""
    root, checkpoint = trained_synthetic
    net, _ = model_from_checkpoint(checkpoint)
    net.hybridize()
    val = get_dataset("synthetic", root, "val", mode="val")
    own, _ = evaluate(net, val, mx.cpu(), progress=False)

    class PaddedByHand:
        num_classes, ignore_label = val.num_classes, val.ignore_label

        def __len__(self):
            return len(val)

        def __getitem__(self, i):
            image, label = val[i]
            h, w = label.shape
            ph, pw = padded_size(h, 16), padded_size(w, 16)
            padded = mx.nd.zeros((3, ph, pw))
            padded[:, :h, :w] = image
            padded_label = np.full((ph, pw), 255, dtype=np.int64)
            padded_label[:h, :w] = np.asarray(label.asnumpy() if hasattr(label, "asnumpy")
                                              else label)
            return padded, padded_label

    by_hand, _ = evaluate(net, PaddedByHand(), mx.cpu(), progress=False)
    assert abs(own["miou"] - by_hand["miou"]) < 1e-6


@pytest.mark.parametrize("stride", [16, 8])
def test_bucket_padding_gives_the_pixel_exact_answer_of_the_own_size_padding(stride):
    """For an ideal "same"-padded network (the probe) the extra mean padding of a bucket is
    invisible: on the image's pixels the logits equal those of the image padded to its own
    S*k+1, exactly. (A trained CNN differs a little: see tests/test_eval_pipeline.py.)"""
    from gluon_deeplab.evaluation.inference import _logits
    from gluon_deeplab.models import bucket_size

    net = probe_net(stride)
    net.hybridize(static_alloc=True, static_shape=True)
    for h, w in SIZES + [(130, 260), (600, 90)]:
        x = mx.nd.array(np.broadcast_to(_image(h, w, stride), (1, 3, h, w)))
        own = _logits(net, x, stride, buckets=False)[0, 0].asnumpy()
        bucketed = _logits(net, x, stride, buckets=True)[0, 0].asnumpy()
        assert bucketed.shape == own.shape == (h, w)
        assert bucket_size(h, stride) >= padded_size(h, stride)
        np.testing.assert_allclose(bucketed, own, atol=1e-5, err_msg=f"{h}x{w}")
