"""Top patterns, Jensen–Shannon distances and the pattern map (PatternsByLogLin.jl)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon, pdist, squareform

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.explain.patterns import (
    PatternMap,
    classical_mds,
    jensen_shannon,
    pattern_map,
    top_patterns,
)


def rows(*patterns: str, repeats: list[int]) -> np.ndarray:
    return np.array(
        [[int(c) for c in p] for p, k in zip(patterns, repeats, strict=True) for _ in range(k)],
        dtype=np.uint8,
    )


# --- top_patterns ------------------------------------------------------------------------------


def test_top_patterns_counts_and_order() -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((2000, 4)) < np.array([0.2, 0.5, 0.7, 0.4])).astype(np.uint8)
    patterns, counts = top_patterns(X, 5)
    truth = Counter(map(tuple, X.tolist()))
    assert [truth[tuple(p)] for p in patterns.tolist()] == counts.tolist()
    fifth = sorted(truth.values(), reverse=True)[4]
    assert set(map(tuple, patterns.tolist())) == {p for p, c in truth.items() if c >= fifth}
    assert np.all(np.diff(counts) <= 0)
    assert patterns.dtype == np.uint8 and counts.dtype == np.int64


def test_top_patterns_keeps_ties_sorted_by_pattern() -> None:
    X = rows("110", "011", "000", "101", "111", repeats=[5, 3, 3, 3, 1])
    patterns, counts = top_patterns(X, 2)
    # the 2nd largest count is 3, shared by three patterns: all kept, ties in pattern order
    assert counts.tolist() == [5, 3, 3, 3]
    assert patterns.tolist() == [[1, 1, 0], [0, 0, 0], [0, 1, 1], [1, 0, 1]]


def test_top_patterns_lists_unobserved_when_too_few_occur() -> None:
    X = rows("01", "10", repeats=[4, 2])
    patterns, counts = top_patterns(X, 3)
    # as PatternsByLogLin.toppatterns: the 3rd largest of all 4 cells is 0, so all cells
    assert counts.tolist() == [4, 2, 0, 0]
    assert patterns.tolist() == [[0, 1], [1, 0], [0, 0], [1, 1]]
    patterns, counts = top_patterns(X, 3, include_unobserved=False)
    assert counts.tolist() == [4, 2]


def test_top_patterns_errors() -> None:
    with pytest.raises(InvalidInputError, match=r"X_selected\[0, 1\]"):
        top_patterns(np.array([[0, 2]]), 1)
    with pytest.raises(InvalidInputError):
        top_patterns(np.zeros((3, 2), np.uint8), 0)
    with pytest.raises(ShapeMismatchError):
        top_patterns(np.zeros(3, np.uint8), 1)
    with pytest.raises(InvalidInputError, match="include_unobserved"):
        top_patterns(np.zeros((3, 20), np.uint8), 2)


# --- Jensen–Shannon ----------------------------------------------------------------------------


def test_jensen_shannon_properties() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        p, q, s = rng.dirichlet(np.ones(6), size=3)
        p[1:][rng.random(5) < 0.3] = 0.0  # zeros (0 · log 0 = 0), p[0] > 0
        p /= p.sum()
        js = jensen_shannon(p, q)
        assert js == pytest.approx(jensen_shannon(q, p), abs=1e-15)
        assert 0.0 <= js <= np.log(2) + 1e-15
        assert np.sqrt(js) == pytest.approx(jensenshannon(p, q), rel=1e-9, abs=1e-12)
        # sqrt(JS) is a metric
        d = [np.sqrt(jensen_shannon(a, b)) for a, b in ((p, q), (q, s), (p, s))]
        assert d[2] <= d[0] + d[1] + 1e-12
        assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon([1.0, 0.0], [0.0, 1.0]) == pytest.approx(np.log(2))


def test_jensen_shannon_errors() -> None:
    with pytest.raises(ShapeMismatchError):
        jensen_shannon([0.5, 0.5], [1.0])
    with pytest.raises(InvalidInputError):
        jensen_shannon([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(InvalidInputError, match="sum to 1"):
        jensen_shannon([0.5, 0.6], [0.5, 0.5])


# --- classical MDS and the pattern map -----------------------------------------------------------


def test_classical_mds_recovers_planar_distances() -> None:
    rng = np.random.default_rng(2)
    points = rng.normal(size=(8, 2))
    distances = squareform(pdist(points))
    coordinates = classical_mds(distances, 2)
    np.testing.assert_allclose(squareform(pdist(coordinates)), distances, atol=1e-10)
    assert classical_mds(np.zeros((1, 1))).shape == (1, 2)
    with pytest.raises(ShapeMismatchError):
        classical_mds(np.zeros((2, 3)))
    for bad in (np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([[0.0, -1.0], [-1.0, 0.0]])):
        with pytest.raises(InvalidInputError, match="symmetric"):
            classical_mds(bad)
    # float32 rounding leaves a distance matrix asymmetric by ~1e-7: that is fine
    rounded = distances.astype(np.float32)
    rounded[0, 1] = np.nextafter(rounded[0, 1], np.float32(np.inf))
    assert classical_mds(rounded, 2).shape == (8, 2)


def test_pattern_map_frequencies_and_distances() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    U = (rng.random((n, 3)) < 0.5).astype(np.uint8)
    # two features follow latent unit 0 (noisily); patterns 00/11 have different latent mixes
    X = np.column_stack([U[:, 0] ^ (rng.random(n) < 0.1), U[:, 0] ^ (rng.random(n) < 0.1)])
    X = X.astype(np.uint8)
    patterns, counts = top_patterns(X, 4)
    result = pattern_map(X, U, patterns)
    assert isinstance(result, PatternMap)
    np.testing.assert_array_equal(result.counts, counts)
    assert not result.empty.any() and result.index.tolist() == [0, 1, 2, 3]
    # frequencies: relative frequencies of the joint latent configurations per pattern
    configs = [tuple(c) for c in result.latent_configurations.tolist()]
    assert configs == sorted(itertools.product((0, 1), repeat=3))
    for row, pattern in enumerate(patterns):
        members = U[(pattern == X).all(axis=1)]
        observed = Counter(map(tuple, members.tolist()))
        want = [observed[c] / len(members) for c in configs]
        np.testing.assert_allclose(result.frequencies[row], want)
    # distances = sqrt(JS) of those distributions (scipy's jensenshannon, natural log)
    for a, b in itertools.combinations(range(len(patterns)), 2):
        want = jensenshannon(result.frequencies[a], result.frequencies[b])
        assert result.distances[a, b] == pytest.approx(want, abs=1e-12)
        assert result.distances[a, b] == result.distances[b, a]
    assert np.all(np.diag(result.distances) == 0)
    assert result.distances.max() <= np.sqrt(np.log(2))
    # 00 and 11 differ most (opposite unit-0 values)
    where = {tuple(p): i for i, p in enumerate(patterns.tolist())}
    far = result.distances[where[(0, 0)], where[(1, 1)]]
    assert far == result.distances.max()
    np.testing.assert_allclose(result.coordinates, classical_mds(result.distances))
    assert result.coordinates.shape == (4, 2)


def test_pattern_map_reports_empty_patterns() -> None:
    X = rows("01", "10", repeats=[30, 20])
    rng = np.random.default_rng(4)
    U = (rng.random((50, 2)) < 0.5).astype(np.uint8)
    patterns, _ = top_patterns(X, 4)  # includes the unobserved 00 and 11
    result = pattern_map(X, U, patterns)
    assert result.counts.tolist() == [30, 20, 0, 0]
    assert result.empty.tolist() == [False, False, True, True]
    assert result.index.tolist() == [0, 1]
    assert result.distances.shape == (2, 2) and result.coordinates.shape == (2, 2)
    assert np.isfinite(result.distances).all() and np.isfinite(result.coordinates).all()
    assert np.all(result.frequencies[2:] == 0)
    only_empty = pattern_map(X, U, np.array([[1, 1]]))
    assert only_empty.empty.tolist() == [True] and only_empty.distances.shape == (0, 0)


def test_pattern_map_errors() -> None:
    X = np.zeros((5, 2), np.uint8)
    U = np.zeros((5, 3), np.uint8)
    with pytest.raises(ShapeMismatchError):
        pattern_map(X, U[:4], np.zeros((1, 2)))
    with pytest.raises(ShapeMismatchError):
        pattern_map(X, U, np.zeros((1, 3)))
    with pytest.raises(InvalidInputError, match=r"U\[0, 0\]"):
        pattern_map(X, U + 3, np.zeros((1, 2)))
    with pytest.raises(InvalidInputError, match="no patterns"):
        pattern_map(X, U, np.zeros((0, 2)))
