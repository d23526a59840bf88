"""MXNet's ``dmlc_tracker`` (shipped in the mxnet wheel), patched at import time to run here.

The tracker starts the parameter-server processes for MXNet's own ``tools/launch.py``. As
shipped it does not run on Python >= 3.9 (it calls ``Thread.isAlive``, removed in 3.9), and some
of its submitters fail on any Python. :func:`load_submitter` imports a submitter and replaces
names inside the tracker's modules; the tracker's source stays MXNet's. Patched:

- every module: ``Thread`` gains ``isAlive`` (and a ``setDaemon`` without the 3.10 warning);
- the scheduler listens on a free port the system picks, not the first free one from 9091
  (two launches on one machine could both take that one);
- every module: ``subprocess`` is the caller's runner (see ``launch.ProcessRunner``), which
  applies :data:`COMMAND_FIXES` and the ``mpirun`` path and supervises what is started;
- sge: the options it reads but never defines (``logdir``, ``vcores``) are set, and the array
  tasks, which get no ``DMLC_ROLE``, take theirs from their task id (:func:`sge_command`);
- yarn: ``launcher.py``, which cannot run as a script (relative import), is left out of the
  scheduler's and the containers' commands, which then run the command directly;
- kubernetes: every object goes to ``--kube-namespace`` (not only the scheduler's job).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import socket
import threading
from types import ModuleType
from typing import Any, Dict, Iterator, List, Sequence, Tuple

SUBMITTERS = ("local", "ssh", "mpi", "slurm", "sge", "yarn", "kubernetes")

# sge writes "-S /bin/bash" + "-q QUEUE" without a space; yarn's boot script cannot run.
_YARN_BOOT = re.escape(os.path.join("dmlc_tracker", "launcher.py"))
COMMAND_FIXES: Dict[str, List[Tuple[str, str]]] = {
    "sge": [("/bin/bash-q ", "/bin/bash -q ")],
    "yarn": [(r"^\S*" + _YARN_BOOT + " ", ""), (r" -file \S*" + _YARN_BOOT, ""),
             (r" \./launcher\.py ", " ")],
}


class CompatThread(threading.Thread):
    """``threading.Thread`` with the names dmlc_tracker calls: ``isAlive`` (removed in Python
    3.9) and ``setDaemon`` (deprecated in 3.10)."""

    def isAlive(self) -> bool:  # noqa: N802 (dmlc_tracker's spelling)
        return self.is_alive()

    def setDaemon(self, daemonic: bool) -> None:  # noqa: N802
        self.daemon = daemonic


def load_submitter(name: str) -> ModuleType:
    """The patched ``dmlc_tracker`` module of launcher ``name`` (``kubernetes`` needs the
    ``.[kubernetes]`` extra)."""
    if name not in SUBMITTERS:
        raise ValueError(f"--launcher {name}: expected one of {', '.join(SUBMITTERS)}")
    if name == "kubernetes":
        try:
            importlib.import_module("kubernetes")
        except ImportError:
            raise ImportError("--launcher kubernetes needs the Kubernetes client: "
                              "pip install '.[kubernetes]'") from None
    module = importlib.import_module(f"dmlc_tracker.{name}")
    tracker = importlib.import_module("dmlc_tracker.tracker")
    for mod in (module, tracker):
        if hasattr(mod, "Thread"):
            mod.Thread = CompatThread
    if not getattr(tracker.PSTracker, "any_port", False):
        tracker.PSTracker = _any_port(tracker.PSTracker)
    return module


def free_port() -> int:
    """A TCP port that is free on this machine right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _any_port(base: type) -> type:
    """dmlc_tracker's ``PSTracker`` class, started on a port the system picks."""

    class AnyPortPSTracker(base):
        any_port = True

        def __init__(self, hostIP: str, cmd: str, port: int = 0, port_end: int = 0,  # noqa: N803
                     envs: Any = None):
            port = port or free_port()
            super().__init__(hostIP, cmd, port=port, port_end=port_end or port + 100, envs=envs)

    return AnyPortPSTracker


def dmlc_options(argv: Sequence[str]) -> Any:
    """dmlc_tracker's parsed options (its own parser), completed where its submitters read
    options that the parser never defines (sge: ``logdir``, ``vcores``)."""
    from dmlc_tracker import opts

    args = opts.get_opts(list(argv))
    if args.cluster == "sge":
        args.sge_log_dir = args.sge_log_dir or f"{args.jobname}.log"
        args.logdir = args.sge_log_dir
        args.vcores = args.worker_cores
    return args


def sge_command(command: Sequence[str]) -> List[str]:
    """``command`` for an SGE array task: dmlc_tracker's sge submitter sets no ``DMLC_ROLE``,
    so tasks 1..DMLC_NUM_WORKER become workers and the others servers (the scheduler, started
    by the tracker itself, has no task id and keeps its role)."""
    script = ('if [ -n "$SGE_TASK_ID" ]; then if [ "$SGE_TASK_ID" -le "$DMLC_NUM_WORKER" ]; '
              'then export DMLC_ROLE=worker; else export DMLC_ROLE=server; fi; fi; exec "$@"')
    return ["bash", "-c", script, "sge-task", *command]


class _Namespaced:
    """A Kubernetes API whose ``create_namespaced_*`` calls all go to one namespace."""

    def __init__(self, api: Any, namespace: str):
        self._api, self._namespace = api, namespace

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._api, name)
        if not name.startswith("create_namespaced_"):
            return attr
        return lambda *args, namespace=None, **kwargs: attr(
            *args, namespace=self._namespace, **kwargs)


class _NamespacedClient:
    """``kubernetes.client`` whose APIs are :class:`_Namespaced` (dmlc_tracker sends the
    servers, workers and the scheduler's service to ``default``, whatever the namespace)."""

    def __init__(self, client: Any, namespace: str):
        self._client, self._namespace = client, namespace

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in ("CoreV1Api", "BatchV1Api"):
            return lambda *args, **kwargs: _Namespaced(attr(*args, **kwargs), self._namespace)
        return attr


@contextlib.contextmanager
def routed(submitter: ModuleType, args: Any, runner: Any) -> Iterator[None]:
    """Within the block, the tracker and ``submitter`` start their processes through
    ``runner`` (and kubernetes objects go to ``args.kube_namespace``)."""
    tracker = importlib.import_module("dmlc_tracker.tracker")
    saved: List[Tuple[ModuleType, str, Any]] = []

    def swap(module: ModuleType, name: str, value: Any) -> None:
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    try:
        for module in {tracker, submitter}:
            if hasattr(module, "subprocess"):
                swap(module, "subprocess", runner)
        if hasattr(submitter, "client"):  # kubernetes
            swap(submitter, "client", _NamespacedClient(submitter.client, args.kube_namespace))
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)
