"""``--pre_trained_model imagenet|none|PATH``: where the backbone's starting weights come from.

``imagenet`` is the model zoo file of the backbone, found (or downloaded, SHA-1 checked) by
MXNet's model store under ``$MXNET_HOME/models`` (default ``~/.mxnet/models``); the download
mirror is MXNet's ``MXNET_GLUON_REPO``. ``none`` starts from random weights on purpose.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Optional

import mxnet as mx

from ..download_timeout import DEFAULT_TIMEOUT_S, requests_timeout, unresolved_host
from ..errors import error_line
from .resnet_v2 import canonical_backbone_name

IMAGENET, NONE = "imagenet", "none"


class PretrainedUnavailable(FileNotFoundError):
    """The ImageNet file is neither on disk nor downloadable (message says what to do)."""


def default_pretrained(dataset: str) -> str:
    """``imagenet`` for every dataset but the generated ``synthetic`` one (``none``)."""
    return NONE if dataset == "synthetic" else IMAGENET


def model_store_root() -> str:
    """MXNet's model store folder, ``$MXNET_HOME/models`` (read now, not at import)."""
    return os.path.join(os.path.expanduser(mx.base.data_dir()), "models")


def imagenet_file(backbone: str) -> str:
    """The path MXNet's model store uses for ``backbone``'s ImageNet weights."""
    from mxnet.gluon.model_zoo import model_store

    name = canonical_backbone_name(backbone)
    return os.path.join(model_store_root(), f"{name}-{model_store.short_hash(name)}.params")


def resolve_pretrained(spec: Optional[str], backbone: str,
                       timeout: float = DEFAULT_TIMEOUT_S) -> Optional[str]:
    """The ``.params`` file that ``spec`` names for ``backbone`` (None: random weights).

    ``imagenet`` goes through ``mxnet.gluon.model_zoo.model_store.get_model_file`` (download +
    SHA-1 check when missing); when that fails, :class:`PretrainedUnavailable` names the file,
    where to put it and the ``none`` alternative. A path must exist.
    """
    if spec is None or str(spec).strip().lower() in ("", NONE):
        return None
    if str(spec).strip().lower() != IMAGENET:
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"--pre_trained_model {spec}: no such file (expected "
                                    "'imagenet', 'none' or a model zoo .params file)")
        return spec
    import mxnet.gluon.utils as gluon_utils
    from mxnet.gluon.model_zoo import model_store

    name = canonical_backbone_name(backbone)
    path = imagenet_file(name)
    repo = os.environ.get("MXNET_GLUON_REPO", model_store.apache_repo_url)
    try:
        if not os.path.isfile(path):
            host = unresolved_host(repo)
            if host:
                raise OSError(f"host {host} does not resolve: offline?")
            print(f"downloading the ImageNet weights of {name} from {repo} to {path}",
                  flush=True)
        # MXNet prints every attempt (five, several hundred characters each on failure);
        # the outcome is said here, in one line.
        with requests_timeout(gluon_utils, seconds=timeout), \
                contextlib.redirect_stdout(io.StringIO()):
            return model_store.get_model_file(name, root=model_store_root())
    except Exception as err:  # offline, HTTP error, time-out, bad checksum, unwritable folder
        raise PretrainedUnavailable(
            f"ImageNet weights of {name} not available: {path} is missing and the download "
            f"from {repo} failed ({error_line(err, with_type=True)}); put the model zoo file "
            f"{os.path.basename(path)} into {os.path.dirname(path)} (or set MXNET_HOME), "
            f"give a file with --pre_trained_model PATH, or pass --pre_trained_model none "
            f"to train from scratch") from None
