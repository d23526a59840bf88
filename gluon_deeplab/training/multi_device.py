"""How a batch is spread over devices: SyncBN by default where BN would see too few images,
the batch-size rules, the BN warning, and which kvstore sums the gradients."""

from __future__ import annotations

import os
import warnings
from typing import MutableMapping, Optional, Sequence, Tuple

import mxnet as mx

SYNCBN_BELOW = 4  # automatic SyncBN under this many images per device (BN trained)
FEW_IMAGES = 2  # warn at this many images per device or fewer, BN trained without SyncBN
NCCL_LAUNCH_MODE = "NCCL_LAUNCH_MODE"


def check_batch_split(batch_size: int, num_devices: int) -> None:
    """Every device needs an image: a one-line error otherwise (MXNet's would be a shape
    error at the first step)."""
    if batch_size < num_devices:
        raise ValueError(f"--batch_size {batch_size} is smaller than the number of devices "
                         f"({num_devices}): each device needs at least one image; use "
                         f"--batch_size {num_devices} or more, or fewer devices")


def resolve_syncbn(requested: Optional[bool], batch_size: int, num_devices: int,
                   freeze_bn: bool) -> Tuple[bool, Optional[str]]:
    """Whether to use SyncBatchNorm, and the line to say about it (None: nothing to say).

    ``requested`` None is automatic: on when BN is trained on 2+ devices with fewer than
    ``SYNCBN_BELOW`` images per device. MXNet's SyncBatchNorm weighs each device's mean
    equally, so it needs an even split: an uneven one is an error naming the flags.
    """
    if freeze_bn or num_devices < 2:
        return False, None
    per_device = batch_size // num_devices
    use = per_device < SYNCBN_BELOW if requested is None else requested
    if use and batch_size % num_devices:
        low = batch_size - batch_size % num_devices
        raise ValueError(
            f"--batch_size {batch_size} does not split evenly over {num_devices} devices, "
            f"which SyncBN needs (it weighs every device's statistics the same); use "
            f"--batch_size {low} or {low + num_devices}, or --no_syncbn")
    if requested is None and use:
        return True, (f"SyncBN on: BatchNorm is trained with {per_device} image(s) per device "
                      f"on {num_devices} devices, so its statistics are taken over the whole "
                      "batch (--no_syncbn turns it off)")
    return use, None


def check_devices(batch_size: int, num_devices: int, syncbn: Optional[bool],
                  freeze_bn: bool) -> Tuple[bool, Optional[str]]:
    """The batch-size rules (one-line ValueErrors, before anything starts) and
    :func:`resolve_syncbn`'s answer."""
    check_batch_split(batch_size, num_devices)
    return resolve_syncbn(syncbn, batch_size, num_devices, freeze_bn)


def warn_few_images_batchnorm(batch_size: int, num_devices: int, freeze_bn: bool,
                              syncbn: bool) -> bool:
    """Warn (returns True) when BN is trained on ``FEW_IMAGES`` or fewer images per device.

    Its statistics then come from 1 or 2 images, unlike the running ones used in evaluation,
    and the image-pooling branch's BN normalizes that many values per channel (with one, it
    outputs the constant beta and the branch carries no information).
    """
    per_device = batch_size // max(num_devices, 1)
    if freeze_bn or syncbn or per_device > FEW_IMAGES:
        return False
    several = num_devices > 1
    cure = "drop --no_syncbn, use " if several else "use "
    warnings.warn(
        f"--batch_size {batch_size} over {num_devices} device(s) gives {per_device} image(s) "
        f"per device with BatchNorm trained{' and no SyncBN' if several else ''}: its "
        "statistics are those of "
        f"{per_device} image(s) and the image-pooling branch's BN normalizes {per_device} "
        f"value(s) per channel; {cure}a larger --batch_size or --freeze_batch_norm 1",
        UserWarning, stacklevel=2)
    return True


def choose_kvstore(requested: Optional[str], device_types: Sequence[str],
                   distributed: bool) -> Tuple[str, str]:
    """The kvstore that sums the gradients, and why (a pure function of its arguments).

    ``requested`` (``--kvstore``) wins. Across machines: ``dist_device_sync`` with GPUs (sums
    on the GPUs), else ``dist_sync``. On one machine: ``device``, also on several GPUs, as
    Gluon's Trainer and gluoncv do: MXNet calls its ``nccl`` kvstore experimental and faster
    only in some cases (docs/training.md has the sources); ``--kvstore nccl`` asks for it.
    """
    if requested:
        return requested, "--kvstore"
    gpus = bool(device_types) and all(kind == "gpu" for kind in device_types)
    if distributed:
        if gpus:
            return "dist_device_sync", "several machines with GPUs: sums on the GPUs"
        return "dist_sync", "several machines"
    if gpus and len(device_types) > 1:
        return "device", (f"{len(device_types)} GPUs: Gluon's default; --kvstore nccl where "
                          "MXNet has NCCL")
    return "device", f"{len(device_types)} device(s)"


def check_nccl(kvstore: str, device_types: Sequence[str], nccl: bool) -> None:
    """``--kvstore nccl`` needs GPUs only and an MXNet built with NCCL: a one-line error
    otherwise (MXNet's would come at the first step)."""
    if kvstore != "nccl":
        return
    if not device_types or any(kind != "gpu" for kind in device_types):
        raise ValueError("--kvstore nccl sums gradients on GPUs only; give --gpus, or leave "
                         "--kvstore to its default (device)")
    if not nccl:
        raise ValueError("--kvstore nccl: this MXNet is built without NCCL; leave --kvstore to "
                         "its default (device)")


def nccl_launch_mode(kvstore: str, environ: MutableMapping[str, str]) -> Optional[str]:
    """With the ``nccl`` kvstore, set ``NCCL_LAUNCH_MODE=PARALLEL`` in ``environ`` unless the
    user set it: MXNet recommends it for NCCL 2.1 and newer (its build-from-source guide and
    1.0.0 release notes). NCCL reads it when the kvstore creates its communicators, at the
    first step. Returns the line to say (None: nothing was set)."""
    if kvstore != "nccl" or environ.get(NCCL_LAUNCH_MODE):
        return None
    environ[NCCL_LAUNCH_MODE] = "PARALLEL"
    return f"{NCCL_LAUNCH_MODE}=PARALLEL (MXNet's advice for its nccl kvstore)"


def nccl_available() -> bool:
    """Whether the installed MXNet was built with NCCL."""
    return bool(mx.runtime.Features().is_enabled("NCCL"))


def distributed_worker() -> bool:
    """Whether this process is a worker of a distributed run (a launcher set DMLC_ROLE)."""
    return os.environ.get("DMLC_ROLE") == "worker"
