"""A threaded HTTP server on 127.0.0.1 serving one folder, for the tests that download."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from typing import Iterator, Tuple


@contextlib.contextmanager
def serve_folder(folder: str) -> Iterator[Tuple[str, http.server.ThreadingHTTPServer]]:
    """(base URL, server) of a server on a free port, stopped on exit; every requested path is
    logged in ``server.requests``."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    server.requests = requests
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
