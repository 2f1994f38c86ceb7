"""Errors of the model zoo."""

from dtmm.errors import DtmmError


class ZooError(DtmmError):
    """An unknown model name or an input shape / class count a model cannot take."""
