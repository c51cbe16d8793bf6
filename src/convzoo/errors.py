"""User-facing errors: each message is one line saying what is wrong and how to fix it.

The command line prints them as ``convzoo: error: ...`` and exits with code 2, without a traceback.
"""

from __future__ import annotations


class ConvzooError(ValueError):
    """A user-facing error: the message is one line saying what is wrong and how to fix it."""


class DataError(ConvzooError):
    """A data set is missing, malformed or unsafe to read."""


class RunError(ConvzooError):
    """A run directory cannot be used: locked, already holding a run, or resumed with another config."""


class DivergenceError(ConvzooError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""
