"""Distributed (parameter-server) training, started by MXNet's tracker; what is ours around it.

MXNet's ``dist_sync`` kvstore is a parameter server: one scheduler, S servers summing the
gradients and N workers, each training on its own shard of the data. ``dmlc_tracker``, the
launcher MXNet ships (patched to run here by :mod:`.dmlc_compat`), starts them on this machine,
over ssh, or through MPI, Slurm, SGE, YARN or Kubernetes; every process runs the same command
and takes its role from ``DMLC_*`` variables (schedulers and servers serve from ``import
mxnet`` on). Ours: the ``--kvstore`` check, the command line (:mod:`.launch_cli`), and
supervision: the first process that fails ends the launch with a one-line reason, and every
process started is stopped with it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import error_line
from .dmlc_compat import COMMAND_FIXES, CompatThread, dmlc_options, load_submitter, routed

DIST_KVSTORES = ("dist_sync", "dist_device_sync", "dist_sync_device")
END_GRACE_S = 60.0  # how long the processes may take to exit once the scheduler has ended
_ACTIVE: List[ProcessRunner] = []  # the launches in progress (their threads' errors go there)

Command = Union[str, Sequence[str]]


def _flag(args: Sequence[str], name: str) -> Optional[str]:
    """The value of flag ``name`` in ``args`` (``--name V`` or ``--name=V``), or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def with_dist_kvstore(train_args: Sequence[str]) -> List[str]:
    """``train_args`` with a distributed ``--kvstore``: added if absent (``dist_device_sync``
    when ``--gpus`` is given, else ``dist_sync``); a local kvstore is an error."""
    kvstore = _flag(train_args, "--kvstore")
    if kvstore is not None:
        if kvstore not in DIST_KVSTORES:
            raise ValueError(f"--kvstore {kvstore}: a distributed run needs one of "
                             f"{', '.join(DIST_KVSTORES)}")
        return list(train_args)
    gpus = (_flag(train_args, "--gpus") or "").strip()
    return list(train_args) + ["--kvstore", "dist_device_sync" if gpus else "dist_sync"]


def read_hosts(path: str) -> List[str]:
    """The hosts of an ssh/MPI host file: one ``host``, ``host:port`` or ``host slots=N`` per
    line (blank lines skipped; dmlc_tracker reads no comments, so ``#`` is an error)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--hostfile {path}: no such file")
    with open(path, encoding="utf-8") as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    for n, line in lines:
        if "#" in line:
            raise ValueError(f"--hostfile {path}:{n}: {line!r}: expected host, host:port or "
                             "'host slots=N' (no comments)")
    if not lines:
        raise ValueError(f"--hostfile {path}: no hosts (expected one host per line)")
    return [line for _, line in lines]


def _describe(cmd: Command, env: Dict[str, str], pid: int) -> str:
    """``worker (python, pid N)``: a started command, named for the one-line reason."""
    text = cmd if isinstance(cmd, str) else shlex.join(cmd)
    words = text.split()
    program = next((os.path.basename(w) for w in words if "=" not in w), "?")
    match = re.search(r"DMLC_ROLE=(\w+)", text)
    role = match.group(1) if match else env.get("DMLC_ROLE", "process")
    return f"{role} ({program}, pid {pid})"


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class ProcessRunner:
    """Stands in for ``subprocess`` inside dmlc_tracker (see :func:`.dmlc_compat.routed`):
    starts each command in a session of its own, so that stopping it stops its children too;
    applies ``fixes`` (regex, replacement) to the commands and adds ``env``; records the
    first failure as the launch's reason."""

    PIPE, STDOUT, DEVNULL = subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL
    CalledProcessError = subprocess.CalledProcessError

    def __init__(self, fixes: Sequence[Tuple[str, str]] = (),
                 env: Optional[Dict[str, str]] = None):
        self.fixes, self.env = list(fixes), dict(env or {})
        self.procs: List[subprocess.Popen] = []
        self.failure: Optional[str] = None
        self.stopping = False
        self.changed = threading.Event()
        self._lock = threading.Lock()

    def _fixed(self, cmd: Command) -> Command:
        if not isinstance(cmd, str):
            return shlex.split(self._fixed(shlex.join(cmd)))
        for pattern, replacement in self.fixes:
            cmd = re.sub(pattern, lambda _, r=replacement: r, cmd)
        return cmd

    def Popen(self, cmd: Command, **kwargs: Any) -> subprocess.Popen:  # noqa: N802
        cmd = self._fixed(cmd)
        env = {**(kwargs.pop("env", None) or os.environ), **self.env}
        with self._lock:
            if self.stopping:
                raise RuntimeError("the launch is stopping")
            proc = subprocess.Popen(cmd, env=env, start_new_session=True, **kwargs)
            proc.name = _describe(cmd, env, proc.pid)
            self.procs.append(proc)
        return proc

    def call(self, cmd: Command, **kwargs: Any) -> int:
        proc = self.Popen(cmd, **kwargs)
        code = proc.wait()
        if code != 0:
            self.fail(f"{proc.name} {_exit_text(code)}")
        return code

    def check_call(self, cmd: Command, **kwargs: Any) -> int:
        code = self.call(cmd, **kwargs)
        if code != 0:
            raise subprocess.CalledProcessError(code, cmd)
        return 0

    def fail(self, reason: str) -> None:
        """Make ``reason`` the launch's failure (the first one counts; none once stopping)."""
        with self._lock:
            if self.failure is None and not self.stopping:
                self.failure = reason
        self.changed.set()

    def running(self) -> List[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every process started (SIGTERM to its session, SIGKILL after ``grace_s``)."""
        with self._lock:
            self.stopping = True
            procs = list(self.procs)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + grace_s
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)


def _thread_error_hook(previous: Any) -> Any:
    """A ``threading.excepthook`` that turns an error in a tracker thread into the failure of
    the launch in progress (dmlc_tracker's threads raise with their whole environment)."""

    def hook(args: Any) -> None:
        if not isinstance(args.thread, CompatThread):
            return previous(args)
        if _ACTIVE:
            _ACTIVE[-1].fail(error_line(args.exc_value, with_type=True))
        return None

    hook.gluon_deeplab = True
    return hook


def _wait(thread: threading.Thread, runner: ProcessRunner, timeout: Optional[float]) -> None:
    """Until the tracker's ``submit`` returns (the scheduler has ended) and every process has
    exited, a process fails, or ``timeout`` seconds pass."""
    deadline = None if timeout is None else time.monotonic() + timeout
    ended_at = None
    while runner.failure is None and (thread.is_alive() or runner.running()):
        now = time.monotonic()
        if deadline is not None and now > deadline:
            runner.fail(f"--timeout {timeout:g} s passed before the run ended")
        elif not thread.is_alive():
            ended_at = ended_at or now
            if now - ended_at > END_GRACE_S:
                names = ", ".join(p.name for p in runner.running())
                runner.fail(f"still running {END_GRACE_S:g} s after the scheduler ended: {names}")
        runner.changed.wait(0.2)
        runner.changed.clear()


def launch(launcher: str, command: Sequence[str], num_workers: int, num_servers: int,
           options: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
           mpirun: Optional[str] = None, timeout: Optional[float] = None) -> Optional[str]:
    """Run ``command`` as scheduler, servers and workers through dmlc_tracker's ``launcher``
    with its ``options`` (its own spelling: ``--host-file`` ...); ``env`` is added to every
    process's environment. Returns None, or the one-line reason of the failure; either way
    every process started has been stopped."""
    if num_workers < 1 or num_servers < 1:
        raise ValueError(f"need >= 1 worker and >= 1 server, got -n {num_workers} "
                         f"-s {num_servers}")
    submitter = load_submitter(launcher)
    words = list(command) if launcher == "kubernetes" else [shlex.quote(w) for w in command]
    args = dmlc_options(["--cluster", launcher, "--num-workers", str(num_workers),
                         "--num-servers", str(num_servers), *options, "--", *words])
    fixes = list(COMMAND_FIXES.get(launcher, []))
    if mpirun:
        fixes.append((r"^mpirun(?= )", shlex.quote(mpirun)))
    runner = ProcessRunner(fixes, env)
    if not getattr(threading.excepthook, "gluon_deeplab", False):
        threading.excepthook = _thread_error_hook(threading.excepthook)

    def submit() -> None:
        try:
            submitter.submit(args)
        except BaseException as err:  # noqa: BLE001 (any error ends the launch)
            runner.fail(f"dmlc_tracker {launcher}: {error_line(err, with_type=True)}")

    _ACTIVE.append(runner)
    try:
        with routed(submitter, args, runner):
            thread = CompatThread(target=submit, daemon=True)
            try:
                thread.start()
                _wait(thread, runner, timeout)
            finally:
                runner.stop()
    finally:
        _ACTIVE.remove(runner)
    return runner.failure
