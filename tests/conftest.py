"""Shared fixtures: small models and a model zoo ImageNet-format file written on the spot."""

from __future__ import annotations

import os

import mxnet as mx
import numpy as np
import pytest

from gluon_deeplab.mxnet_builds import GPU_QUERY


@pytest.fixture(autouse=True)
def _seed_everything():
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory):
    """The bf16 probe's cache (bf16_probe.py) in a folder of this session, for every process
    the tests start too: no test reads or writes the user's ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


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
def data_dir(tmp_path_factory) -> str:
    """A small synthetic set (8 train / 2 val images of 48x64, 3 classes) for training runs;
    a module that needs another set defines its own ``data_dir``."""
    from gluon_deeplab.data import make_synthetic_dataset

    root = str(tmp_path_factory.mktemp("tiny_synthetic") / "data")
    make_synthetic_dataset(root, num_train=8, num_val=2, size=(48, 64), num_classes=3, seed=0)
    return root


@pytest.fixture(scope="session")
def trained_synthetic(tmp_path_factory):
    """(data root, final checkpoint): resnet18_v2 + ASPP trained by the project's own trainer
    for 100 iterations on a small synthetic set (3 classes, 48x64 images); val mIoU ~0.7.
    Trained in a process of its own with one OpenMP thread: the same model on every run of
    the suite on one machine (several threads sum in a varying order)."""
    import json
    import subprocess
    import sys

    from gluon_deeplab.data import make_synthetic_dataset

    base = tmp_path_factory.mktemp("trained_synthetic")
    root = make_synthetic_dataset(str(base / "data"), num_train=16, num_val=6, size=(48, 64),
                                  num_classes=3, seed=0)
    settings = {"dataset": "synthetic", "data_dir": root,
                "base_architecture": "resnet18_v2", "batch_size": 8, "crop_size": 48,
                "max_iter": 100, "initial_learning_rate": 0.02, "val_interval": 0,
                "checkpoint_interval": 1000, "num_workers": 0, "progress": 0,
                "output_dir": str(base / "run")}
    code = ("import json, sys\nfrom gluon_deeplab.training import train\n"
            "print(json.dumps(train(json.loads(sys.argv[1]))['checkpoint']))")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code, json.dumps(settings)], cwd=repo,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=repo),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """(output folder, finished process) of ``sh/quickstart.sh`` run once at tiny settings:
    tests/test_quickstart.py checks it and tests/test_docs.py starts from its outputs."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    env = dict(os.environ, SKIP_SETUP="1", PYTHON=sys.executable, OUT=str(out), ITERS="4",
               BATCH="4", CROP="48", NUM_TRAIN="8", NUM_VAL="4", HEIGHT="48", WIDTH="64",
               PYTHONPATH=root, OMP_NUM_THREADS="1")
    done = subprocess.run(["sh", os.path.join(root, "sh", "quickstart.sh")], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    return out, done


@pytest.fixture(scope="session")
def voc_recipe_run(tmp_path_factory):
    """The README's VOC recipe run once as written, at tiny sizes, on VOC and SBD archives in
    their real layouts served from 127.0.0.1 (tests/test_voc_recipe.py checks it and
    tests/test_docs.py starts from its outputs)."""
    from test_voc_recipe import run_recipe

    return run_recipe(tmp_path_factory.mktemp("voc_recipe"))


@pytest.fixture
def local_http_server(tmp_path):
    """(base URL, served folder, server): a threaded HTTP server on 127.0.0.1 (free port),
    stopped at the end of the test; it logs every requested path in ``server.requests``."""
    from http_server import serve_folder

    served = tmp_path / "served"
    served.mkdir()
    with serve_folder(str(served)) as (base, server):
        yield base, served, server


@pytest.fixture
def onnx_export_matches_checkpoint():
    """A check (checkpoint, prefix, (H, W), batch) -> export files: exports the checkpoint
    with an ONNX graph of that size and asserts onnxruntime's logits equal MXNet's (skips
    without the [onnx] extra)."""
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package ([onnx] extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime ([onnx] extra)")
    from gluon_deeplab.deploy import export_checkpoint, onnx_logits
    from gluon_deeplab.models import model_from_checkpoint

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
    """(net, x N x 3 x H x W) -> ``predict.py --no_buckets``'s probabilities (numpy N x C x H
    x W) of each image: padded with the mean to the smallest output_stride * k + 1, logits
    cropped back, softmax."""
    from gluon_deeplab.evaluation import predict_probabilities

    def probabilities(net, x):
        return np.stack([predict_probabilities(net, image, mx.cpu(), buckets=False)
                         for image in x])
    return probabilities


@pytest.fixture
def fake_nvidia_smi(tmp_path):
    """A factory of folders holding an ``nvidia-smi`` script, for ``PATH``: its header names a
    driver for CUDA ``cuda`` ("12.2") and its GPU queries list ``gpus`` ((name, MiB) or (name,
    MiB, compute capability "9.0"; "8.0" where not given), ...); ``cuda=None``: it fails as on a
    machine whose driver is not loaded (exit status 9)."""
    def make(cuda, gpus=(("NVIDIA A100-SXM4-80GB", 81920),)):
        gpus = [(g[0], g[1], g[2] if len(g) > 2 else "8.0") for g in gpus]
        folder = tmp_path / f"nvidia-smi-{cuda}-{len(gpus)}-{gpus[0][2] if gpus else ''}"
        folder.mkdir()
        if cuda is None:
            body = ("echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
                    "driver.\"\nexit 9\n")
        else:
            query = "".join(f"{name}, {mib} MiB\\n" for name, mib, _ in gpus)
            caps = "".join(f"{i}, {name}, {cc}, {mib}\\n"
                           for i, (name, mib, cc) in enumerate(gpus))
            header = (f"+------+\\n| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   "
                      f"CUDA Version: {cuda}     |\\n| GPU  Name  Persistence-M |\\n")
            body = (f'if [ "$1" = "--query-gpu=name,memory.total" ]; then\n'
                    f"    printf '{query}'\n    exit 0\nfi\n"
                    f'if [ "$1" = "{GPU_QUERY[0]}" ]; then\n'
                    f"    printf '{caps}'\n    exit 0\nfi\nprintf '{header}'\n")
        script = folder / "nvidia-smi"
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
        return folder
    return make


@pytest.fixture(scope="session")
def no_mxnet_path(tmp_path_factory):
    """A PYTHONPATH of the repository and this environment's packages less MXNet, for
    ``python -S`` (no site-packages): a machine where MXNet is not installed."""
    site = os.path.dirname(os.path.dirname(mx.__file__))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = tmp_path_factory.mktemp("site-without-mxnet")
    for name in os.listdir(site):
        if not (name == "mxnet" or name.startswith("mxnet-") or name.endswith(".pth")):
            os.symlink(os.path.join(site, name), folder / name)
    return os.pathsep.join([repo, str(folder)])


@pytest.fixture
def read_tensorboard():
    """A reader (event file or folder) -> {"scalars": {tag: [(step, value)]}, "images": {tag:
    [ImageEvent]}, "text": {tag: [(step, str)]}}, through TensorBoard's own EventAccumulator
    (skips where the tensorboard package of the [test] extra is not installed; an installed one
    that fails to import is an error)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:  # one that fails to import fails here
        pytest.skip("reading event files needs tensorboard (the [test] extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def read(path):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0,
                                                         "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        return {"scalars": {t: [(e.step, e.value) for e in acc.Scalars(t)]
                            for t in tags["scalars"]},
                "images": {t: acc.Images(t) for t in tags["images"]},
                "text": {t: [(e.step, e.tensor_proto.string_val[0].decode("utf-8"))
                             for e in acc.Tensors(t)] for t in tags["tensors"]}}
    return read


@pytest.fixture(scope="session")
def trained_v3plus(tmp_path_factory):
    """head -> (data root, final checkpoint): resnet18_v2 + that head + the V3+ decoder,
    trained like ``trained_synthetic`` (60 iterations); trained on first use per head."""
    from gluon_deeplab.data import make_synthetic_dataset
    from gluon_deeplab.training import train

    runs = {}

    def get(head: int):
        if head not in runs:
            base = tmp_path_factory.mktemp(f"trained_v3plus_{head}")
            root = make_synthetic_dataset(str(base / "data"), num_train=16, num_val=6,
                                          size=(48, 64), num_classes=3, seed=0)
            result = train({"dataset": "synthetic", "data_dir": root, "decoder": True,
                            "aspp_or_vortex": head, "base_architecture": "resnet18_v2",
                            "batch_size": 8, "crop_size": 48, "max_iter": 60,
                            "initial_learning_rate": 0.02, "val_interval": 0,
                            "checkpoint_interval": 1000, "num_workers": 0, "progress": 0,
                            "output_dir": str(base / "run")})
            runs[head] = (root, result["checkpoint"])
        return runs[head]
    return get


@pytest.fixture
def bf16_export_agrees_with_fp32(tmp_path):
    """A check (data root, checkpoint): ``export.py --dtype bf16`` of the checkpoint, whose
    argmax agrees with the fp32 model's on >= 98% of pixels at three sizes, and whose mIoU on
    the synthetic val split is the fp32 one within 0.005. Needs a CPU that runs bf16."""
    from gluon_deeplab.data import get_dataset
    from gluon_deeplab.deploy.cli import export_main
    from gluon_deeplab.evaluation import predict_probabilities
    from gluon_deeplab.evaluation.run import run_eval
    from gluon_deeplab.models import model_from_checkpoint

    def check(root, checkpoint):
        prefix = str(tmp_path / "bf16")
        export_main(["--checkpoint", checkpoint, "--output", prefix, "--dtype", "bf16",
                     "--overwrite"])
        bf16 = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                            prefix + "-0000.params")
        fp32, _ = model_from_checkpoint(checkpoint)
        image = get_dataset("synthetic", root, "val", mode="val")[0][0].expand_dims(0)
        for h, w in [(48, 64), (37, 53), (96, 72)]:
            x = mx.nd.contrib.BilinearResize2D(image, height=h, width=w)
            out = bf16(x)
            assert out.shape == (1, 3, h, w) and out.dtype == np.float32
            reference = np.stack([predict_probabilities(fp32, image, mx.cpu(), buckets=False)
                                  for image in x])  # the padding the bf16 graph does itself
            same = (out.argmax(axis=1).asnumpy() == reference.argmax(axis=1)).mean()
            assert same >= 0.98, (h, w, same)
        flags = {"data_dir": root, "dataset": "synthetic", "no_progress": True}
        exported = run_eval({"exported": prefix, **flags})
        assert exported["precision"] == "bf16"
        reference = run_eval({"checkpoint": checkpoint, **flags})["miou"]
        assert abs(exported["miou"] - reference) < 0.005
    return check
