"""Start a distributed (parameter-server) training: scheduler, servers and workers.

MXNet's ``dist_sync`` kvstore is a parameter server: one scheduler, S servers holding the
summed gradients and N workers each training on its own shard of the data. Every process is
told its role by environment variables (``DMLC_ROLE``, ``DMLC_PS_ROOT_URI``,
``DMLC_PS_ROOT_PORT``, ``DMLC_NUM_SERVER``, ``DMLC_NUM_WORKER``); schedulers and servers are
plain ``import mxnet`` processes, which serve until the workers finish.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

SERVER_COMMAND = (sys.executable, "-c", "import mxnet")
DIST_KVSTORES = ("dist_sync", "dist_device_sync", "dist_sync_device")


def free_port() -> int:
    """A TCP port that is free on this machine right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def role_env(role: str, root_uri: str, port: int, num_workers: int, num_servers: int,
             base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of one process of the run (``role``: scheduler, server or worker)."""
    if role not in ("scheduler", "server", "worker"):
        raise ValueError(f"role must be scheduler, server or worker, got {role!r}")
    env = dict(os.environ if base is None else base)
    env.update({"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(port),
                "DMLC_NUM_WORKER": str(num_workers), "DMLC_NUM_SERVER": str(num_servers)})
    return env


def with_dist_kvstore(train_args: Sequence[str], kvstore: str = "dist_sync") -> List[str]:
    """``train_args`` with a distributed ``--kvstore`` (added if absent; local: an error)."""
    args = list(train_args)
    for i, arg in enumerate(args):
        value = None
        if arg == "--kvstore" and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--kvstore="):
            value = arg.split("=", 1)[1]
        if value is not None:
            if value not in DIST_KVSTORES:
                raise ValueError(f"--kvstore {value}: a distributed run needs one of "
                                 f"{', '.join(DIST_KVSTORES)}")
            return args
    return args + ["--kvstore", kvstore]


def launch_local(worker_command: Sequence[str], num_workers: int, num_servers: int = 1,
                 port: Optional[int] = None, timeout: Optional[float] = None,
                 env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
                 log_dir: Optional[str] = None) -> List[int]:
    """Run scheduler, servers and workers on this machine (127.0.0.1); returns the workers'
    exit codes. When a worker fails (or ``timeout`` passes) the other processes are stopped.
    ``log_dir`` receives ``worker-K.log`` / ``server-K.log`` / ``scheduler.log``."""
    if num_workers < 1 or num_servers < 1:
        raise ValueError(f"need >= 1 worker and >= 1 server, got {num_workers}, {num_servers}")
    port = port or free_port()
    procs: List[subprocess.Popen] = []
    logs = []

    def start(command: Sequence[str], role: str, name: str) -> subprocess.Popen:
        out = None
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            out = open(os.path.join(log_dir, f"{name}.log"), "w")  # noqa: SIM115
            logs.append(out)
        proc = subprocess.Popen(list(command), cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT if out else None,
                                env=role_env(role, "127.0.0.1", port, num_workers, num_servers,
                                             env))
        procs.append(proc)
        return proc

    start(SERVER_COMMAND, "scheduler", "scheduler")
    for k in range(num_servers):
        start(SERVER_COMMAND, "server", f"server-{k}")
    workers = [start(worker_command, "worker", f"worker-{k}") for k in range(num_workers)]
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while any(w.poll() is None for w in workers):
            failed = any(w.returncode not in (None, 0) for w in workers)
            if failed or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(0.2)
        codes = [w.poll() for w in workers]
        if all(c == 0 for c in codes):
            for proc in procs:  # scheduler and servers exit once the workers have finished
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
        return [-9 if c is None else c for c in codes]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in logs:
            f.close()


def read_hosts(path: str) -> List[str]:
    """Host names of a hosts file (one per line, ``#`` comments)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"hosts file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        hosts = [line.split("#", 1)[0].strip() for line in f]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise ValueError(f"{path}: no host names (expected one host per line)")
    return hosts


def ssh_commands(hosts: Sequence[str], worker_command: Sequence[str], port: int = 9091,
                 num_servers: Optional[int] = None, workdir: Optional[str] = None,
                 python: str = "python3") -> List[str]:
    """Shell commands that start the run on ``hosts`` over ssh: the scheduler on the first
    host, one worker per host and ``num_servers`` (default: one per host) servers spread
    over the hosts. ``workdir`` (default: this folder) must exist on every host."""
    hosts = list(hosts)
    num_servers = num_servers or len(hosts)
    workdir = workdir or os.getcwd()
    root = hosts[0]

    def remote(host: str, role: str, command: Sequence[str]) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (
            ("DMLC_ROLE", role), ("DMLC_PS_ROOT_URI", root), ("DMLC_PS_ROOT_PORT", str(port)),
            ("DMLC_NUM_WORKER", str(len(hosts))), ("DMLC_NUM_SERVER", str(num_servers))))
        inner = f"cd {shlex.quote(workdir)} && env {env} {shlex.join(command)}"
        return f"ssh -o StrictHostKeyChecking=no {shlex.quote(host)} {shlex.quote(inner)}"

    server = [python, "-c", "import mxnet"]
    commands = [remote(root, "scheduler", server)]
    commands += [remote(hosts[k % len(hosts)], "server", server) for k in range(num_servers)]
    commands += [remote(host, "worker", list(worker_command)) for host in hosts]
    return commands


def launch_ssh(commands: Sequence[str]) -> List[int]:
    """Run the ``ssh_commands`` (all at once); returns the exit codes of the worker commands."""
    procs = [subprocess.Popen(cmd, shell=True) for cmd in commands]
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    workers = [i for i, c in enumerate(commands) if "DMLC_ROLE=worker" in c]
    return [codes[i] for i in workers]
