"""``gluon-deeplab-launch`` (= ``scripts/launch_dist.py``): start scheduler, servers and workers
of ``scripts/train.py``. Options before ``--`` are the launcher's, those after it train.py's.

Locally (N workers on this machine, for trying it out)::

    gluon-deeplab-launch -n 2 -s 1 -- --dataset synthetic --data_dir runs/quickstart/data ...

On several machines (one worker per host of the file, over ssh; --dry_run prints the commands)::

    gluon-deeplab-launch --hostfile hosts.txt -- --data_dir /shared/VOCdevkit_aug ...
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..cli_help import DefaultsHelpFormatter
from .launch import launch_local, launch_ssh, read_hosts, ssh_commands, with_dist_kvstore

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SCRIPT = os.path.join(ROOT, "scripts", "train.py")


def build_parser() -> argparse.ArgumentParser:
    """The launcher's options (train.py's follow ``--``)."""
    p = argparse.ArgumentParser(prog="gluon-deeplab-launch", description=__doc__.split("\n\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("-n", "--num_workers", type=int, default=2,
                   help="workers on this machine (without --hostfile)")
    p.add_argument("-s", "--num_servers", type=int, default=None,
                   help="parameter servers (default: 1 locally, one per host with --hostfile)")
    p.add_argument("--hostfile", default=None,
                   help="file with one host name per line: one worker per host over ssh; the "
                        "first host also runs the scheduler")
    p.add_argument("--port", type=int, default=None,
                   help="scheduler port (default: a free one locally, 9091 over ssh)")
    p.add_argument("--python", default=sys.executable,
                   help="python interpreter on the hosts (--hostfile)")
    p.add_argument("--dry_run", action="store_true", help="print the ssh commands, run nothing")
    p.add_argument("--log_dir", default=None,
                   help="write each local process's output to LOG_DIR/<role>-K.log")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="arguments for scripts/train.py, after --")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Launch as the flags say; 1 if a worker failed."""
    p = build_parser()
    args = p.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    try:
        train_args = with_dist_kvstore(train_args)
        if args.hostfile:
            hosts = read_hosts(args.hostfile)
            commands = ssh_commands(hosts, [args.python, TRAIN_SCRIPT] + train_args,
                                    port=args.port or 9091, num_servers=args.num_servers,
                                    python=args.python)
            for command in commands:
                print(command)
            codes = [] if args.dry_run else launch_ssh(commands)
        else:
            codes = launch_local([sys.executable, TRAIN_SCRIPT] + train_args, args.num_workers,
                                 args.num_servers or 1, port=args.port, log_dir=args.log_dir)
    except (ValueError, FileNotFoundError) as err:
        p.error(str(err))
    failed = [k for k, c in enumerate(codes) if c != 0]
    if failed:
        print(f"launch_dist: worker(s) {failed} failed (exit codes {codes})", file=sys.stderr)
        return 1
    return 0
