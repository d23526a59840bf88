"""--pre_trained_model imagenet|none|PATH: MXNet's model store, downloaded from a local server."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import zipfile

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.model_zoo import model_store

import gluon_deeplab as gd
from gluon_deeplab.data import make_synthetic_dataset
from gluon_deeplab.models import (
    PretrainedUnavailable,
    default_pretrained,
    imagenet_file,
    resolve_pretrained,
)
from gluon_deeplab.training.cli import main as train_main


@pytest.fixture(scope="module")
def zoo_resnet18_v2(tmp_path_factory):
    """(file bytes' SHA-1, path, net): a file saved from the model zoo's resnet18_v2."""
    from mxnet.gluon.model_zoo import vision

    net = vision.resnet18_v2()
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path_factory.mktemp("zoo18") / "resnet18_v2.params")
    net.save_parameters(path)
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest(), path, net


@pytest.fixture
def model_repo(local_http_server, zoo_resnet18_v2, tmp_path, monkeypatch):
    """A model store mirror on 127.0.0.1 holding resnet18_v2 zipped as the store expects;
    MXNET_HOME is an empty folder and the store's hash table knows our file."""
    base, served, server = local_http_server
    sha1, path, _ = zoo_resnet18_v2
    monkeypatch.setitem(model_store._model_sha1, "resnet18_v2", sha1)
    file_name = f"resnet18_v2-{sha1[:8]}"
    os.makedirs(served / "gluon" / "models")
    with zipfile.ZipFile(served / "gluon" / "models" / f"{file_name}.zip", "w") as zf:
        zf.write(path, f"{file_name}.params")
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxnet_home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", base)
    return server


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_imagenet_is_downloaded_by_the_model_store_once_and_loads_strictly(
        model_repo, zoo_resnet18_v2, tmp_path):
    sha1, _, zoo = zoo_resnet18_v2
    start = time.perf_counter()
    path = resolve_pretrained("imagenet", "resnet_v2_18")
    seconds = time.perf_counter() - start
    print(f"imagenet resolution from the local server: {seconds:.3f} s")
    assert path == str(tmp_path / "mxnet_home" / "models" / f"resnet18_v2-{sha1[:8]}.params")
    assert path == imagenet_file("resnet18_v2")
    with open(path, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == sha1
    assert model_repo.requests == [f"/gluon/models/resnet18_v2-{sha1[:8]}.zip"]
    net = gd.build_model(3, "resnet18_v2", pretrained_backbone="imagenet")
    assert len(model_repo.requests) == 1  # found on disk, checksum good: no second download
    np.testing.assert_array_equal(net.backbone.features[1].weight.data().asnumpy(),
                                  zoo.features[1].weight.data().asnumpy())


def test_downloaded_file_with_another_checksum_is_refused(model_repo, monkeypatch):
    monkeypatch.setitem(model_store._model_sha1, "resnet18_v2",
                        model_store._model_sha1["resnet18_v2"][:8] + "0" * 32)
    with pytest.raises(PretrainedUnavailable, match="different hash"):
        resolve_pretrained("imagenet", "resnet18_v2")


def test_none_and_paths_and_the_default_per_dataset(zoo_resnet18_v2, tmp_path):
    assert resolve_pretrained("none", "resnet18_v2") is None
    assert resolve_pretrained(None, "resnet18_v2") is None
    assert resolve_pretrained(zoo_resnet18_v2[1], "resnet18_v2") == zoo_resnet18_v2[1]
    with pytest.raises(FileNotFoundError, match="nowhere.params: no such file"):
        resolve_pretrained(str(tmp_path / "nowhere.params"), "resnet18_v2")
    assert default_pretrained("synthetic") == "none"
    assert all(default_pretrained(d) == "imagenet" for d in ("voc", "vocaug", "voc_aug", "folder"))


def test_offline_imagenet_is_a_one_line_error_naming_the_file_and_the_way_out(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", _closed_port_url())
    expected = imagenet_file("resnet18_v2")
    with pytest.raises(PretrainedUnavailable) as err:
        resolve_pretrained("imagenet", "resnet18_v2")
    message = str(err.value)
    assert expected in message and str(tmp_path / "home" / "models") in message
    assert "--pre_trained_model none" in message and "\n" not in message
    capsys.readouterr()
    # The trainer: imagenet is the default for a real dataset; it stops before training.
    voc = tmp_path / "voc"
    make_synthetic_dataset(str(voc), num_train=2, num_val=1, size=(16, 16), num_classes=21)
    code = train_main(["--dataset", "voc", "--data_dir", str(voc),
                       "--base_architecture", "resnet18_v2",
                       "--output_dir", str(tmp_path / "run"), "--progress", "0"])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err_lines) == 1 and "Traceback" not in err_lines[0]
    assert expected in err_lines[0] and "--pre_trained_model none" in err_lines[0]


def test_unresolvable_model_store_host_is_tried_once_and_said_in_one_line(
        tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://nonexistent.invalid/")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with pytest.raises(PretrainedUnavailable) as err:
        resolve_pretrained("imagenet", "resnet18_v2")
    message = str(err.value)
    assert "host nonexistent.invalid does not resolve" in message and "\n" not in message
    out, errors = capfd.readouterr()
    assert out == "" and errors == ""  # no "Downloading ..." / "download failed" lines


def test_failed_download_from_a_resolvable_host_prints_one_line_not_each_retry(
        tmp_path, monkeypatch, capfd, local_http_server):
    base, _, server = local_http_server  # serves nothing: every attempt is a 404
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MXNET_GLUON_REPO", base)
    with pytest.raises(PretrainedUnavailable, match="Failed downloading url"):
        resolve_pretrained("imagenet", "resnet18_v2")
    out = capfd.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("downloading the ImageNet weights of resnet18_v2")
    assert len(server.requests) >= 1
