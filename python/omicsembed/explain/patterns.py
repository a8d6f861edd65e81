"""Frequent patterns of selected features and their map by latent-unit distributions.

Hess, Hackenberg & Binder (2020), "Exploring generative deep learning for omics data using
log-linear models", Bioinformatics 36(20):5045–5053, §2.5 and Fig. 4: after the log-linear
selection, the most frequent joint patterns of the selected features among the synthetic
samples are compared through the distribution of the latent units that generated them — the
square root of the Jensen–Shannon divergence between those distributions, laid out in 2-D by
classical multidimensional scaling. Follows ``PatternsByLogLin.jl`` (``toppatterns``,
``patterncoords``, ``jsdivergence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.explain.loglinear import _as_uint8_codes

__all__ = ["PatternMap", "classical_mds", "jensen_shannon", "pattern_map", "top_patterns"]

#: Largest number of patterns :func:`top_patterns` lists when it has to include unobserved ones.
MAX_LISTED_PATTERNS = 1 << 16


def top_patterns(
    X_selected: ArrayLike, n: int = 10, *, include_unobserved: bool = True
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Find the most frequent joint patterns of the selected binary features.

    ``PatternsByLogLin.toppatterns``: count every pattern of the ``q`` selected features over
    all ``2^q`` cells of their table, take the ``n``-th largest count ``c_n`` and keep **every**
    pattern whose count is ``≥ c_n`` — so ties can give more than ``n`` patterns. When fewer
    than ``n`` patterns occur, ``c_n = 0`` and (as in the Julia package) every pattern is kept,
    including unobserved ones with count 0; ``include_unobserved=False`` keeps only observed
    patterns instead.

    Parameters
    ----------
    X_selected
        ``(n_samples, q)`` binary matrix of the selected features (e.g.
        ``X[:, selection.selected]``).
    n
        Number of patterns to keep (≥ 1).
    include_unobserved
        Whether a count threshold of 0 lists the unobserved patterns too (default, as the
        authors).

    Returns
    -------
    patterns : numpy.ndarray
        ``(m, q)`` uint8 patterns, ``m ≥ min(n, number of candidate patterns)``.
    counts : numpy.ndarray
        ``(m,)`` int64 number of samples showing each pattern.

    Notes
    -----
    Order: by count, largest first; equal counts by pattern in lexicographic order (first
    feature most significant, 0 before 1). The Julia package lists the kept patterns in table
    (column-major) order instead; the set is the same.

    Raises
    ------
    InvalidInputError
        Non-binary values (naming row and column), ``n < 1``, or a threshold of 0 that would list
        more than 65,536 unobserved patterns (use ``include_unobserved=False``).
    ShapeMismatchError
        If ``X_selected`` is not 2-D.

    """
    codes = _as_uint8_codes(X_selected, "X_selected", binary=True)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidInputError(f"n must be an integer ≥ 1, got {n!r}")
    q = codes.shape[1]
    observed, counts = np.unique(codes, axis=0, return_counts=True)
    if len(observed) >= n or not include_unobserved:
        threshold = np.sort(counts)[::-1][min(n, len(counts)) - 1] if len(counts) else 0
        keep = counts >= threshold
        patterns, kept = observed[keep], counts[keep].astype(np.int64)
    else:
        if 2**q > MAX_LISTED_PATTERNS:
            raise InvalidInputError(
                f"only {len(observed)} of the 2^{q} patterns occur, fewer than n = {n}, so every "
                f"pattern would be listed; use include_unobserved=False or a smaller n"
            )
        bits = (np.arange(2**q)[:, None] >> np.arange(q - 1, -1, -1)[None, :]) & 1
        patterns = bits.astype(np.uint8)
        kept = np.zeros(2**q, dtype=np.int64)
        if len(observed):
            index = observed.astype(np.int64) @ (1 << np.arange(q - 1, -1, -1))
            kept[index] = counts
    # np.unique / the enumeration give lexicographic order; a stable sort by count keeps it
    order = np.argsort(-kept, kind="stable")
    return np.ascontiguousarray(patterns[order]), kept[order]


def jensen_shannon(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen–Shannon divergence of two discrete distributions (natural log).

    ``JS(P, Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M)`` with ``M = (P + Q) / 2`` and ``0 · log 0 = 0``
    (``PatternsByLogLin.jsdivergence``). It lies in ``[0, ln 2]``; its square root is a metric
    (the distance of :func:`pattern_map`).

    Parameters
    ----------
    p, q
        Probability vectors of the same shape, ≥ 0, each summing to 1 (within 1e-9).

    Returns
    -------
    float
        The divergence, in nats.

    Raises
    ------
    ShapeMismatchError
        If the shapes differ.
    InvalidInputError
        If a value is negative or not finite, or a vector does not sum to 1.

    """
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.shape != b.shape:
        raise ShapeMismatchError(f"p has shape {a.shape} but q has shape {b.shape}")
    for name, v in (("p", a), ("q", b)):
        if not np.all(np.isfinite(v) & (v >= 0)):
            raise InvalidInputError(f"{name} must be finite and ≥ 0")
        if abs(v.sum() - 1.0) > 1e-9:
            raise InvalidInputError(f"{name} must sum to 1, sums to {v.sum()!r}")
    return float(_js_rows(a.reshape(1, -1), b.reshape(1, -1))[0])


def _kl_to_mixture(p: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float64]:
    positive = p > 0
    terms = np.zeros_like(p)
    terms[positive] = p[positive] * np.log(p[positive] / m[positive])
    return np.asarray(terms.sum(axis=-1))


def _js_rows(p: NDArray[np.float64], q: NDArray[np.float64]) -> NDArray[np.float64]:
    m = (p + q) / 2
    js = 0.5 * _kl_to_mixture(p, m) + 0.5 * _kl_to_mixture(q, m)
    return np.clip(js, 0.0, np.log(2.0))


def classical_mds(distances: ArrayLike, n_components: int = 2) -> NDArray[np.float64]:
    """Classical (Torgerson) multidimensional scaling.

    Eigen-decomposition of ``B = -½ J D² J`` (``J`` the centring matrix); coordinates are the
    top eigenvectors scaled by the square roots of their eigenvalues (negative eigenvalues give
    0), as ``MultivariateStats.classical_mds``. Each axis' sign is fixed so that its
    largest-magnitude coordinate is positive.

    Parameters
    ----------
    distances
        ``(m, m)`` symmetric distance matrix with zero diagonal.
    n_components
        Number of dimensions (≥ 1).

    Returns
    -------
    numpy.ndarray
        ``(m, n_components)`` float64 coordinates (zero columns when ``m ≤ n_components``).

    Raises
    ------
    ShapeMismatchError
        If ``distances`` is not square.
    InvalidInputError
        If it has non-finite or negative values, is not symmetric, or ``n_components < 1``.

    """
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ShapeMismatchError(f"distances must be a square matrix, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise InvalidInputError("distances must be finite")
    # symmetric up to rounding (float32 distances differ from their transpose by ~1e-7)
    tolerance = 1e-6 * float(np.abs(d).max(initial=0.0))
    if (d < -tolerance).any() or (np.abs(d - d.T) > tolerance).any():
        raise InvalidInputError("distances must be non-negative and symmetric")
    d = (d + d.T) / 2
    if n_components < 1:
        raise InvalidInputError(f"n_components must be ≥ 1, got {n_components}")
    m = d.shape[0]
    coords = np.zeros((m, n_components))
    if m == 0:
        return coords
    centring = np.eye(m) - 1.0 / m
    b = -0.5 * centring @ (d**2) @ centring
    values, vectors = np.linalg.eigh((b + b.T) / 2)
    top = np.argsort(values)[::-1][: min(n_components, m)]
    for axis, index in enumerate(top):
        vector = vectors[:, index]
        if vector[np.argmax(np.abs(vector))] < 0:
            vector = -vector
        coords[:, axis] = vector * np.sqrt(max(values[index], 0.0))
    return coords


@dataclass(frozen=True)
class PatternMap:
    """Patterns of selected features compared by their latent-unit distributions.

    Attributes
    ----------
    patterns
        ``(m, q)`` uint8 patterns, as given.
    counts
        ``(m,)`` int64 number of samples showing each pattern exactly.
    empty
        ``(m,)`` bool: patterns no sample shows. They have no latent distribution, so they get
        no distance or coordinates.
    index
        ``(m',)`` int64 indices into ``patterns`` of the non-empty patterns: the rows of
        ``distances`` and ``coordinates``.
    latent_configurations
        ``(c, r)`` uint8 joint configurations of all latent units seen among the mapped samples,
        in lexicographic order.
    frequencies
        ``(m, c)`` float64 relative frequency of each latent configuration among each pattern's
        samples (rows of empty patterns are 0).
    distances
        ``(m', m')`` float64 ``sqrt(JS)`` between the non-empty patterns, in ``[0, sqrt(ln 2)]``.
    coordinates
        ``(m', 2)`` float64 classical MDS coordinates of the non-empty patterns.

    """

    patterns: NDArray[np.uint8]
    counts: NDArray[np.int64]
    empty: NDArray[np.bool_]
    index: NDArray[np.int64]
    latent_configurations: NDArray[np.uint8]
    frequencies: NDArray[np.float64]
    distances: NDArray[np.float64]
    coordinates: NDArray[np.float64]


def pattern_map(X_selected: ArrayLike, U: ArrayLike, patterns: ArrayLike) -> PatternMap:
    """Map patterns of selected features by the latent units behind them.

    ``PatternsByLogLin.patterncoords`` (Hess et al. 2020, §2.5, Fig. 4): for each pattern, the
    samples whose selected features equal it exactly; the relative frequencies of the joint
    configurations of **all** latent units among them; the distance between two patterns is
    ``sqrt(JS)`` of those distributions (natural log, ``0 · log 0 = 0``); 2-D coordinates by
    classical MDS (:func:`classical_mds`).

    Parameters
    ----------
    X_selected
        ``(n, q)`` binary selected features of the synthetic samples.
    U
        ``(n, r)`` binary latent units of the same samples.
    patterns
        ``(m, q)`` binary patterns (e.g. from :func:`top_patterns`).

    Returns
    -------
    PatternMap
        Counts, empty flags, latent distributions, distances and coordinates.

    Raises
    ------
    InvalidInputError
        Non-binary values (naming row and column) or no patterns.
    ShapeMismatchError
        Inputs not 2-D, different numbers of rows of ``X_selected`` and ``U``, or patterns with
        a different number of features than ``X_selected``.

    """
    x = _as_uint8_codes(X_selected, "X_selected", binary=True)
    u = _as_uint8_codes(U, "U", binary=True)
    pats = _as_uint8_codes(patterns, "patterns", binary=True)
    if x.shape[0] != u.shape[0]:
        raise ShapeMismatchError(
            f"X_selected has {x.shape[0]} rows but U has {u.shape[0]}; give the latent units "
            "of the same samples"
        )
    if pats.shape[1] != x.shape[1]:
        raise ShapeMismatchError(
            f"patterns have {pats.shape[1]} features but X_selected has {x.shape[1]}"
        )
    if pats.shape[0] == 0:
        raise InvalidInputError("no patterns to map")
    members = [np.all(x == pattern, axis=1) for pattern in pats]
    counts = np.array([int(mask.sum()) for mask in members], dtype=np.int64)
    empty = counts == 0
    mapped = np.concatenate([u[mask] for mask in members], axis=0)
    configurations: NDArray[Any] = np.zeros((0, u.shape[1]), dtype=np.uint8)
    inverse: NDArray[Any] = np.zeros(0, dtype=np.int64)
    if mapped.shape[0]:
        configurations, inverse = np.unique(mapped, axis=0, return_inverse=True)
    frequencies = np.zeros((len(pats), len(configurations)))
    starts = np.concatenate([[0], np.cumsum(counts)])
    for row in np.flatnonzero(~empty):
        found = np.bincount(
            inverse.ravel()[starts[row] : starts[row + 1]], minlength=len(configurations)
        )
        frequencies[row] = found / counts[row]
    index = np.flatnonzero(~empty).astype(np.int64)
    sub = frequencies[index]
    distances = np.zeros((len(index), len(index)))
    for a in range(len(index)):
        js = _js_rows(np.broadcast_to(sub[a], sub.shape), sub)
        distances[a] = np.sqrt(js)
    distances = (distances + distances.T) / 2
    np.fill_diagonal(distances, 0.0)
    return PatternMap(
        patterns=pats,
        counts=counts,
        empty=empty,
        index=index,
        latent_configurations=np.ascontiguousarray(configurations.astype(np.uint8)),
        frequencies=frequencies,
        distances=distances,
        coordinates=classical_mds(distances, 2),
    )
