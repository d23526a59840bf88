"""The trainer's errors (a module of their own, so that its pieces can raise them)."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on (message says why and what to do)."""


class TrainingDiverged(TrainingError):
    """The loss or the weights became NaN or infinite."""
