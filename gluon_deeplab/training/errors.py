"""The trainer's errors (a module of their own, so that its pieces can raise them)."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on (message says why and what to do)."""


class SettingsError(ValueError):
    """A setting (or a combination) that this machine or this config cannot run, found before
    anything starts; the command line reports it as a bad flag (exit status 2)."""


class TrainingDiverged(TrainingError):
    """The loss or the weights became NaN or infinite."""
