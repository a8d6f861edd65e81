"""Benchmarks of embeddings: kNN classification, PCA baseline, reconstruction metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import ortho_group, pearsonr
from sklearn.model_selection import StratifiedShuffleSplit

from omicsembed.datasets import nci60
from omicsembed.evaluate import (
    ClassificationScores,
    distance_preservation,
    knn_classification,
    pca_embedding,
    per_sample_pearson,
)
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError


def clusters(n_per: int, n_classes: int, dim: int, sep: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=sep, size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per)
    return centers[y] + rng.normal(size=(y.size, dim)), y


# ----------------------------------------------------------------------------- kNN
def test_knn_separated_clusters_are_perfect():
    z, y = clusters(30, 4, 5, sep=20.0)
    s = knn_classification(z, y, n_repeats=10)
    assert isinstance(s, ClassificationScores)
    assert s.accuracies.shape == (10,)
    assert s.mean == 1.0 and s.sd == 0.0
    assert s.n_samples == 120 and s.classes == ("0", "1", "2", "3")
    assert s.chance == pytest.approx(0.25)


def test_knn_random_labels_are_at_chance():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(400, 5))
    y = rng.integers(0, 4, size=400)
    s = knn_classification(z, y, n_repeats=20)
    # 20 splits x 80 test samples: sd of the mean accuracy ~ 0.011
    assert abs(s.mean - 0.25) < 0.05
    assert 0 < s.sd < 0.1


def test_knn_matches_brute_force_vote():
    z, y = clusters(15, 3, 2, sep=1.5, seed=5)
    s = knn_classification(z, y, n_neighbors=3, n_repeats=4, seed=11)
    split = StratifiedShuffleSplit(n_splits=4, test_size=0.2, random_state=11)
    for acc, (train, test) in zip(s.accuracies, split.split(z, y), strict=True):
        d = ((z[test, None, :] - z[None, train, :]) ** 2).sum(-1)
        nearest = y[train][np.argsort(d, axis=1, kind="stable")[:, :3]]
        votes = np.stack([(nearest == c).sum(1) for c in range(3)], axis=1)
        assert acc == pytest.approx(np.mean(votes.argmax(1) == y[test]))


def test_knn_drops_missing_and_singletons_and_reports_them():
    z, y = clusters(10, 3, 3, sep=20.0)
    labels = pd.Series(y.astype(str), dtype=object)
    labels[0] = None
    labels[1] = np.nan
    labels[2] = "lonely"
    s = knn_classification(z, labels, n_repeats=3)
    assert s.n_missing_labels == 2
    assert s.dropped_classes == ("lonely",)
    assert s.n_samples == 27
    assert s.mean == 1.0
    d = s.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["dropped_classes"] == ["lonely"] and d["mean"] == 1.0 and len(d["accuracies"]) == 3


def test_knn_categorical_labels_seed_and_generator():
    z, y = clusters(12, 3, 2, sep=1.0, seed=2)
    cat = pd.Categorical(np.array(["a", "b", "c"])[y])
    a = knn_classification(z, cat, seed=4)
    b = knn_classification(z, cat, seed=4)
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    c = knn_classification(z, cat, seed=np.random.default_rng(0))
    assert c.accuracies.shape == (20,)
    assert a.classes == ("a", "b", "c")


def test_knn_on_nci60_pca_beats_chance():
    adata = nci60()
    z = pca_embedding(adata.X, 10)
    s = knn_classification(z, adata.obs["cancer_type"])
    assert s.n_missing_labels == 1 and s.n_samples == 63 and len(s.classes) == 9
    assert s.mean > 3 * s.chance  # measured 0.76 vs chance 0.14


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"labels": np.zeros(20)}, InvalidInputError, "two classes"),
        ({"labels": np.zeros(5)}, ShapeMismatchError, "20 rows"),
        ({"n_neighbors": 0}, InvalidInputError, "n_neighbors"),
        ({"n_neighbors": 17}, InvalidInputError, "exceeds"),
        ({"test_size": 1.5}, InvalidInputError, "test_size"),
        ({"test_size": 0.05}, InvalidInputError, "cannot hold"),
        ({"n_repeats": 0}, InvalidInputError, "n_repeats"),
        ({"seed": 1.5}, InvalidInputError, "seed"),
    ],
)
def test_knn_errors(kwargs, error, message):
    z, y = clusters(10, 2, 2, sep=5.0)
    args = {"labels": y, **kwargs}
    with pytest.raises(error, match=message):
        knn_classification(z, **args)


def test_knn_nan_embedding_error():
    z, y = clusters(10, 2, 2, sep=5.0)
    z[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        knn_classification(z, y)


# ----------------------------------------------------------------------------- PCA baseline
def test_pca_embedding_matches_svd():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 12)) @ np.diag(np.linspace(5, 0.5, 12))
    z = pca_embedding(x, 3)
    xc = x - x.mean(0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    ref = u[:, :3] * s[:3]
    for k in range(3):  # same up to sign
        assert abs(pearsonr(z[:, k], ref[:, k])[0]) == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(np.abs(z), np.abs(ref), atol=1e-9)
    assert np.all(np.diff(z.var(0)) < 0)
    # a full-rank PCA is a rotation of the centred data: distances are exact
    assert distance_preservation(x, pca_embedding(x, 12)) == pytest.approx(1.0, abs=1e-12)


def test_pca_embedding_errors():
    x = np.ones((5, 3))
    with pytest.raises(InvalidInputError, match="n_components"):
        pca_embedding(x, 4)
    x[0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="impute"):
        pca_embedding(x, 2)


# ----------------------------------------------------------------------------- reconstruction
def test_per_sample_pearson_matches_scipy_with_nan():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(25, 40))
    rec = obs + rng.normal(scale=rng.uniform(0.1, 2, size=(25, 1)), size=obs.shape)
    obs[rng.random(obs.shape) < 0.2] = np.nan
    r = per_sample_pearson(obs, rec)
    assert r.shape == (25,) and r.dtype == np.float64
    for i in range(25):
        m = ~np.isnan(obs[i])
        assert r[i] == pytest.approx(pearsonr(obs[i, m], rec[i, m])[0], abs=1e-12)


def test_per_sample_pearson_invariances_and_undefined_rows():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, 10)) * 1e-200  # scale-free even near underflow
    rec = rng.normal(size=(4, 10))
    r = per_sample_pearson(obs, rec)
    np.testing.assert_allclose(per_sample_pearson(obs, 3.0 * rec + 7.0), r, atol=1e-12)
    np.testing.assert_allclose(per_sample_pearson(obs, obs), 1.0, atol=1e-12)
    np.testing.assert_allclose(per_sample_pearson(obs, -obs), -1.0, atol=1e-12)
    obs2 = rng.normal(size=(3, 5))
    obs2[0, 1:] = np.nan  # one observed entry
    obs2[1] = 2.0  # constant
    r2 = per_sample_pearson(obs2, rng.normal(size=(3, 5)))
    assert np.isnan(r2[0]) and np.isnan(r2[1]) and np.isfinite(r2[2])


def test_per_sample_pearson_errors():
    with pytest.raises(ShapeMismatchError, match="shape"):
        per_sample_pearson(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(InvalidInputError, match="reconstructed contains NaN"):
        per_sample_pearson(np.zeros((2, 3)), np.full((2, 3), np.nan))
    with pytest.raises(InvalidInputError, match="infinite"):
        per_sample_pearson(np.full((2, 3), np.inf), np.zeros((2, 3)))


def test_distance_preservation_isometry_and_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 30))
    q = ortho_group.rvs(30, random_state=1)
    assert distance_preservation(x, x @ q) == pytest.approx(1.0, abs=1e-12)
    assert distance_preservation(x, 5 * x @ q + 3) == pytest.approx(1.0, abs=1e-12)
    noisy = distance_preservation(x, x + rng.normal(scale=1.0, size=x.shape))
    noisier = distance_preservation(x, x + rng.normal(scale=3.0, size=x.shape))
    assert 1.0 > noisy > noisier
    assert abs(distance_preservation(x, rng.normal(size=(200, 2)))) < 0.1


def test_distance_preservation_all_pairs_equals_pdist():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 6))
    z = x[:, :2]
    expected = pearsonr(pdist(x), pdist(z))[0]
    assert distance_preservation(x, z, n_pairs=10_000) == pytest.approx(expected, abs=1e-12)
    # sampled pairs estimate the same quantity and are seeded
    a = distance_preservation(x, z, n_pairs=300, seed=1)
    assert a == distance_preservation(x, z, n_pairs=300, seed=1)
    assert a == pytest.approx(expected, abs=0.1)


def test_distance_preservation_errors():
    x = np.random.default_rng(0).normal(size=(10, 3))
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidInputError, match="impute"):
        distance_preservation(bad, x)
    with pytest.raises(ShapeMismatchError, match="samples"):
        distance_preservation(x, x[:5])
    with pytest.raises(InvalidInputError, match="n_pairs"):
        distance_preservation(x, x, n_pairs=1)
    with pytest.raises(InvalidInputError, match="3 samples"):
        distance_preservation(x[:2], x[:2])
    with pytest.raises(InvalidInputError, match="equal"):
        distance_preservation(x, np.zeros((10, 2)))
