"""``gluon-deeplab-serve`` as a child process on 127.0.0.1: started on a free port, waited for
until ``/readyz`` says ready, stopped by its PID with SIGTERM (which drains its queue). The load
test and the tests drive the real server through this."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, Iterator, Optional, Sequence

import httpx

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A running ``gluon-deeplab-serve`` (``proc``) reachable at ``url``, logging to
    ``log_path``."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: str):
        self.proc, self.url, self.log_path = proc, url, log_path

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``/readyz`` until 200; RuntimeError with the server's stderr if it exits or
        ``timeout_s`` passes first."""
        until = time.monotonic() + timeout_s
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): "
                                   f"{self.stderr()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout_s:g} s: "
                           f"{self.stderr()[-2000:]}")

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (the server answers what is queued, then exits); SIGKILL after
        ``timeout_s``. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def stderr(self) -> str:
        """What the server wrote to stderr so far (its log file)."""
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


COMMANDS = {"serve": "serve_command", "demo": "demo_command"}


def start_server(model: str, flags: Sequence[str] = (), log_path: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None, command: str = "serve") -> ServerProcess:
    """Start ``gluon-deeplab-COMMAND --model MODEL FLAGS`` (serve or demo) on 127.0.0.1 and a
    free port (not waited for: see :meth:`ServerProcess.wait_ready`); its stderr goes to
    ``log_path``."""
    port = free_port()
    log_path = log_path or os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                        f"gluon-deeplab-{command}-{port}.log")
    function = COMMANDS[command]
    command_line = [sys.executable, "-c", "import sys; from gluon_deeplab.deploy.serve_cli "
                    f"import {function}; sys.exit({function}())", "--model", model,
                    "--host", "127.0.0.1", "--port", str(port), *flags]
    pythonpath = os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command_line, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env or os.environ, PYTHONPATH=pythonpath))
    return ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)


@contextlib.contextmanager
def running_server(model: str, flags: Sequence[str] = (), ready_timeout_s: float = 180.0,
                   log_path: Optional[str] = None,
                   command: str = "serve") -> Iterator[ServerProcess]:
    """A started and ready server, stopped by its PID at the end of the block."""
    server = start_server(model, flags, log_path, command=command)
    try:
        server.wait_ready(ready_timeout_s)
        yield server
    finally:
        server.stop()
