"""Runs each bench case in a child process of its own and turns it into a table row.

A row's "peak MiB" is the peak resident set size of its child: the process baseline (MXNet
imported; its own row) plus what the case needed, never memory left behind by an earlier row.
A row's "isa" is what oneDNN ran in that child (its verbose log, see isa.py).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import resource
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..amx import isa_from_verbose
from .isa import verbose_log

FAILED = "failed:"  # note of a row whose case failed


@dataclass
class BenchRow:
    """One line of the table."""

    part: str
    name: str
    value: Optional[float]
    unit: str
    ratio: Optional[float] = None
    ratio_of: str = ""
    target: str = ""
    peak_mib: Optional[float] = None
    note: str = ""
    extra: Dict[str, float] = field(default_factory=dict)
    isa: str = ""


def _reset_peak_memory() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_mib() -> float:
    """Peak resident set size of this process since the last reset, in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _case_in_child(conn, name: str, kwargs: dict) -> None:
    """Child side of :func:`run_case`: run one case under oneDNN's verbose log, send back
    (result, peak MiB, ISA) or an error."""
    try:
        from .cases import CASES

        logging.getLogger().setLevel(logging.WARNING)
        gc.collect()
        _reset_peak_memory()
        with verbose_log() as log:
            result = CASES[name](**kwargs)
        conn.send(("ok", result, peak_memory_mib(), isa_from_verbose(log[0]) or ""))
    except BaseException as err:  # reported by the parent as this row's failure
        lines = str(err).strip().splitlines() or [""]
        conn.send(("error", f"{type(err).__name__}: {lines[-1]}", None, ""))
    finally:
        conn.close()


def run_case(name: str, timeout: float = 1800, **kwargs) -> Tuple[float, float, str]:
    """Run case ``name`` in a child process of its own; returns (result, peak MiB of the
    child, the ISA oneDNN ran there).

    Each child is a fresh interpreter ('spawn'; MXNet runs single-threaded in a forked
    child) that imports MXNet and this package and runs the one case, so a row's peak is
    its own. AMP (``amp.init``) patches MXNet only inside the child.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    # Not a daemon: the data loader case starts worker processes of its own.
    proc = ctx.Process(target=_case_in_child, args=(child, name, kwargs))
    proc.start()
    child.close()
    if not parent.poll(timeout):
        proc.kill()
        raise TimeoutError(f"benchmark case {name} took more than {timeout:.0f} s")
    try:
        status, result, peak, isa = parent.recv()
    except EOFError:  # the child died without a word (killed, or failed to start)
        proc.join(10)
        raise RuntimeError(f"benchmark case {name} ended without a result (exit code "
                           f"{proc.exitcode}); the calling script needs an "
                           "'if __name__ == \"__main__\":' guard") from None
    proc.join(10)
    if status != "ok":
        raise RuntimeError(f"benchmark case {name} failed: {result}")
    return result, peak, isa


def row(part: str, name: str, case: str, unit: str, unavailable: Optional[str] = None,
        **kwargs) -> BenchRow:
    """A row measured by ``case`` in its own process; "n/a (reason)" where it cannot run, and
    "failed: reason" where it fails (the other rows still run)."""
    if unavailable:
        return BenchRow(part, name, None, unit, note=f"n/a ({unavailable})")
    try:
        value, peak, isa = run_case(case, **kwargs)
    except (RuntimeError, TimeoutError) as err:
        return BenchRow(part, name, None, unit, note=f"{FAILED} {err}")
    return BenchRow(part, name, value, unit, peak_mib=peak, isa=isa)


def ratio(this: BenchRow, reference: BenchRow, of: str, target: str = "",
          inverse: bool = False) -> BenchRow:
    """Set ``this.ratio`` = reference / this (``inverse``: this / reference) where both were
    measured."""
    if this.value and reference.value:
        this.ratio = this.value / reference.value if inverse else reference.value / this.value
        this.ratio_of = of
    this.target = target
    return this


def versus_fused(this: BenchRow, fused: BenchRow) -> BenchRow:
    """Note the speed-up of ``this`` over the fused fp32 row, where both were measured."""
    if this.value and fused.value:
        this.extra = {"speedup_vs_fused": fused.value / this.value}
        this.note = f"vs fused {fused.value / this.value:.2f}x"
    return this


def format_table(rows: Sequence[BenchRow]) -> str:
    """A plain-text table of the rows."""
    header = ("case", "value", "unit", "ratio", "ratio is", "target", "isa", "peak MiB",
              "note")
    lines: List[tuple] = [header]
    for r in rows:
        lines.append((r.name, f"{r.value:.4f}" if r.value is not None else "-", r.unit,
                      f"{r.ratio:.2f}" if r.ratio is not None else "", r.ratio_of, r.target,
                      r.isa, f"{r.peak_mib:.0f}" if r.peak_mib is not None else "", r.note))
    return aligned(lines)


def aligned(lines: Sequence[Sequence[object]]) -> str:
    """Rows of cells as plain-text columns, the first row a header underlined with dashes."""
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "-" * len(text[0]))
    return "\n".join(text)


def rows_as_dicts(rows: Sequence[BenchRow]) -> List[dict]:
    return [asdict(r) for r in rows]
