"""Label transfer from observed to synthetic cells by exact patterns of selected genes.

Hess, Hackenberg & Binder 2020 (Bioinformatics 36(20):5045-5053), §2.6: a synthetic cell gets
the label of an observed cell whose dichotomised expression in the selected genes equals its
own; a synthetic cell whose pattern no observed cell has gets a label drawn uniformly from the
distinct labels (as ``annotatesamplesbypattern`` of the authors' patternextractor.jl, which
fills unmatched cells with ``rand(unique(labels))``). Where several observed cells match, one is
drawn at random (the authors' dictionary keeps the last one; drawing at random removes that
dependence on cell order). If the selected genes carry what the generative model learned about
cell types, the transferred labels form compact clusters of the synthetic cells, measured by
the Davies–Bouldin index in the first two principal components; gene sets of the same size drawn
at random are the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from omicsembed._memory import check_memory
from omicsembed._seeds import TORCH_SEEDS, numpy_rng, seed_int
from omicsembed.evaluate._checks import check_count
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = [
    "LabelTransferRanking",
    "davies_bouldin",
    "gene_set_rank",
    "label_transfer_davies_bouldin",
    "principal_components_joint",
    "rank_against_random_gene_sets",
    "transfer_labels",
]


def _binary(matrix: ArrayLike, what: str) -> NDArray[np.uint8]:
    array = np.asarray(matrix)
    if array.ndim != 2:
        raise ShapeMismatchError(f"{what} must be 2-D (cells × genes), got shape {array.shape}")
    if not np.isin(array, (0, 1)).all():
        column = int(np.flatnonzero(~np.isin(array, (0, 1)).all(axis=0))[0])
        raise InvalidInputError(
            f"{what} must be binary (0/1); column {column} is not — dichotomise first "
            "(omicsembed.pp.dichotomize)"
        )
    return array.astype(np.uint8, copy=False)


def _gene_indices(genes: ArrayLike) -> NDArray[np.int64]:
    """Return ``genes`` as int64 indices.

    Whole-number floats pass; a boolean mask and fractions do not (they would become indices
    0/1 or be truncated).
    """
    given = np.asarray(genes).ravel()
    if given.dtype == np.bool_:
        raise InvalidInputError(
            "genes must be indices of the selected genes, not a boolean mask (use "
            "numpy.flatnonzero(mask))"
        )
    if given.dtype.kind == "O":
        try:
            given = given.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"genes must be integer indices, got {genes!r}") from error
    if given.dtype.kind == "f" and not (np.isfinite(given) & (given == np.round(given))).all():
        raise InvalidInputError(f"genes must be integer indices, got {given}")
    if given.dtype.kind not in "iuf":
        raise InvalidInputError(f"genes must be integer indices, got dtype {given.dtype}")
    return given.astype(np.int64)


def _pattern_codes(binary: NDArray[np.uint8], genes: NDArray[np.int64]) -> NDArray[np.int64]:
    if genes.size > 62:
        raise InvalidInputError(f"at most 62 selected genes are supported, got {genes.size}")
    weights = np.left_shift(np.int64(1), np.arange(genes.size, dtype=np.int64))
    return binary[:, genes].astype(np.int64) @ weights


def transfer_labels(
    observed: ArrayLike,
    labels: ArrayLike,
    synthetic: ArrayLike,
    genes: ArrayLike,
    *,
    seed: int | np.random.Generator = 0,
) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """Give every synthetic cell the label of an observed cell with the same pattern.

    Parameters
    ----------
    observed
        (n, p) binary observed cells.
    labels
        (n,) labels of the observed cells (no missing values).
    synthetic
        (N, p) binary synthetic cells.
    genes
        Indices of the selected genes (at most 62).
    seed
        Seed of the random choices (among matching cells; for unmatched cells): an int in
        [0, 2**63) or a numpy Generator.

    Returns
    -------
    labels, matched
        (N,) transferred labels (object array) and (N,) whether a matching observed cell existed.

    Raises
    ------
    InvalidInputError
        Non-binary data, no observed or no synthetic cells, missing labels, bad gene indices.
    ShapeMismatchError
        Shapes that disagree.

    """
    observed_binary, label_codes, label_values, synthetic_binary, gene_index = _checked(
        observed, labels, synthetic, genes
    )
    codes, matched = _transfer_codes(
        observed_binary,
        label_codes,
        label_values.size,
        synthetic_binary,
        gene_index,
        numpy_rng(seed),
    )
    return label_values[codes], matched


# observed cells, label codes, distinct labels, synthetic cells, gene indices
_Checked = tuple[
    NDArray[np.uint8], NDArray[np.int64], NDArray[np.object_], NDArray[np.uint8], NDArray[np.int64]
]


def _checked(
    observed: ArrayLike,
    labels: ArrayLike,
    synthetic: ArrayLike,
    genes: ArrayLike,
    *,
    min_labels: int = 1,
) -> _Checked:
    """Validate the inputs of a label transfer; labels become codes into distinct values.

    ``min_labels``: distinct labels needed (2 where the transferred labels are clustered: a
    Davies–Bouldin index of one cluster does not exist).
    """
    observed_binary = _binary(observed, "observed")
    synthetic_binary = _binary(synthetic, "synthetic")
    for cells, name in ((observed_binary, "observed"), (synthetic_binary, "synthetic")):
        if cells.shape[0] == 0:
            raise InvalidInputError(f"there are no {name} cells to transfer labels between")
    if observed_binary.shape[1] != synthetic_binary.shape[1]:
        raise ShapeMismatchError(
            f"observed has {observed_binary.shape[1]} genes, synthetic {synthetic_binary.shape[1]}"
        )
    label_array = np.asarray(labels, dtype=object)
    if label_array.shape != (observed_binary.shape[0],):
        raise ShapeMismatchError(
            f"labels must have one entry per observed cell ({observed_binary.shape[0]}), "
            f"got shape {label_array.shape}"
        )
    missing = pd.isna(label_array)
    if missing.any():
        raise InvalidInputError(
            f"labels are missing for observed cells {np.flatnonzero(missing)[:5]}"
        )
    gene_index = _gene_indices(genes)
    if (
        gene_index.size == 0
        or (gene_index < 0).any()
        or (gene_index >= observed_binary.shape[1]).any()
        or np.unique(gene_index).size != gene_index.size
    ):
        raise InvalidInputError(
            f"genes must be 1 to 62 distinct indices in [0, {observed_binary.shape[1]}), got "
            f"{gene_index}"
        )
    codes, values = pd.factorize(label_array, sort=True)
    if len(values) < min_labels:
        raise InvalidInputError(
            f"the observed cells carry {len(values)} distinct label(s) {list(values)}; the "
            f"Davies–Bouldin index of transferred labels needs at least {min_labels}"
        )
    return (
        observed_binary,
        codes.astype(np.int64),
        np.asarray(values, dtype=object),
        synthetic_binary,
        gene_index,
    )


def _transfer_codes(
    observed: NDArray[np.uint8],
    label_codes: NDArray[np.int64],
    n_labels: int,
    synthetic: NDArray[np.uint8],
    genes: NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    observed_codes = _pattern_codes(observed, genes)
    synthetic_codes = _pattern_codes(synthetic, genes)
    order = np.argsort(observed_codes, kind="stable")
    unique, starts, counts = np.unique(observed_codes[order], return_index=True, return_counts=True)
    position = np.minimum(np.searchsorted(unique, synthetic_codes), unique.size - 1)
    matched = unique[position] == synthetic_codes
    draw = starts[position] + np.floor(rng.random(synthetic_codes.size) * counts[position]).astype(
        np.int64
    )
    result = np.where(matched, label_codes[order[draw]], 0)
    result[~matched] = rng.integers(0, n_labels, int((~matched).sum()))
    return result, matched


def davies_bouldin(points: ArrayLike, codes: ArrayLike) -> float:
    """Davies–Bouldin index of integer cluster codes, vectorised.

    The same value as :func:`sklearn.metrics.davies_bouldin_score` (Davies & Bouldin 1979;
    tested against it), about 40 times faster for a few thousand 2-D points, which matters when
    thousands of label transfers are scored. Lower is better; 0 when all clusters collapse.

    Parameters
    ----------
    points
        (N, d) coordinates.
    codes
        (N,) non-negative integer cluster codes (unused codes are ignored).

    Returns
    -------
    float
        The index, or NaN with fewer than two clusters.

    """
    x = np.asarray(points, dtype=np.float64)
    raw = np.asarray(codes, dtype=np.int64)
    present, cluster = np.unique(raw, return_inverse=True)
    if present.size < 2:
        return float("nan")
    sizes = np.bincount(cluster).astype(np.float64)
    centroids = np.stack(
        [np.bincount(cluster, weights=x[:, k]) / sizes for k in range(x.shape[1])], axis=1
    )
    spread = np.bincount(cluster, weights=np.linalg.norm(x - centroids[cluster], axis=1)) / sizes
    separation = cdist(centroids, centroids)
    if np.allclose(spread, 0) or np.allclose(separation, 0):
        return 0.0
    separation[separation == 0] = np.inf
    return float(np.mean(np.max((spread[:, None] + spread[None, :]) / separation, axis=1)))


def principal_components_joint(
    observed: ArrayLike, synthetic: ArrayLike, *, n_components: int = 2
) -> NDArray[np.float64]:
    """First principal components of the synthetic cells in the jointly standardised space.

    Observed and synthetic cells are stacked, every gene is standardised (mean 0, sd 1 over all
    cells; constant genes are left at 0) and PCA is fitted on the stack; the scores of the
    synthetic cells are returned, (N, n_components). The projection does not depend on any gene
    selection, so Davies–Bouldin indices of different selections are comparable.

    Raises
    ------
    InvalidInputError
        Fewer genes or cells than ``n_components``.

    """
    stacked = np.vstack([np.asarray(observed, float), np.asarray(synthetic, float)])
    if min(stacked.shape) < n_components:
        raise InvalidInputError(
            f"{n_components} principal components need at least {n_components} genes and "
            f"cells; the data have {stacked.shape[1]} genes and {stacked.shape[0]} cells"
        )
    sd = stacked.std(axis=0)
    standardised = (stacked - stacked.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    scores = PCA(n_components=n_components, random_state=0).fit_transform(standardised)
    return scores[np.asarray(observed).shape[0] :]


def label_transfer_davies_bouldin(
    observed: ArrayLike,
    labels: ArrayLike,
    synthetic: ArrayLike,
    genes: ArrayLike,
    *,
    components: NDArray[np.float64] | None = None,
    n_transfer_seeds: int = 10,
    seed: int = 0,
) -> float:
    """Mean Davies–Bouldin index of transferred labels over ``n_transfer_seeds`` transfers.

    Lower is better (compact, well separated label clusters of synthetic cells). The label
    transfer is random (ties between matching cells, unmatched cells), so one transfer is a
    noisy score; averaging over seeds ``seed, seed + 1, ...`` makes gene sets comparable.

    Parameters
    ----------
    observed, labels, synthetic, genes
        As in :func:`transfer_labels`.
    components
        Precomputed :func:`principal_components_joint` of the synthetic cells (recomputed when
        None).
    n_transfer_seeds
        Number of random transfers averaged (≥ 1).
    seed
        First transfer seed (int in [0, 2**63)).

    Returns
    -------
    float
        Mean index (≥ 0). Transfers that produce a single label score NaN and are skipped; NaN
        if all do.

    Raises
    ------
    InvalidInputError
        As :func:`transfer_labels`, and if the observed cells carry fewer than two distinct
        labels or ``n_transfer_seeds < 1``.
    ShapeMismatchError
        Shapes that disagree.

    """
    checked = _checked(observed, labels, synthetic, genes, min_labels=2)
    scores = (
        components if components is not None else principal_components_joint(checked[0], checked[3])
    )
    return _mean_index(checked, checked[4], scores, n_transfer_seeds, seed)


def _mean_index(
    checked: _Checked,
    gene_index: NDArray[np.int64],
    scores: NDArray[np.float64],
    n_transfer_seeds: int,
    seed: int,
) -> float:
    """:func:`label_transfer_davies_bouldin` of valid genes on inputs :func:`_checked` once."""
    if n_transfer_seeds < 1:
        raise InvalidInputError(f"n_transfer_seeds must be ≥ 1, got {n_transfer_seeds}")
    seed = seed_int(seed, below=TORCH_SEEDS)
    observed_binary, label_codes, values, synthetic_binary, _ = checked
    indices = [
        davies_bouldin(
            scores,
            _transfer_codes(
                observed_binary,
                label_codes,
                values.size,
                synthetic_binary,
                gene_index,
                np.random.default_rng(seed + offset),
            )[0],
        )
        for offset in range(n_transfer_seeds)
    ]
    finite = [value for value in indices if np.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass(frozen=True)
class LabelTransferRanking:
    """Davies–Bouldin index of a selected gene set against random gene sets of the same size.

    Attributes
    ----------
    selected_index
        Mean index of the selected genes.
    random_indices
        (n_random,) mean indices of the random gene sets.
    rank
        1 + number of random sets with a strictly lower (better) index: 1 means better than
        every random set. A set whose transfers never gave two labels (index NaN) counts as
        worse than every set with an index.
    beaten
        Number of random sets with a strictly higher (worse) index than the selected set.

    """

    selected_index: float
    random_indices: NDArray[np.float64]
    rank: int
    beaten: int

    def to_dict(self) -> dict[str, float | int]:
        """Headline numbers (without the per-set indices)."""
        return {
            "selected_index": self.selected_index,
            "rank": self.rank,
            "beaten": self.beaten,
            "n_random": int(self.random_indices.size),
            "random_median": float(np.nanmedian(self.random_indices)),
        }


def check_ranking_memory(n_random: int) -> None:
    """Refuse ``n_random`` random gene sets whose scores exceed this machine's memory.

    Raises
    ------
    InvalidInputError
        Beyond the physical memory (each score a Python float in a list, then a float64).

    """
    check_memory(40 * int(n_random), f"the scores of {int(n_random):,} gene sets")


def rank_against_random_gene_sets(
    observed: ArrayLike,
    labels: ArrayLike,
    synthetic: ArrayLike,
    genes: ArrayLike,
    *,
    n_random: int = 100,
    n_transfer_seeds: int = 10,
    seed: int = 0,
) -> LabelTransferRanking:
    """Rank the selected genes' label-transfer index among random gene sets (§2.6).

    Every gene set — the selected one and ``n_random`` random sets of the same size drawn
    without replacement from all genes — is scored with the same transfer seeds
    (:func:`label_transfer_davies_bouldin`).

    Parameters
    ----------
    observed, labels, synthetic, genes
        As in :func:`transfer_labels`; the labels must have at least two distinct values.
    n_random
        Random gene sets (paper: 100).
    n_transfer_seeds
        Transfers averaged per gene set (≥ 1).
    seed
        Seed of the random gene sets and first transfer seed (int in [0, 2**63), or a numpy
        Generator to draw one from).

    Returns
    -------
    LabelTransferRanking

    Raises
    ------
    InvalidInputError
        As :func:`label_transfer_davies_bouldin`, and ``n_random`` beyond this machine's
        memory.
    ShapeMismatchError
        Shapes that disagree.

    """
    check_count("n_random", n_random, 1)
    check_count("n_transfer_seeds", n_transfer_seeds, 1)
    check_ranking_memory(n_random)
    # one int for every gene set (a Generator would give each set other transfer seeds)
    seed = seed_int(seed, below=TORCH_SEEDS)
    # validated once for all gene sets (the random ones are valid indices by construction)
    checked = _checked(observed, labels, synthetic, genes, min_labels=2)
    gene_index = checked[4]
    n_genes = checked[0].shape[1]
    components = principal_components_joint(checked[0], checked[3])

    def score(gene_set: NDArray[np.int64]) -> float:
        return _mean_index(checked, gene_set, components, n_transfer_seeds, seed)

    selected = score(gene_index)
    rng = np.random.default_rng(seed)
    # each random set is drawn, then scored (scoring does not use ``rng``)
    random_indices = np.array(
        [score(rng.choice(n_genes, gene_index.size, replace=False)) for _ in range(n_random)]
    )
    rank, beaten = gene_set_rank(selected, random_indices)
    return LabelTransferRanking(
        selected_index=selected, random_indices=random_indices, rank=rank, beaten=beaten
    )


def gene_set_rank(selected_index: float, random_indices: ArrayLike) -> tuple[int, int]:
    """Rank of a gene set's index among random sets' (lower index: better; §2.6).

    A NaN index (no transfer gave two labels) is the worst outcome, not an incomparable
    one: below every set with an index.

    Returns
    -------
    rank : int
        1 + random sets with a strictly lower index (1: better than every one).
    beaten : int
        Random sets with a strictly higher index.

    """
    worst = np.nan_to_num(np.asarray(random_indices, dtype=np.float64), nan=np.inf)
    mine = np.inf if np.isnan(selected_index) else float(selected_index)
    return 1 + int(np.sum(worst < mine)), int(np.sum(worst > mine))
