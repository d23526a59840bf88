"""``gluon-deeplab-launch`` (= ``scripts/launch_dist.py``): distributed training through
MXNet's tracker. Options before ``--`` are the launcher's, those after it ``train.py``'s::

    gluon-deeplab-launch --launcher local -n 2 -s 1 -- --dataset synthetic --data_dir d ...
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from ..cli_help import DefaultsHelpFormatter
from .dmlc_compat import SUBMITTERS, sge_command
from .launch import launch, read_hosts, with_dist_kvstore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(ROOT, "scripts", "train.py")
CONTAINER_COMMAND = "gluon-deeplab-train"  # yarn, kubernetes: installed in the image
# option -> (launcher it belongs to, dmlc_tracker's option or None when handled here)
LAUNCHER_OPTIONS: Dict[str, Tuple[Tuple[str, ...], Optional[str]]] = {
    "partition": (("slurm",), None), "nodes": (("slurm",), "--slurm-worker-nodes"),
    "server_nodes": (("slurm",), "--slurm-server-nodes"), "ntasks_per_node": (("slurm",), None),
    "mpirun": (("mpi",), None), "queue": (("sge", "yarn"), "--queue"),
    "sge_log_dir": (("sge",), "--sge-log-dir"), "yarn_app_dir": (("yarn",), "--yarn-app-dir"),
    "kube_namespace": (("kubernetes",), "--kube-namespace"), "kube_image": (("kubernetes",), None),
}


def build_parser() -> argparse.ArgumentParser:
    """The launcher's options (train.py's follow ``--``)."""
    p = argparse.ArgumentParser(prog="gluon-deeplab-launch", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--launcher", choices=SUBMITTERS, default="local",
                   help="how the processes are started (dmlc_tracker's submitter)")
    p.add_argument("-n", "--num_workers", type=int, default=2, help="workers")
    p.add_argument("-s", "--num_servers", type=int, default=1, help="parameter servers")
    p.add_argument("-H", "--hostfile", default=None,
                   help="ssh (required) and mpi: one host, host:port or 'host slots=N' a line")
    p.add_argument("--python", default=sys.executable,
                   help="python on the hosts (local, ssh, mpi, slurm, sge run PYTHON "
                        "scripts/train.py; yarn and kubernetes run gluon-deeplab-train)")
    p.add_argument("--jobname", default="gluon-deeplab", help="job name (sge, yarn, kubernetes)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop everything after this many seconds")
    g = p.add_argument_group("launcher options (each only with its --launcher)")
    g.add_argument("--partition", help="slurm: partition (srun -p)")
    g.add_argument("--nodes", type=int, help="slurm: nodes of the workers (default: one each)")
    g.add_argument("--server_nodes", type=int, help="slurm: nodes of the servers")
    g.add_argument("--ntasks_per_node", type=int, help="slurm: processes per node")
    g.add_argument("--mpirun", help="mpi: the mpirun to use (default: mpirun on PATH)")
    g.add_argument("--queue", help="sge, yarn: queue")
    g.add_argument("--sge_log_dir", help="sge: folder of the tasks' logs (default JOBNAME.log)")
    g.add_argument("--yarn_app_dir", help="yarn: folder holding dmlc-yarn.jar")
    g.add_argument("--kube_namespace", help="kubernetes: namespace (default: default)")
    g.add_argument("--kube_image", help="kubernetes: image of every pod, with gluon-deeplab "
                                        "installed (default: mxnet/python)")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="-- then the arguments of scripts/train.py")
    return p


def _check(args: argparse.Namespace) -> None:
    """Launcher options that do not fit: a one-line ValueError / FileNotFoundError."""
    for name, (launchers, _) in LAUNCHER_OPTIONS.items():
        if getattr(args, name) is not None and args.launcher not in launchers:
            raise ValueError(f"--{name} is an option of --launcher {' / '.join(launchers)}, "
                             f"not {args.launcher}")
    if args.hostfile is not None:
        read_hosts(args.hostfile)
    elif args.launcher == "ssh":
        raise ValueError("--launcher ssh needs -H/--hostfile (one host a line)")
    if args.mpirun and not os.access(args.mpirun, os.X_OK):
        raise FileNotFoundError(f"--mpirun {args.mpirun}: not an executable file")
    if args.launcher == "yarn":
        hadoop = os.path.join(os.environ.get("HADOOP_HOME", ""), "bin", "hadoop")
        if not os.path.isfile(hadoop):
            raise FileNotFoundError("--launcher yarn: HADOOP_HOME must be set to a Hadoop "
                                    f"installation ({hadoop} not found)")
        jar = os.path.join(args.yarn_app_dir or "", "dmlc-yarn.jar")
        if not os.path.isfile(jar):
            raise FileNotFoundError(f"--launcher yarn needs --yarn_app_dir with dmlc-yarn.jar "
                                    f"(built from dmlc-core's tracker/yarn; {jar} not found)")


def _dmlc_options(args: argparse.Namespace) -> List[str]:
    """Our options in dmlc_tracker's spelling."""
    options = ["--jobname", args.jobname]
    if args.hostfile:
        options += ["--host-file", os.path.abspath(args.hostfile)]
    for name, (_, dmlc_name) in LAUNCHER_OPTIONS.items():
        if dmlc_name and getattr(args, name) is not None:
            options += [dmlc_name, str(getattr(args, name))]
    if args.kube_image:
        options += ["--kube-worker-image", args.kube_image, "--kube-server-image", args.kube_image]
    return options


def _command(args: argparse.Namespace, train_args: Sequence[str]) -> List[str]:
    """What every process runs (schedulers and servers serve from ``import mxnet`` on)."""
    train_args = with_dist_kvstore(train_args)
    if args.launcher in ("yarn", "kubernetes"):
        return [CONTAINER_COMMAND, *train_args]
    command = [args.python, TRAIN_SCRIPT, *train_args]
    return sge_command(command) if args.launcher == "sge" else command


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (a cluster scheduler cancelling the job) stops the processes as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Launch; exit code 0, or 1 with a one-line reason (2: bad options)."""
    p = build_parser()
    args = p.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    env = {}
    if args.partition:
        env["SLURM_PARTITION"] = args.partition
    if args.ntasks_per_node:
        env["SLURM_NTASKS_PER_NODE"] = str(args.ntasks_per_node)
    try:
        _check(args)
        command = _command(args, train_args)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
        try:
            failure = launch(args.launcher, command, args.num_workers, args.num_servers,
                             _dmlc_options(args), env=env, mpirun=args.mpirun,
                             timeout=args.timeout)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
    except (ValueError, FileNotFoundError, ImportError) as err:  # no usage: the line says it
        p.exit(2, f"{p.prog}: error: {err}\n")
    except KeyboardInterrupt:
        failure = "interrupted; every process was stopped"
    if failure:
        print(f"gluon-deeplab-launch: {failure}", file=sys.stderr)
        return 1
    return 0
