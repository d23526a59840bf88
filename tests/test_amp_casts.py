"""AMP's casts, counted on the training graph (the same on every CPU, bf16 or not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# amp.init patches MXNet for the whole process: the counts are made in a child process.
CHILD = """
import json
import mxnet as mx
from gluon_deeplab.training.amp_casts import count_casts, training_graph_casts

deeplab = training_graph_casts("resnet18_v2", "aspp", 16, 65)
net = mx.gluon.nn.HybridSequential()
net.add(mx.gluon.nn.Conv2D(4, 3, in_channels=3), mx.gluon.nn.BatchNorm(),
        mx.gluon.nn.Activation("relu"), mx.gluon.nn.Conv2D(2, 1, in_channels=4))
toy = count_casts(net(mx.sym.var("data")), (2, 3, 10, 12))
print(json.dumps({"toy": toy.__dict__, "deeplab": deeplab.__dict__}))
"""


def test_casts_are_counted_by_kind_and_the_image_pooling_keeps_the_features_in_bf16():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=300, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # conv -> BN -> ReLU -> conv: the fp32 input is cast for the first conv (3 x 10 x 12 per
    # image), each conv's weight and bias once; BN and ReLU run in bf16, so the second conv's
    # input cast is a node that converts nothing.
    toy = found["toy"]
    assert (toy["nodes"], toy["weights"], toy["activations"]) == (6, 4, 1), toy
    assert toy["activation_elements"] == 3 * 10 * 12 and toy["by_consumer"] == {"Convolution": 1}
    deeplab = found["deeplab"]
    # Global average pooling runs in bf16 (F.mean would cast the 512-channel map to fp32).
    assert "mean" not in deeplab["by_consumer"], deeplab
    assert deeplab["weights"] == 28 and deeplab["activations"] <= 8, deeplab
