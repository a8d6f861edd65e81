"""Reading the visible units a Boltzmann machine's conditional sampling holds fixed.

One rule for :meth:`omicsembed.models.DeepBoltzmannMachine.sample` and the Julia reference
(:func:`omicsembed.julia.sample_dbm`, BoltzmannMachines.jl ``gibbssamplecond!``). This module
imports neither torch nor the Rust core, so the Julia path can use it on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = ["Clamped", "clamp_arrays"]

#: ``{feature index or name: 0/1}``, or ``(mask, values)``.
Clamped: TypeAlias = Mapping[int | str, int] | tuple[np.ndarray, np.ndarray]


def clamp_arrays(
    clamped: Clamped, n_samples: int, n_features: int, feature_names: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the mask and values of clamped visible units.

    Parameters
    ----------
    clamped
        A dict ``{feature index or name: 0/1}``, or ``(mask, values)``: a boolean mask of
        length ``n_features`` and 0/1 values of shape ``(n_features,)`` or
        ``(n_samples, n_features)`` (only masked entries are read).
    n_samples
        Number of chains.
    n_features
        Number of visible units ``p``.
    feature_names
        The model's feature names, or None for a model that knows its features by index only
        (names are then refused).

    Returns
    -------
    mask, values
        bool ``(p,)`` and uint8 ``(n_samples, p)``, 0 where the mask is False (read-only: a
        broadcast view for the dict form).

    Raises
    ------
    InvalidInputError
        An unknown name, an index outside ``0..p-1``, a key that is neither, a value other
        than 0/1 at a clamped unit, or ``clamped`` of another type.
    ShapeMismatchError
        A mask or values of the wrong shape.

    """
    p = int(n_features)
    if isinstance(clamped, Mapping):
        mask = np.zeros(p, dtype=bool)
        values = np.zeros(p, dtype=np.uint8)
        lookup = {name: j for j, name in enumerate(feature_names or ())}
        for key, value in clamped.items():
            if isinstance(key, str):
                if feature_names is None:
                    raise InvalidInputError(
                        f"clamped feature {key!r}: this model has no feature names; give the "
                        "feature's integer index"
                    )
                if key not in lookup:
                    raise InvalidInputError(f"clamped feature {key!r} is not a model feature")
                j = lookup[key]
            else:
                if isinstance(key, bool) or not isinstance(key, int | np.integer):
                    raise InvalidInputError(
                        f"clamped features are gene names or integer indices, got {key!r}"
                    )
                j = int(key)
                if not 0 <= j < p:
                    raise InvalidInputError(f"clamped feature index {j} is outside 0..{p - 1}")
            if value not in (0, 1):
                raise InvalidInputError(f"clamped value of {key!r} must be 0 or 1, got {value!r}")
            mask[j] = True
            values[j] = value
        return mask, np.broadcast_to(values, (n_samples, p))
    if not isinstance(clamped, tuple) or len(clamped) != 2:
        raise InvalidInputError("clamped must be a dict {feature: value} or (mask, values)")
    mask = np.asarray(clamped[0], dtype=bool)
    if mask.shape != (p,):
        raise ShapeMismatchError(f"clamp mask has shape {mask.shape}, expected ({p},)")
    raw = np.asarray(clamped[1])
    if raw.shape not in ((p,), (n_samples, p)):
        raise ShapeMismatchError(
            f"clamp values have shape {raw.shape}, expected ({p},) or ({n_samples}, {p})"
        )
    used = np.broadcast_to(raw, (n_samples, p))[:, mask]
    if used.size and not np.isin(used, (0, 1)).all():
        raise InvalidInputError("clamped values must be 0 or 1")
    return mask, np.where(mask, np.broadcast_to(raw, (n_samples, p)), 0).astype(np.uint8)
