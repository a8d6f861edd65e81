"""Refusing, before any work, a request too large for this machine's memory.

A request far too large (``n_synthetic=10**12``, a learning-rate schedule of ``10**11``
epochs) would otherwise fail deep inside torch or the Rust allocator, after training, or
reserve terabytes and swap. Its size is known up front, so it is refused there in one line.
"""

from __future__ import annotations

import os

from omicsembed.exceptions import InvalidInputError

__all__ = ["check_memory", "physical_memory"]


def physical_memory() -> int | None:
    """Return this machine's physical memory in bytes (None where POSIX cannot say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_memory(n_bytes: int, what: str) -> None:
    """Raise InvalidInputError if ``n_bytes`` exceed this machine's physical memory.

    Parameters
    ----------
    n_bytes
        Size of the request in bytes (Python int: products of large counts do not wrap).
    what
        What needs the memory, plural, for the message (e.g. ``"10 synthetic cells"``).

    Raises
    ------
    InvalidInputError
        ``what need about N GiB, more than the M GiB of memory of this machine``. Without
        POSIX ``sysconf`` nothing is checked.

    """
    physical = physical_memory()
    if physical is not None and int(n_bytes) > physical:
        raise InvalidInputError(
            f"{what} need about {int(n_bytes) / 2**30:,.0f} GiB, more than the "
            f"{physical / 2**30:,.0f} GiB of memory of this machine"
        )
