"""SGD with DeepLab's parameter groups: no weight decay on BN and biases, a head LR multiplier."""

from __future__ import annotations

from typing import List, Union

import mxnet as mx
from mxnet.gluon import Parameter

NO_DECAY_SUFFIXES = ("gamma", "beta", "bias")
MOMENTUM = 0.9


def configure_parameter_groups(net: mx.gluon.Block, head_lr_mult: float = 1.0) -> List[Parameter]:
    """Set ``wd_mult``/``lr_mult`` on ``net``'s parameters; return the ones that get updates.

    Weight decay is not applied to BatchNorm gamma/beta and to biases (``wd_mult = 0``);
    everything outside the backbone (head, classifier, auxiliary head) learns at
    ``head_lr_mult`` x the learning rate. Parameters without gradient (running statistics,
    frozen BN) are left out.
    """
    if head_lr_mult <= 0:
        raise ValueError(f"head_lr_mult must be > 0, got {head_lr_mult}")
    trainable = []
    for name, param in net._collect_params_with_prefix().items():
        param.wd_mult = 0.0 if name.endswith(NO_DECAY_SUFFIXES) else 1.0
        param.lr_mult = 1.0 if name.startswith("backbone.") else head_lr_mult
        if param.grad_req != "null":
            trainable.append(param)
    return trainable


def make_trainer(net: mx.gluon.Block, learning_rate: float, weight_decay: float,
                 head_lr_mult: float = 1.0,
                 kvstore: Union[str, mx.kv.KVStore] = "device") -> mx.gluon.Trainer:
    """A Gluon SGD trainer (momentum 0.9) over ``net``'s trainable parameters.

    The update runs on the workers (``update_on_kvstore=False``), also with a distributed
    kvstore: the kvstore only sums gradients, so the learning rate set per step by
    ``trainer.set_learning_rate`` is the one every worker uses (a server-side optimizer would
    keep the learning rate it was pickled with).
    """
    params = configure_parameter_groups(net, head_lr_mult)
    return mx.gluon.Trainer(
        params, "sgd",
        {"learning_rate": learning_rate, "momentum": MOMENTUM, "wd": weight_decay},
        kvstore=kvstore, update_on_kvstore=False)
