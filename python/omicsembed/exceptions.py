"""Exceptions raised by omicsembed.

Every error of the package derives from :class:`OmicsEmbedError`. The Rust core raises the same
classes (it imports them from this module), so ``except omicsembed.exceptions.InvalidInputError``
works whether the check happened in Python or in Rust.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceError",
    "InvalidInputError",
    "OmicsEmbedError",
    "ShapeMismatchError",
]


class OmicsEmbedError(Exception):
    """Base class of every error raised by omicsembed."""


class InvalidInputError(OmicsEmbedError, ValueError):
    """A value is outside its domain.

    Examples: NaN or infinite values, negative counts, non-binary data where binary data is
    needed, unknown genes or labels, empty or single-class groups, unreadable files.
    """


class ShapeMismatchError(OmicsEmbedError, ValueError):
    """Arrays (or tables) whose shapes do not agree."""


class ConvergenceError(OmicsEmbedError, RuntimeError):
    """An iterative method did not converge within its iteration cap."""
