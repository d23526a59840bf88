"""Downloads through MXNet's and GluonCV's helpers: a time-out (they call ``requests.get``
without one, so a stalled connection would hang a run forever), and one quick check that the
host resolves (offline, MXNet's helper would try five times, printing a long line each time)."""

from __future__ import annotations

import contextlib
import socket
import types
import urllib.parse
import urllib.request
from typing import Iterator, Optional

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


def unresolved_host(url: str) -> Optional[str]:
    """The host name of ``url`` if it does not resolve (offline, or a typo), else None.

    One name lookup; None also where a proxy fetches ``url`` (it resolves the name itself).
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or urllib.request.getproxies().get(parts.scheme):
        return None
    try:
        socket.getaddrinfo(parts.hostname, parts.port or None)
    except (socket.gaierror, UnicodeError):
        return parts.hostname
    return None
