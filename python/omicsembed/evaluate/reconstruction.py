"""How well a model reconstructs the data, and how well an embedding keeps sample distances."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from omicsembed._seeds import numpy_rng
from omicsembed.evaluate._checks import as_matrix
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = ["distance_preservation", "per_sample_pearson"]


def per_sample_pearson(observed: ArrayLike, reconstructed: ArrayLike) -> NDArray[np.float64]:
    """Pearson correlation between observed and reconstructed values of each sample.

    The reconstruction metric of Trofimov et al. 2020 (Bioinformatics), §3: for sample ``i``,
    the correlation over genes of ``observed[i]`` and ``reconstructed[i]``. Entries where
    ``observed`` is NaN (missing or held-out values) are ignored, sample by sample.

    Parameters
    ----------
    observed
        float (n_samples, n_genes); NaN marks missing entries.
    reconstructed
        float (n_samples, n_genes), finite (a model's prediction of every entry).

    Returns
    -------
    numpy.ndarray
        float64 (n_samples,), values in [-1, 1]; NaN for a sample with fewer than 2 observed
        entries or with a constant observed or reconstructed profile (correlation undefined).

    Raises
    ------
    ShapeMismatchError
        If the shapes differ.
    InvalidInputError
        If ``observed`` has infinite values or ``reconstructed`` has NaN/infinite values.

    """
    obs = as_matrix(observed, "observed", allow_nan=True)
    rec = as_matrix(reconstructed, "reconstructed", hint="a reconstruction must be complete")
    if obs.shape != rec.shape:
        raise ShapeMismatchError(
            f"observed has shape {obs.shape} but reconstructed has shape {rec.shape}"
        )
    mask = ~np.isnan(obs)
    n = mask.sum(axis=1)
    safe_n = np.maximum(n, 1)
    o = np.where(mask, obs, 0.0)
    r = np.where(mask, rec, 0.0)
    o = np.where(mask, o - (o.sum(axis=1) / safe_n)[:, None], 0.0)
    r = np.where(mask, r - (r.sum(axis=1) / safe_n)[:, None], 0.0)
    # Scale each row by its largest magnitude before the products (as scipy does) so that
    # tiny or huge values neither underflow nor overflow.
    o /= np.maximum(np.abs(o).max(axis=1), np.finfo(np.float64).tiny)[:, None]
    r /= np.maximum(np.abs(r).max(axis=1), np.finfo(np.float64).tiny)[:, None]
    num = np.einsum("ij,ij->i", o, r)
    den = np.sqrt(np.einsum("ij,ij->i", o, o) * np.einsum("ij,ij->i", r, r))
    out = np.full(obs.shape[0], np.nan)
    ok = (n >= 2) & (den > 0)
    out[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return out


def _pair_distances(
    x: NDArray[np.float64], i: NDArray[np.intp], j: NDArray[np.intp]
) -> NDArray[np.float64]:
    # Chunks keep the (pairs x features) difference matrix at ~4 M values.
    chunk = max(1, 4_000_000 // x.shape[1])
    out = np.empty(i.size, dtype=np.float64)
    for s in range(0, i.size, chunk):
        d = x[i[s : s + chunk]] - x[j[s : s + chunk]]
        out[s : s + chunk] = np.sqrt(np.einsum("ij,ij->i", d, d))
    return out


def distance_preservation(
    X: ArrayLike,
    Z: ArrayLike,
    *,
    n_pairs: int = 10_000,
    seed: int | np.random.Generator = 0,
) -> float:
    """Pearson correlation between sample distances in the data and in an embedding.

    Euclidean distances ``||X[a] - X[b]||`` and ``||Z[a] - Z[b]||`` of sample pairs
    ``a != b``: all pairs when there are at most ``n_pairs`` of them, otherwise ``n_pairs``
    pairs drawn uniformly at random (with replacement) among the distinct pairs. 1.0 means the
    embedding keeps distances up to a scale (e.g. a rotation); lower values mean distortion.
    A global-structure check of embeddings in the spirit of Trofimov et al. 2020
    (Bioinformatics), §3.

    Parameters
    ----------
    X
        float (n_samples, n_genes), finite: impute missing values first (a distance with NaN
        entries is undefined).
    Z
        float (n_samples, k), finite embedding of the same samples.
    n_pairs
        Number of pairs to sample (>= 2).
    seed
        Seed (int in [0, 2**63) or numpy Generator) of the pair sampling.

    Returns
    -------
    float
        Pearson r in [-1, 1].

    Raises
    ------
    InvalidInputError
        If ``X`` or ``Z`` has NaN or infinite values, there are fewer than 3 samples,
        ``n_pairs < 2``, all distances in one space are equal (correlation undefined), or a
        bad ``seed``.
    ShapeMismatchError
        If ``X`` and ``Z`` have different numbers of rows.

    """
    x = as_matrix(X, "X", hint="impute missing values first (e.g. with the model's reconstruction)")
    z = as_matrix(Z, "Z", hint="the embedding must be complete")
    if x.shape[0] != z.shape[0]:
        raise ShapeMismatchError(f"X has {x.shape[0]} samples but Z has {z.shape[0]}")
    n = x.shape[0]
    if n < 3:
        raise InvalidInputError(f"distance preservation needs at least 3 samples, got {n}")
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int | np.integer) or n_pairs < 2:
        raise InvalidInputError(f"n_pairs must be an integer >= 2, got {n_pairs!r}")
    rng = numpy_rng(seed)  # checked also when every pair is used
    total = n * (n - 1) // 2
    if total <= n_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        i = rng.integers(0, n, size=int(n_pairs))
        j = rng.integers(0, n - 1, size=int(n_pairs))
        j = j + (j >= i)  # uniform over the n - 1 other samples
    dx = _pair_distances(x, i, j)
    dz = _pair_distances(z, i, j)
    if np.ptp(dx) == 0 or np.ptp(dz) == 0:
        raise InvalidInputError(
            "all sampled distances are equal in X or in Z; the correlation is undefined"
        )
    dx -= dx.mean()
    dz -= dz.mean()
    r = float(np.dot(dx, dz) / np.sqrt(np.dot(dx, dx) * np.dot(dz, dz)))
    return float(np.clip(r, -1.0, 1.0))
