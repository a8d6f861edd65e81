"""Seeds as ints for torch, numpy, scikit-learn and the Rust core.

What a user passes as ``seed`` (an int, a numpy Generator or None) becomes the int each
consumer takes by one rule, with one error message, at every entry point.
"""

from __future__ import annotations

import numpy as np

from omicsembed._settings import settings as package_settings
from omicsembed.exceptions import InvalidInputError

__all__ = [
    "RUST_SEEDS",
    "SKLEARN_SEEDS",
    "TORCH_SEEDS",
    "Seed",
    "int_seed",
    "numpy_rng",
    "seed_int",
]

#: A seed: an int, a numpy Generator (an int is drawn from it), or None
#: (``omicsembed.settings.seed``).
Seed = int | np.random.Generator | None

#: Exclusive upper bounds of the seeds passed on: scikit-learn's ``random_state`` (numpy's
#: legacy ``RandomState``) takes [0, 2**32) and the Rust core's streams take ``u64``; seeds for
#: torch (``manual_seed`` takes [-2**63, 2**64)) and ``numpy.random.default_rng`` (any
#: non-negative int) are kept to [0, 2**63), the range of the models' stored seed settings.
SKLEARN_SEEDS = 2**32
TORCH_SEEDS = 2**63
RUST_SEEDS = 2**64


def seed_int(seed: Seed, *, below: int, name: str = "seed") -> int:
    """Return ``seed`` as an int in ``[0, below)``.

    Parameters
    ----------
    seed
        An int in ``[0, below)``; a numpy Generator, from which one int in
        ``[0, min(below, 2**63))`` is drawn (advancing it); or None for the package seed
        ``omicsembed.settings.seed`` (checked the same way).
    below
        Exclusive upper bound: :data:`SKLEARN_SEEDS`, :data:`TORCH_SEEDS` or
        :data:`RUST_SEEDS` (a power of two).
    name
        The argument's name, for the error message.

    Returns
    -------
    int
        The seed, ``0 ≤ seed < below``.

    Raises
    ------
    InvalidInputError
        If ``seed`` is not an int (bools are refused), a numpy Generator or None, or an int
        outside ``[0, below)``.

    """
    if seed is None:
        seed, name = package_settings.seed, "omicsembed.settings.seed"
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, min(below, 2**63)))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < below:
        raise InvalidInputError(_message(name, below, seed, "or a numpy Generator"))
    return int(seed)


def int_seed(seed: object, *, below: int, name: str = "seed") -> int:
    """Return a stored seed setting (an int, not a Generator or None) in ``[0, below)``.

    The check is that of :func:`seed_int`. Settings objects and jobs keep their seed and
    derive others from it (``seed + epoch``), so they need the int itself.

    Raises
    ------
    InvalidInputError
        If ``seed`` is not an int in ``[0, below)``.

    """
    if seed is None or isinstance(seed, np.random.Generator):
        raise InvalidInputError(_message(name, below, seed, "(a setting)"))
    return seed_int(seed, below=below, name=name)  # type: ignore[arg-type]


def _message(name: str, below: int, seed: object, alternative: str) -> str:
    bound = f"2**{below.bit_length() - 1}" if below & (below - 1) == 0 else str(below)
    return f"{name} must be an int in [0, {bound}) {alternative}, got {seed!r}"


def numpy_rng(seed: Seed) -> np.random.Generator:
    """Return ``seed`` if it is a numpy Generator, else a new one seeded by it.

    Other seeds are read by :func:`seed_int`, below :data:`TORCH_SEEDS` (2**63).

    Raises
    ------
    InvalidInputError
        As :func:`seed_int`.

    """
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed_int(seed, below=TORCH_SEEDS))
