#!/usr/bin/env python
"""Distributed training: start scheduler, servers and workers of ``scripts/train.py``.

Locally (N workers on this machine, for trying it out)::

    python scripts/launch_dist.py -n 2 -s 1 -- --dataset synthetic --data_dir DIR ...

(DIR: e.g. ``runs/quickstart/data``, which ``sh sh/quickstart.sh`` writes.)

On several machines (one worker per host of the file, over ssh; --dry_run prints the commands)::

    python scripts/launch_dist.py --hostfile hosts.txt -- --data_dir /shared/voc ...
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gluon_deeplab.training.launch import (  # noqa: E402
    launch_local,
    launch_ssh,
    read_hosts,
    ssh_commands,
    with_dist_kvstore,
)

TRAIN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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


if __name__ == "__main__":
    sys.exit(main())
