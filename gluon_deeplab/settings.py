"""Configuration dataclasses from plain mappings (the library side of every command's flags)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Type, TypeVar

T = TypeVar("T")


def config_from_mapping(cls: Type[T], values: Mapping[str, Any], what: str) -> T:
    """``cls(**values)`` for a dataclass; names that are not fields are one ValueError naming
    them (``what``: "training", "evaluation")."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(unknown)}")
    return cls(**dict(values))
