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
