"""Shared fixtures: small models and a model zoo ImageNet-format file written on the spot."""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _seed_everything():
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def zoo_resnet50_v2_file(tmp_path_factory):
    """A file saved from the model zoo's resnet50_v2, like ``resnet50_v2-81a4e66a.params``."""
    from mxnet.gluon.model_zoo import vision

    net = vision.resnet50_v2()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))  # resolve deferred shapes
    # Non-trivial running statistics, so that a wrong mapping of BN arrays shows.
    for name, param in net.collect_params().items():
        if name.endswith(("running_mean", "running_var", "gamma", "beta")):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, shape=param.shape))
    path = tmp_path_factory.mktemp("zoo") / "resnet50_v2-81a4e66a.params"
    net.save_parameters(str(path))
    return str(path), net


@pytest.fixture(scope="session")
def trained_synthetic(tmp_path_factory):
    """(data root, final checkpoint): resnet18_v2 + ASPP trained by the project's own trainer
    for 100 iterations on a small synthetic set (3 classes, 48x64 images); val mIoU ~0.7."""
    from gluon_deeplab.data import make_synthetic_dataset
    from gluon_deeplab.training import train

    base = tmp_path_factory.mktemp("trained_synthetic")
    root = make_synthetic_dataset(str(base / "data"), num_train=16, num_val=6, size=(48, 64),
                                  num_classes=3, seed=0)
    result = train({"dataset": "synthetic", "data_dir": root,
                    "base_architecture": "resnet18_v2", "batch_size": 8, "crop_size": 48,
                    "max_iter": 100, "initial_learning_rate": 0.02, "val_interval": 0,
                    "checkpoint_interval": 1000, "num_workers": 0, "progress": 0,
                    "output_dir": str(base / "run")})
    return root, result["checkpoint"]


@pytest.fixture
def local_http_server(tmp_path):
    """(base URL, served folder): a threaded HTTP server on 127.0.0.1 (free port), stopped at
    the end of the test; it logs every requested path in ``server.requests``."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    server.requests = requests
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def onnx_export_matches_checkpoint():
    """A check (checkpoint, prefix, (H, W), batch) -> export files: exports the checkpoint
    with an ONNX graph of that size and asserts onnxruntime's logits equal MXNet's (skips
    without the [onnx] extra)."""
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package ([onnx] extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime ([onnx] extra)")
    from gluon_deeplab.checkpoint import model_from_checkpoint
    from gluon_deeplab.deploy import export_checkpoint, onnx_logits

    def check(checkpoint, prefix, size, batch=1):
        files = export_checkpoint(checkpoint, prefix, onnx_input_size=size)
        reference, _ = model_from_checkpoint(checkpoint)
        x = mx.nd.random.normal(shape=(batch, 3) + tuple(size))
        expected = reference(x).asnumpy()
        got = onnx_logits(files["onnx"], x.asnumpy())
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())
        return files
    return check


@pytest.fixture
def predict_py_probabilities():
    """(net, x N x 3 x H x W) -> predict.py's probabilities (numpy N x C x H x W) of each
    image: padded with the mean to output_stride * k + 1, logits cropped back, softmax."""
    from gluon_deeplab.evaluation import predict_probabilities

    def probabilities(net, x):
        return np.stack([predict_probabilities(net, image, mx.cpu()) for image in x])
    return probabilities
