"""The poly learning-rate schedule of DeepLab, evaluated per optimizer step."""

from __future__ import annotations

POLY_POWER = 0.9


def poly_lr(iteration: int, max_iter: int, initial_lr: float, end_lr: float = 0.0,
            power: float = POLY_POWER) -> float:
    """Learning rate of step ``iteration`` (0-based) out of ``max_iter``.

    ``end + (initial - end) * (1 - iteration / max_iter) ** power``: ``initial_lr`` at the first
    step, falling towards ``end_lr``, which the step after the last one would reach.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if not 0 <= iteration <= max_iter:
        raise ValueError(f"iteration {iteration} is outside [0, {max_iter}]")
    return end_lr + (initial_lr - end_lr) * (1.0 - iteration / max_iter) ** power
