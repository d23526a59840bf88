"""Class names of a model: recorded in its checkpoints when training starts and carried into
every export's meta file; files written before that get their dataset's default names, said
once on stderr."""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional

from .checkpoint import Checkpoint
from .data.registry import default_classes

CLASSES = "classes"  # the key in a checkpoint's ``extra`` record and in an export's meta
_said: set = set()


def _recorded(record: Any, num_classes: int, source: str) -> Optional[List[str]]:
    names = record.get(CLASSES) if isinstance(record, dict) else None
    if not names:
        return None
    if len(names) != num_classes:
        raise ValueError(f"{source} records {len(names)} class names for a model of "
                         f"{num_classes} classes")
    return [str(name) for name in names]


def _defaults(source: str, num_classes: int, dataset: Optional[str]) -> List[str]:
    names = default_classes(num_classes, dataset)
    if source not in _said:
        _said.add(source)
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        print(f"note: {source} records no class names (written before they were); using "
              f"the defaults of {dataset or 'its class count'}: {shown}", file=sys.stderr,
              flush=True)
    return names


def checkpoint_classes(ckpt: Checkpoint) -> List[str]:
    """The class names a checkpoint records (its ``extra``, where the trainer puts them), else
    the defaults of the dataset it was trained on."""
    num_classes = int(ckpt.model_config["num_classes"])
    source = ckpt.path or "checkpoint"
    for record in (ckpt.extra, ckpt.args, ckpt.model_config):
        names = _recorded(record, num_classes, source)
        if names:
            return names
    return _defaults(source, num_classes, ckpt.args.get("dataset"))


def export_classes(meta: Dict[str, Any], num_classes: int, prefix: str) -> List[str]:
    """The class names of an export's meta record, else the defaults for its class count."""
    return _recorded(meta, num_classes, f"{prefix}-meta.json") or \
        _defaults(prefix, num_classes, meta.get("dataset"))
