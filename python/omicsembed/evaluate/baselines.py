"""Baseline embeddings to compare learnt embeddings against."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from omicsembed._seeds import SKLEARN_SEEDS, seed_int
from omicsembed.evaluate._checks import as_matrix
from omicsembed.exceptions import InvalidInputError

__all__ = ["pca_embedding"]


def pca_embedding(
    X: ArrayLike,
    n_components: int,
    seed: int | np.random.Generator = 0,
    *,
    svd_solver: str = "auto",
) -> NDArray[np.float64]:
    """Principal-component scores of ``X``: the same-dimension linear baseline.

    Trofimov et al. 2020 (Bioinformatics), §3 compare factorized embeddings with PCA
    embeddings of the same dimension. Genes are centred (not scaled) by
    :class:`sklearn.decomposition.PCA`; signs follow scikit-learn's deterministic convention.

    Parameters
    ----------
    X
        float (n_samples, n_genes), finite (impute missing values first).
    n_components
        Embedding dimension, ``1 <= n_components <= min(n_samples, n_genes)``.
    seed
        Seed (int in [0, 2**32) or numpy Generator) for the randomized / ARPACK solvers; the
        exact solvers ignore it.
    svd_solver
        Passed to :class:`~sklearn.decomposition.PCA`.

    Returns
    -------
    numpy.ndarray
        float64 (n_samples, n_components), columns ordered by decreasing explained variance.

    Raises
    ------
    InvalidInputError
        If ``X`` has NaN or infinite values or ``n_components`` is out of range.

    """
    from sklearn.decomposition import PCA

    x = as_matrix(X, "X", hint="impute missing values before PCA")
    limit = min(x.shape)
    if (
        isinstance(n_components, bool)
        or not isinstance(n_components, int | np.integer)
        or not 1 <= n_components <= limit
    ):
        raise InvalidInputError(
            f"n_components must be an integer between 1 and min(n_samples, n_genes)={limit}, "
            f"got {n_components!r}"
        )
    pca = PCA(
        n_components=int(n_components),
        svd_solver=svd_solver,
        random_state=seed_int(seed, below=SKLEARN_SEEDS),
    )
    return np.asarray(pca.fit_transform(x), dtype=np.float64)
