"""Dataset errors that say what the user did not choose: the defaults behind them, and the
layout that the folder holds instead."""

from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple

from .io import DataError
from .registry import canonical_dataset_name
from .synthetic import META_FILE
from .voc import GLUONCV_LAYOUTS, find_sbd, find_voc2012, gluoncv_voc_root


def layouts_in(root: Optional[str]) -> List[str]:
    """The layouts whose folders ``root`` holds (for error hints)."""
    if not root or not os.path.isdir(root):
        return []
    found = []
    if os.path.isfile(os.path.join(root, META_FILE)):
        found.append("synthetic")
    if os.path.isdir(os.path.join(root, "SegmentationClassAug")):
        found.append("voc_aug")
    if find_sbd(root):
        found.append("voc_sbd")
    if "synthetic" not in found and find_voc2012(root):  # synthetic sets use VOC's layout
        found.append("voc")
    return found


def explain_data_error(err: Exception, script: str, defaults: Sequence[Tuple[str, Any]],
                       dataset: str, root: Optional[str],
                       dataset_flag: str = "--dataset") -> DataError:
    """``err`` (a dataset that cannot be read) followed by what the user did not choose: the
    flags whose defaults were used, and the ``dataset_flag`` value that reads ``root`` when it
    holds another layout (or that download_voc.py fills gluoncv's empty root)."""
    text = str(err)
    if defaults:
        flags = " and ".join(f"{flag} {value}" for flag, value in defaults)
        text += f"; {flags} {'are' if len(defaults) > 1 else 'is'} {script}'s " \
                f"default{'s' if len(defaults) > 1 else ''}"
    found = layouts_in(root)
    dataset = canonical_dataset_name(dataset)
    if found and dataset not in found:
        text += f"; {root} holds a {found[0]} set: pass {dataset_flag} {found[0]}"
    elif not found and dataset in GLUONCV_LAYOUTS and root and \
            os.path.abspath(root) == os.path.abspath(gluoncv_voc_root()):
        text += "; scripts/download_voc.py downloads VOC 2012 and SBD there"
    return DataError(text)
