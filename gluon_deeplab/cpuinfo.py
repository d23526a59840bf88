"""The CPU as /proc/cpuinfo describes it: model name and feature flags (no MXNet needed, so
that the environment report reads them too)."""

from __future__ import annotations

from typing import FrozenSet


def cpu_flags(path: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name ('unknown CPU' where it cannot be read)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
