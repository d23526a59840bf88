"""A time-out for the downloads of MXNet's and GluonCV's helpers (they call ``requests.get``
without one, so a stalled connection would hang a run forever)."""

from __future__ import annotations

import contextlib
import types
from typing import Iterator

import requests

DEFAULT_TIMEOUT_S = 60.0


@contextlib.contextmanager
def requests_timeout(*modules: types.ModuleType,
                     seconds: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Within the block, ``module.requests.get`` of each module gives up when connecting or
    waiting for data takes longer than ``seconds`` (not a limit on the whole download)."""

    def get(url, **kwargs):
        kwargs.setdefault("timeout", seconds)
        return requests.get(url, **kwargs)

    shim = types.SimpleNamespace(get=get)
    saved = [(m, m.requests) for m in modules]
    try:
        for module in modules:
            module.requests = shim
        yield
    finally:
        for module, original in saved:
            module.requests = original
