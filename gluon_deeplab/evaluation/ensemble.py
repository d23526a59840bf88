"""Pixel-wise majority vote over the prediction folders of several models.

Each folder holds one mask PNG per image (palette or grayscale, values = class indices), as
written by ``scripts/eval.py --save_predictions`` or ``scripts/predict.py``. A pixel gets the
class most folders voted for. Ties: when *every* folder has a probability file ``<name>.npy``
(C x H x W, written with ``--save_probabilities``) beside ``<name>.png``, the tied class with the
highest summed probability wins; otherwise the tied class voted by the earliest folder on the
command line wins.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..data.io import read_label_png
from ..paths import check_writable
from .colormap import save_mask

MASK_EXT = ".png"
PROBABILITY_EXT = ".npy"


def majority_vote(masks: Sequence[np.ndarray],
                  probabilities: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """Per-pixel majority class of K equally sized H x W masks (ties: see the module doc)."""
    if not masks:
        raise ValueError("majority_vote needs at least one mask")
    votes = np.stack([np.asarray(m, dtype=np.int64) for m in masks])  # K x H x W
    if votes.min() < 0:
        raise ValueError("masks must hold non-negative class indices")
    num_classes = int(votes.max()) + 1
    counts = np.zeros((num_classes,) + votes.shape[1:], dtype=np.int32)
    for vote in votes:
        np.put_along_axis(counts, vote[None],
                          np.take_along_axis(counts, vote[None], axis=0) + 1, axis=0)
    best = counts.max(axis=0)
    tied = counts == best[None]  # C x H x W: the classes sharing the top count
    result = counts.argmax(axis=0)
    is_tie = tied.sum(axis=0) > 1
    if not is_tie.any():
        return result
    if probabilities is not None:
        total = np.sum([np.asarray(p, dtype=np.float64) for p in probabilities], axis=0)
        if total.shape[1:] != votes.shape[1:] or total.shape[0] < num_classes:
            raise ValueError(f"probabilities of shape {total.shape} do not cover "
                             f"{num_classes} classes on {votes.shape[1:]} pixels")
        score = np.where(tied, total[:num_classes], -np.inf)
        return np.where(is_tie, score.argmax(axis=0), result)
    # The earliest folder whose vote is among the tied classes decides.
    for vote in votes[::-1]:
        voted_tied = np.take_along_axis(tied, vote[None], axis=0)[0]
        result = np.where(is_tie & voted_tied, vote, result)
    return result


def _mask_names(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"prediction folder {folder!r} does not exist")
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(MASK_EXT))


def _check_same_files(folders: Sequence[str]) -> List[str]:
    listings = {folder: _mask_names(folder) for folder in folders}
    names = listings[folders[0]]
    if not names:
        raise ValueError(f"prediction folder {folders[0]!r} holds no {MASK_EXT} masks")
    for folder in folders[1:]:
        missing = sorted(set(names) - set(listings[folder]))
        extra = sorted(set(listings[folder]) - set(names))
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing[:5])}")
            if extra:
                detail.append(f"extra {', '.join(extra[:5])}")
            raise ValueError(f"prediction folder {folder!r} does not hold the same masks as "
                             f"{folders[0]!r}: {'; '.join(detail)}")
    return names


def _load_probabilities(folders: Sequence[str], name: str,
                        shape: tuple) -> Optional[List[np.ndarray]]:
    stem = os.path.splitext(name)[0]
    paths = [os.path.join(f, stem + PROBABILITY_EXT) for f in folders]
    if not all(os.path.isfile(p) for p in paths):
        return None
    arrays = []
    for path in paths:
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ValueError(f"{path}: unreadable probability file ({err})") from None
        if arr.ndim != 3 or arr.shape[1:] != shape:
            raise ValueError(f"{path}: probabilities of shape {arr.shape}, expected "
                             f"C x {shape[0]} x {shape[1]}")
        arrays.append(arr)
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"probability files for {stem} disagree on the class count: "
                         + ", ".join(f"{p} {a.shape[0]}" for p, a in zip(paths, arrays)))
    return arrays


def ensemble_folders(folders: Sequence[str], output_dir: str,
                     overwrite: bool = False) -> Dict[str, int]:
    """Vote over ``folders`` and write one palette PNG per image into ``output_dir``.

    Returns counts: images written and how many of them broke ties with probabilities.
    """
    folders = [os.path.normpath(f) for f in folders]
    if len(folders) < 2:
        raise ValueError("an ensemble needs at least two prediction folders")
    out = os.path.abspath(output_dir)
    if any(os.path.abspath(f) == out for f in folders):
        raise ValueError(f"--output_dir {output_dir!r} is one of the input folders; "
                         "choose another folder")
    names = _check_same_files(folders)
    check_writable(output_dir, "--output_dir", folder=True)
    if not overwrite:
        existing = [n for n in names if os.path.exists(os.path.join(output_dir, n))]
        if existing:
            raise FileExistsError(f"{os.path.join(output_dir, existing[0])} exists; choose "
                                  "another --output_dir or pass --overwrite")
    stats = {"images": 0, "probability_ties": 0}
    for name in names:
        paths = [os.path.join(f, name) for f in folders]
        masks = [read_label_png(p) for p in paths]
        shapes = {m.shape for m in masks}
        if len(shapes) != 1:
            raise ValueError("masks differ in size: " + ", ".join(
                f"{p} {m.shape[0]}x{m.shape[1]}" for p, m in zip(paths, masks)))
        probabilities = _load_probabilities(folders, name, masks[0].shape)
        save_mask(majority_vote(masks, probabilities), os.path.join(output_dir, name))
        stats["images"] += 1
        stats["probability_ties"] += probabilities is not None
    return stats


