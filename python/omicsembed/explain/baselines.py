"""Baselines and model choice for the log-linear exploration of generative models.

Hess, Hackenberg & Binder 2020 (Bioinformatics 36(20):5045-5053):

- :func:`nmf_gene_selection` — genes chosen by non-negative matrix factorisation (Kullback–Leibler
  loss, multiplicative updates) as the ones with the largest loading, the comparison for the
  log-linear selection.
- :func:`energy_statistic` — the Cramér / energy two-sample statistic between synthetic and test
  data on their first principal components, used to choose training epochs and initialisations
  (the smaller, the closer the synthetic data are to unseen data).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.distance import cdist
from sklearn.decomposition import NMF, PCA

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = ["energy_statistic", "nmf_gene_selection"]


def nmf_gene_selection(
    X: ArrayLike,
    n_select: int,
    *,
    n_components: int = 10,
    max_iter: int = 500,
    seed: int = 0,
) -> NDArray[np.int64]:
    """Select genes by their maximal NMF loading.

    Fits ``X ≈ W H`` (scikit-learn :class:`~sklearn.decomposition.NMF`,
    ``beta_loss="kullback-leibler"``, ``solver="mu"``) and ranks genes by their largest loading
    over the components, ``max_k H[k, j]``.

    Parameters
    ----------
    X
        (n, p) non-negative data, e.g. dichotomised expression.
    n_select
        Number of genes to return (1 ≤ n_select ≤ p).
    n_components
        Number of NMF components.
    max_iter
        Iteration cap of the multiplicative updates.
    seed
        Seed of the initialisation.

    Returns
    -------
    np.ndarray
        int64 (n_select,) gene indices, largest loading first.

    Raises
    ------
    InvalidInputError
        Negative or non-finite values, or ``n_select`` out of range.

    """
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2:
        raise ShapeMismatchError(f"X must be 2-D (cells × genes), got shape {matrix.shape}")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise InvalidInputError("NMF needs finite, non-negative values")
    if not 1 <= n_select <= matrix.shape[1]:
        raise InvalidInputError(f"n_select must be in [1, {matrix.shape[1]}], got {n_select}")
    model = NMF(
        n_components=n_components,
        beta_loss="kullback-leibler",
        solver="mu",
        init="nndsvda",
        max_iter=max_iter,
        random_state=seed,
    )
    model.fit(matrix)
    loading = model.components_.max(axis=0)
    return np.argsort(-loading, kind="stable")[:n_select].astype(np.int64)


def energy_statistic(
    synthetic: ArrayLike,
    test: ArrayLike,
    *,
    n_components: int = 5,
    max_samples: int = 2000,
    seed: int = 0,
) -> float:
    """Energy (Cramér) two-sample statistic on the first principal components.

    ``E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖`` (Székely & Rizzo 2004) between synthetic cells X
    and test cells Y, both projected on the first ``n_components`` principal components of the
    test data. E ≥ 0 and is 0 only for equal distributions.

    Parameters
    ----------
    synthetic, test
        (N, p) and (n, p) data on the same genes.
    n_components
        Principal components used (the paper uses 5).
    max_samples
        Each set is subsampled (without replacement, seeded) to at most this many cells, which
        keeps the pairwise distances affordable.
    seed
        Seed of the subsampling.

    Returns
    -------
    float
        The statistic (≥ 0, up to rounding of the plug-in estimate).

    """
    x = np.asarray(synthetic, dtype=np.float64)
    y = np.asarray(test, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ShapeMismatchError(f"need 2-D data on the same genes, got {x.shape} and {y.shape}")
    if min(x.shape[0], y.shape[0]) < 2:
        raise InvalidInputError("each data set needs at least two cells")
    rng = np.random.default_rng(seed)
    x = x[rng.permutation(x.shape[0])[:max_samples]]
    y = y[rng.permutation(y.shape[0])[:max_samples]]
    pca = PCA(n_components=min(n_components, y.shape[0], y.shape[1]), random_state=seed).fit(y)
    x, y = pca.transform(x), pca.transform(y)
    between = cdist(x, y).mean()
    within_x = cdist(x, x).sum() / (x.shape[0] * (x.shape[0] - 1))
    within_y = cdist(y, y).sum() / (y.shape[0] * (y.shape[0] - 1))
    return float(2.0 * between - within_x - within_y)
