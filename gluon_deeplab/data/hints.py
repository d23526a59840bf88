"""Dataset errors that say what the user did not choose: the defaults behind them, and the
layout that the folder holds instead."""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple

from .io import DataError
from .layouts import canonical_dataset_name, registered_layouts
from .registry import default_data_dir


def layouts_in(root: Optional[str]) -> List[str]:
    """The layouts whose folders ``root`` holds (for error hints), the last registered first:
    a later layout is the more specific (a synthetic set also looks like VOC 2012)."""
    if not root or not os.path.isdir(root):
        return []
    return [spec.name for spec in reversed(registered_layouts())
            if spec.detect is not None and spec.detect(root)]


def explain_data_error(err: Exception, script: str, defaults: Sequence[Tuple[str, Any]],
                       dataset: str, root: Optional[str],
                       dataset_flag: str = "--dataset") -> DataError:
    """``err`` (a dataset that cannot be read) followed by what the user did not choose: the
    flags whose defaults were used, and the ``dataset_flag`` value that reads ``root`` when it
    holds another layout (or the layout's hint for its empty default root)."""
    text = str(err)
    if defaults:
        flags = " and ".join(f"{flag} {value}" for flag, value in defaults)
        text += f"; {flags} {'are' if len(defaults) > 1 else 'is'} {script}'s " \
                f"default{'s' if len(defaults) > 1 else ''}"
    found = layouts_in(root)
    dataset = canonical_dataset_name(dataset)
    hint = {spec.name: spec.missing_hint for spec in registered_layouts()}.get(dataset)
    if found and dataset not in found:
        text += f"; {root} holds a {found[0]} set: pass {dataset_flag} {found[0]}"
    elif not found and hint and root and \
            os.path.abspath(root) == os.path.abspath(default_data_dir(dataset)):
        text += "; " + hint
    return DataError(text)
