"""k-nearest-neighbour classification accuracy of an embedding.

The benchmark of Trofimov et al. 2020 (Bioinformatics), §3: an embedding is good when the
labels of samples (tissue, cancer type) can be predicted from their nearest neighbours in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from omicsembed._seeds import SKLEARN_SEEDS, seed_int
from omicsembed.evaluate._checks import as_matrix, check_count
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = ["ClassificationScores", "knn_classification"]


@dataclass(frozen=True)
class ClassificationScores:
    """Accuracies of a classifier over repeated random splits.

    Attributes
    ----------
    accuracies
        float64 (n_repeats,), test-set accuracy of each split, in [0, 1].
    n_neighbors, test_size, n_repeats, seed
        The settings used.
    n_samples
        Samples used (after dropping missing labels and singleton classes).
    classes
        Class names (as strings) that took part, sorted.
    dropped_classes
        Classes with a single sample, dropped because a stratified split cannot place one
        sample in both the training and the test set (empty when none).
    n_missing_labels
        Samples dropped because their label was missing (NaN / None).
    chance
        Accuracy of always predicting the most frequent class among the samples used — the
        baseline an embedding must beat.

    """

    accuracies: NDArray[np.float64]
    n_neighbors: int
    test_size: float
    n_repeats: int
    seed: int
    n_samples: int
    classes: tuple[str, ...]
    dropped_classes: tuple[str, ...] = field(default=())
    n_missing_labels: int = 0
    chance: float = float("nan")

    @property
    def mean(self) -> float:
        """Mean accuracy over the splits."""
        return float(np.mean(self.accuracies))

    @property
    def sd(self) -> float:
        """Standard deviation of the accuracy over the splits (ddof=1; 0.0 for one split)."""
        if self.accuracies.size < 2:
            return 0.0
        return float(np.std(self.accuracies, ddof=1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary of the scores and settings (lists and plain numbers)."""
        return {
            "metric": "accuracy",
            "classifier": "knn",
            "mean": self.mean,
            "sd": self.sd,
            "accuracies": [float(a) for a in self.accuracies],
            "chance": self.chance,
            "n_neighbors": self.n_neighbors,
            "test_size": self.test_size,
            "n_repeats": self.n_repeats,
            "seed": self.seed,
            "n_samples": self.n_samples,
            "classes": list(self.classes),
            "dropped_classes": list(self.dropped_classes),
            "n_missing_labels": self.n_missing_labels,
        }


def knn_classification(
    embedding: ArrayLike,
    labels: ArrayLike,
    *,
    n_neighbors: int = 5,
    test_size: float = 0.2,
    n_repeats: int = 20,
    seed: int | np.random.Generator = 0,
    metric: str = "euclidean",
) -> ClassificationScores:
    """Accuracy of a k-nearest-neighbour classifier of ``labels`` in an embedding.

    Repeated stratified shuffle splits (:class:`sklearn.model_selection.StratifiedShuffleSplit`):
    for each of ``n_repeats`` splits a :class:`sklearn.neighbors.KNeighborsClassifier` (uniform
    votes, ties go to the first class in sorted order) is fitted on the training samples and
    scored on the test samples. Follows the kNN benchmarks of embeddings of Trofimov et al.
    2020 (Bioinformatics), §3.

    Samples with a missing label (NaN / None) are dropped. Classes with a single sample are
    dropped too (a stratified split needs each class in both sets); both are reported in the
    result (``n_missing_labels``, ``dropped_classes``) instead of warning.

    Parameters
    ----------
    embedding
        float (n_samples, k), finite.
    labels
        (n_samples,) class labels of any type (compared as strings); pandas categoricals
        work.
    n_neighbors
        k, at least 1 and at most the number of training samples.
    test_size
        Fraction in (0, 1) of samples in each test set, or an absolute number (int >= 1).
    n_repeats
        Number of random splits (>= 1).
    seed
        Seed (int in [0, 2**32) or numpy Generator) of the splits; the same seed gives the same
        result.
    metric
        Distance of :class:`~sklearn.neighbors.KNeighborsClassifier` (default Euclidean).

    Returns
    -------
    ClassificationScores
        Per-split accuracies with ``mean``, ``sd``, ``chance`` and ``to_dict()``.

    Raises
    ------
    InvalidInputError
        If the embedding has NaN/infinite values, the options are out of range, fewer than two
        classes remain, or the split is impossible (test set smaller than the number of
        classes, or too few training samples for ``n_neighbors``).
    ShapeMismatchError
        If ``labels`` does not have one entry per row of ``embedding``.

    """
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.neighbors import KNeighborsClassifier

    z = as_matrix(embedding, "embedding", hint="the embedding must be complete")
    lab_arr = np.asarray(labels, dtype=object)
    if lab_arr.ndim != 1:
        raise ShapeMismatchError(f"labels must be 1-D, got shape {lab_arr.shape}")
    lab = pd.Series(lab_arr)
    if lab.shape[0] != z.shape[0]:
        raise ShapeMismatchError(
            f"labels has {lab.shape[0]} entries but embedding has {z.shape[0]} rows"
        )
    check_count("n_neighbors", n_neighbors, 1)
    check_count("n_repeats", n_repeats, 1)
    seed_value = seed_int(seed, below=SKLEARN_SEEDS)

    missing = lab.isna().to_numpy()
    keep = ~missing
    names = lab[keep].astype(str).to_numpy()
    classes, counts = np.unique(names, return_counts=True)
    singletons = classes[counts < 2]
    keep_idx = np.flatnonzero(keep)
    if singletons.size:
        ok = ~np.isin(names, singletons)
        keep_idx, names = keep_idx[ok], names[ok]
        classes, counts = classes[counts >= 2], counts[counts >= 2]
    if classes.size < 2:
        raise InvalidInputError(
            f"kNN classification needs at least two classes with >= 2 samples each; got "
            f"{classes.size} (dropped {int(missing.sum())} missing labels and singleton classes "
            f"{singletons.tolist()})"
        )
    z = z[keep_idx]
    n = z.shape[0]
    y = np.searchsorted(classes, names)

    if isinstance(test_size, bool) or not isinstance(test_size, int | float | np.number):
        raise InvalidInputError(f"test_size must be a number, got {test_size!r}")
    if isinstance(test_size, int | np.integer):
        n_test = int(test_size)
        if not 1 <= n_test < n:
            raise InvalidInputError(f"test_size={n_test} must be between 1 and {n - 1}")
    else:
        if not 0.0 < float(test_size) < 1.0:
            raise InvalidInputError(f"test_size must be in (0, 1), got {test_size}")
        n_test = int(np.ceil(float(test_size) * n))
    n_train = n - n_test
    if n_test < classes.size or n_train < classes.size:
        raise InvalidInputError(
            f"a stratified split of {n} samples into {n_train} training and {n_test} test "
            f"samples cannot hold all {classes.size} classes in both sets; change test_size"
        )
    if n_neighbors > n_train:
        raise InvalidInputError(
            f"n_neighbors={n_neighbors} exceeds the {n_train} training samples of each split"
        )

    splitter = StratifiedShuffleSplit(
        n_splits=int(n_repeats), test_size=test_size, random_state=seed_value
    )
    accuracies = np.empty(int(n_repeats), dtype=np.float64)
    try:
        for i, (train, test) in enumerate(splitter.split(z, y)):
            clf = KNeighborsClassifier(n_neighbors=int(n_neighbors), metric=metric)
            clf.fit(z[train], y[train])
            accuracies[i] = float(np.mean(clf.predict(z[test]) == y[test]))
    except ValueError as exc:
        raise InvalidInputError(f"kNN classification failed: {exc}") from exc

    return ClassificationScores(
        accuracies=accuracies,
        n_neighbors=int(n_neighbors),
        test_size=float(test_size),
        n_repeats=int(n_repeats),
        seed=seed_value,
        n_samples=n,
        classes=tuple(str(c) for c in classes),
        dropped_classes=tuple(str(c) for c in singletons),
        n_missing_labels=int(missing.sum()),
        chance=float(counts.max() / n),
    )
