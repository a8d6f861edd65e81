"""Tau index and tissue-specific Wasserstein distance (omicsembed.stats, Rust kernels)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

from omicsembed import _core, stats
from omicsembed.exceptions import InvalidInputError, OmicsEmbedError, ShapeMismatchError


def scipy_reference(X: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[1], n_groups))
    for j in range(X.shape[1]):
        for c in range(n_groups):
            out[j, c] = wasserstein_distance(X[codes == c, j], X[codes != c, j])
    return out


def assert_matches_scipy(got: np.ndarray, X: np.ndarray, codes: np.ndarray, n_groups: int):
    ref = scipy_reference(X, codes, n_groups)
    scale = max(float(np.max(np.abs(X))), 1e-300)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-13 * scale)


def random_groups(rng: np.random.Generator, n: int, n_groups: int) -> np.ndarray:
    """Unequal group sizes, every group non-empty."""
    weights = rng.dirichlet(np.full(n_groups, 0.7))
    codes = rng.choice(n_groups, size=n, p=weights)
    codes[rng.permutation(n)[:n_groups]] = np.arange(n_groups)
    return codes.astype(np.int64)


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n = draw(st.integers(2, 40))
    m = draw(st.integers(1, 4))
    n_groups = draw(st.integers(2, min(n, 6)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["ties", "continuous", "zeros", "offset", "negative"]))
    if kind == "ties":
        X = rng.integers(0, 4, size=(n, m)) * 0.5
    elif kind == "continuous":
        X = rng.lognormal(size=(n, m))
    elif kind == "zeros":
        X = rng.lognormal(size=(n, m)) * (rng.random((n, m)) < 0.3)
    elif kind == "offset":  # cancellation-prone: tiny spread around a large value
        X = 1e6 + rng.integers(0, 3, size=(n, m)) * rng.random((n, m)) * 1e-3
    else:
        X = rng.normal(size=(n, m)) * 100
    codes = random_groups(rng, n, n_groups)
    return X, codes, n_groups


# --- Wasserstein: agreement with scipy ------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(problems())
def test_wasserstein_matches_scipy_float64(problem):
    X, codes, n_groups = problem
    result = stats.tissue_wasserstein(X, codes)
    # group_codes numbers groups in order of first appearance; map back to the kernel's codes.
    names = np.asarray(result.groups, dtype=np.int64)
    assert_matches_scipy(result.distances[:, np.argsort(names)], X, codes, n_groups)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_wasserstein_matches_scipy_float32(problem):
    X, codes, n_groups = problem
    X32 = X.astype(np.float32)
    got = _core.tissue_wasserstein(X32, codes, n_groups)
    assert got.dtype == np.float64
    assert_matches_scipy(got, X32.astype(np.float64), codes, n_groups)


def test_wasserstein_adversarial_cases():
    rng = np.random.default_rng(7)
    n = 1500
    codes = random_groups(rng, n, 9)
    codes[codes == 8] = 0
    codes[5] = 8  # group 8: a single sample
    X = np.column_stack(
        [
            np.full(n, 3.25),  # constant gene -> exactly 0
            1e6 + rng.integers(0, 2, n) * 1e-4,  # two values, far from 0
            np.where(rng.random(n) < 0.9, 0.0, rng.lognormal(size=n)),  # mostly zeros
            np.repeat(np.arange(n // 3), 3).astype(float)[rng.permutation(n)],  # triples of ties
            rng.normal(size=n) * 1e-200,  # tiny magnitudes
            np.sort(rng.normal(size=n)),  # group-structured
        ]
    )
    got = _core.tissue_wasserstein(X, codes, 9)
    assert np.all(got[0] == 0.0)
    assert_matches_scipy(got, X, codes, 9)
    # Fortran order reads the same numbers.
    np.testing.assert_array_equal(_core.tissue_wasserstein(np.asfortranarray(X), codes, 9), got)


# --- Wasserstein: invariants ----------------------------------------------------------------


def test_two_groups_symmetric_and_equivariant():
    rng = np.random.default_rng(3)
    X = rng.lognormal(size=(300, 20))
    codes = random_groups(rng, 300, 2)
    d = _core.tissue_wasserstein(X, codes, 2)
    # Group 0 vs rest is group 1 vs group 0: W is symmetric.
    np.testing.assert_allclose(d[:, 0], d[:, 1], rtol=1e-12)
    np.testing.assert_allclose(_core.tissue_wasserstein(X, 1 - codes, 2), d[:, ::-1], rtol=0)
    # Scale equivariance W(aX) = |a| W(X), shift invariance W(X + b) = W(X).
    np.testing.assert_allclose(_core.tissue_wasserstein(2.5 * X, codes, 2), 2.5 * d, rtol=1e-12)
    np.testing.assert_allclose(_core.tissue_wasserstein(-X, codes, 2), d, rtol=1e-12)
    np.testing.assert_allclose(_core.tissue_wasserstein(X + 1e3, codes, 2), d, rtol=1e-9)


def test_relabelling_groups_permutes_columns():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 8))
    codes = random_groups(rng, 200, 5)
    perm = rng.permutation(5)
    d = _core.tissue_wasserstein(X, codes, 5)
    d_perm = _core.tissue_wasserstein(X, perm[codes], 5)
    np.testing.assert_array_equal(d_perm[:, perm], d)


def test_planted_tissue_specific_gene():
    rng = np.random.default_rng(5)
    n, m = 600, 50
    labels = np.array(["liver", "brain", "lung"])[rng.integers(0, 3, n)]
    X = rng.lognormal(size=(n, m))
    X[labels == "brain", 7] += 10.0  # gene 7 is brain-specific
    result = stats.tissue_wasserstein(X, labels)
    assert result.top_group()[7] == "brain"
    brain = list(result.groups).index("brain")
    assert np.argmax(result.distances[:, brain]) == 7
    assert result.distances[7, brain] == pytest.approx(10.0, rel=0.05)
    specific = result.specific_genes(65.0)
    assert specific.shape == (m, 3) and specific[7, brain]
    # Strictly above the (interpolated) 65th percentile: the top 18 of the 50 genes of every
    # group (the threshold lies between the 32nd and 33rd smallest; no ties here).
    np.testing.assert_array_equal(specific.sum(axis=0), [18, 18, 18])
    thresholds = np.percentile(result.distances, 65.0, axis=0)
    np.testing.assert_array_equal(specific, result.distances > thresholds)
    frame = result.to_frame([f"g{j}" for j in range(m)])
    assert list(frame.columns) == list(result.groups) and frame.index[7] == "g7"
    np.testing.assert_array_equal(frame.to_numpy(), result.distances)
    with pytest.raises(InvalidInputError):
        result.specific_genes(101)
    with pytest.raises(ShapeMismatchError):
        result.to_frame(["a"])


def test_deterministic_and_independent_of_gene_blocking():
    """Results do not depend on how genes are split between threads/blocks."""
    rng = np.random.default_rng(6)
    X = rng.lognormal(size=(250, 70)).astype(np.float32)
    X[X < 0.8] = 0
    codes = random_groups(rng, 250, 4)
    full = _core.tissue_wasserstein(X, codes, 4)
    np.testing.assert_array_equal(_core.tissue_wasserstein(X, codes, 4), full)
    one_at_a_time = np.vstack(
        [_core.tissue_wasserstein(np.ascontiguousarray(X[:, [j]]), codes, 4) for j in range(70)]
    )
    np.testing.assert_array_equal(one_at_a_time, full)
    np.testing.assert_array_equal(
        _core.tau_index(X, codes, 4)[:5], _core.tau_index(X[:, :5].copy(), codes, 4)
    )


# --- Tau -------------------------------------------------------------------------------------


def test_tau_hand_computed():
    groups = ["a", "a", "b", "c"]
    X = np.array(
        [
            [5.0, 2.0, 0.0, 1.0],
            [3.0, 2.0, 0.0, 3.0],
            [0.0, 2.0, 0.0, 4.0],
            [0.0, 2.0, 0.0, 1.0],
        ]
    )
    for dtype in (np.float64, np.float32):
        tau = stats.tau_index(X.astype(dtype), groups)
        assert tau.dtype == np.float64 and tau.shape == (4,)
        assert tau[0] == 1.0  # expressed in one group only
        assert tau[1] == 0.0  # uniform
        assert np.isnan(tau[2])  # all zero
        # means 2, 4, 1 -> x̂ = 0.5, 1, 0.25 -> tau = (0.5 + 0 + 0.75) / 2
        assert tau[3] == pytest.approx(0.625, rel=1e-15)


def test_tau_matches_numpy_and_is_scale_invariant():
    rng = np.random.default_rng(8)
    X = rng.lognormal(size=(120, 30))
    labels = rng.choice(["x", "y", "z", "w"], size=120)
    codes, names = stats.group_codes(labels)
    means = np.vstack([X[codes == c].mean(axis=0) for c in range(len(names))])
    expected = (1 - means / means.max(axis=0)).sum(axis=0) / (len(names) - 1)
    tau = stats.tau_index(X, labels)
    np.testing.assert_allclose(tau, expected, rtol=1e-13)
    np.testing.assert_allclose(stats.tau_index(7.0 * X, labels), tau, rtol=1e-13)
    assert np.all((tau >= 0) & (tau <= 1))


# --- labels ----------------------------------------------------------------------------------


def test_group_codes():
    codes, names = stats.group_codes(["b", "a", "b", "c"])
    np.testing.assert_array_equal(codes, [0, 1, 0, 2])
    np.testing.assert_array_equal(names, ["b", "a", "c"])
    assert codes.dtype == np.int64
    cat = pd.Categorical(["x", "y", "x"], categories=["y", "x"])
    codes, names = stats.group_codes(pd.Series(cat))
    np.testing.assert_array_equal(codes, [1, 0, 1])
    np.testing.assert_array_equal(names, ["y", "x"])
    codes, names = stats.group_codes(np.array([10, 3, 10]))
    np.testing.assert_array_equal(names, [10, 3])


# --- errors ----------------------------------------------------------------------------------


def _raises(cls: type[Exception], match: str | None = None):
    assert issubclass(cls, OmicsEmbedError) and issubclass(cls, ValueError)
    return pytest.raises(cls, match=match)


@pytest.mark.parametrize("func", [stats.tau_index, stats.tissue_wasserstein])
def test_errors(func):
    X = np.abs(np.random.default_rng(0).normal(size=(6, 4)))
    groups = ["a", "b", "a", "b", "c", "c"]
    bad = X.copy()
    bad[4, 2] = np.nan
    with _raises(InvalidInputError, "NaN at row 4, column 2"):
        func(bad, groups)
    bad[4, 2] = np.inf
    with _raises(InvalidInputError, "infinite value at row 4, column 2"):
        func(bad, groups)
    with _raises(InvalidInputError, "missing label"):
        func(X, ["a", "b", None, "b", "c", "c"])
    with _raises(InvalidInputError, "missing label"):
        func(X, [1.0, 2.0, np.nan, 1.0, 2.0, 1.0])
    unused = pd.Categorical(groups, categories=["a", "b", "c", "d"])
    with _raises(InvalidInputError, r"\['d'\] have no samples"):
        func(X, unused)
    with _raises(InvalidInputError, "at least 2 groups"):
        func(X, ["a"] * 6)
    with _raises(ShapeMismatchError, "5 labels but X has 6 rows"):
        func(X, groups[:5])
    with _raises(ShapeMismatchError, "2-D"):
        func(X[:, 0], groups)
    with _raises(ShapeMismatchError, "2-D"):
        func(X[..., None], groups)
    with _raises(ShapeMismatchError, "1-D"):
        func(X, np.array(groups).reshape(2, 3))
    with _raises(InvalidInputError, "empty"):
        func(X[:, :0], groups)
    with _raises(InvalidInputError, "empty"):
        func(X[:0], [])
    with _raises(InvalidInputError, "needs an AnnData"):
        func(X, "tissue")
    with _raises(InvalidInputError, "numeric"):
        func(X.astype(str), groups)


@pytest.mark.parametrize("func", [stats.tau_index, stats.tissue_wasserstein])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bad_value_located_in_any_layout(func, order, dtype):
    X = np.ones((300, 100), dtype=dtype, order=order)
    X[211, 77] = np.nan
    X[250, 99] = np.inf
    groups = np.arange(300) % 3
    with _raises(InvalidInputError, "NaN at row 211, column 77"):
        func(X, groups)


def test_tau_rejects_negative_values():
    X = np.ones((4, 3))
    X[2, 1] = -0.5
    with _raises(InvalidInputError, r"negative value \(-0.5\) at row 2, column 1.*non-negative"):
        stats.tau_index(X, ["a", "b", "a", "b"])
    # The EMD is defined for any real values.
    stats.tissue_wasserstein(X, ["a", "b", "a", "b"])


def test_kernel_rejects_bad_codes_and_dtypes():
    X = np.ones((4, 2))
    for func in (_core.tau_index, _core.tissue_wasserstein):
        with _raises(InvalidInputError, "row 1"):
            func(X, np.array([0, -1, 1, 1]), 2)
        with _raises(InvalidInputError, "group 1 has no samples"):
            func(X, np.array([0, 2, 0, 2]), 3)
        with _raises(InvalidInputError, "float32 or float64"):
            func(X.astype(np.int64), np.array([0, 1, 0, 1]), 2)
        with _raises(InvalidInputError, "contiguous"):
            func(np.ones((8, 4))[::2, ::2], np.array([0, 1, 0, 1]), 2)
        with _raises(ShapeMismatchError):
            func(X, np.array([0, 1, 0]), 2)


# --- AnnData ---------------------------------------------------------------------------------


def test_anndata_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    n, m = 90, 12
    X = rng.lognormal(size=(n, m)).astype(np.float32)
    tissue = pd.Categorical(rng.choice(["heart", "skin", "gut"], size=n))
    adata = ad.AnnData(X=X, obs=pd.DataFrame({"tissue": tissue}, index=[f"s{i}" for i in range(n)]))
    adata.layers["double"] = 2.0 * X.astype(np.float64)

    assert stats.tau_index(adata, "tissue") is None
    np.testing.assert_array_equal(adata.var["tau"].to_numpy(), stats.tau_index(X, tissue))

    copied = stats.tissue_wasserstein(adata, "tissue", layer="double", copy=True)
    assert copied is not adata and "tissue_wasserstein" not in adata.varm
    expected = stats.tissue_wasserstein(2.0 * X.astype(np.float64), tissue)
    np.testing.assert_array_equal(copied.varm["tissue_wasserstein"], expected.distances)
    np.testing.assert_array_equal(
        copied.var["tissue_wasserstein_top_group"].astype(str), expected.top_group()
    )
    uns = copied.uns["tissue_specificity"]
    assert uns["groups"] == list(expected.groups) == ["gut", "heart", "skin"]
    assert uns["params"]["tissue_wasserstein"] == {"groupby": "tissue", "layer": "double"}
    assert uns["params"]["tau"] == {"groupby": "tissue", "layer": "X"}

    path = tmp_path / "tissue.h5ad"
    copied.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.varm["tissue_wasserstein"], expected.distances)
    np.testing.assert_array_equal(back.var["tau"].to_numpy(), copied.var["tau"].to_numpy())
    assert list(back.uns["tissue_specificity"]["groups"]) == ["gut", "heart", "skin"]

    with _raises(InvalidInputError, "not a column of adata.obs"):
        stats.tau_index(adata, "organ")
    with _raises(InvalidInputError, "not found; available layers"):
        stats.tissue_wasserstein(adata, "tissue", layer="raw")


def test_anndata_sparse_input():
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(10)
    X = rng.lognormal(size=(40, 6)) * (rng.random((40, 6)) < 0.4)
    labels = np.repeat(["a", "b"], 20)
    adata = ad.AnnData(
        X=sparse.csr_matrix(X), obs=pd.DataFrame({"g": labels}, index=[str(i) for i in range(40)])
    )
    stats.tissue_wasserstein(adata, "g")
    np.testing.assert_array_equal(
        adata.varm["tissue_wasserstein"], stats.tissue_wasserstein(X, labels).distances
    )


def test_sparse_input_is_densified_by_gene_chunks(monkeypatch):
    sparse = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(11)
    X = rng.lognormal(size=(50, 23)) * (rng.random((50, 23)) < 0.3)
    labels = rng.choice(["p", "q", "r"], size=50)
    labels[:3] = ["p", "q", "r"]
    monkeypatch.setattr(stats, "_SPARSE_CHUNK_VALUES", 50 * 4)  # 4 genes per chunk
    for fmt in (sparse.csr_matrix, sparse.csc_matrix, sparse.coo_matrix):
        got = stats.tissue_wasserstein(fmt(X), labels).distances
        np.testing.assert_array_equal(got, stats.tissue_wasserstein(X, labels).distances)
        np.testing.assert_array_equal(
            stats.tau_index(fmt(X.astype(np.float32)), labels),
            stats.tau_index(X.astype(np.float32), labels),
        )
    bad = X.copy()
    bad[7, 13] = np.nan
    with _raises(InvalidInputError, "NaN at row 7, column 13"):
        stats.tissue_wasserstein(sparse.csr_matrix(bad), labels)
    bad[7, 13] = -2.0
    with _raises(InvalidInputError, r"negative value \(-2.0\) at row 7, column 13"):
        stats.tau_index(sparse.csr_matrix(bad), labels)
    stats.tissue_wasserstein(sparse.csr_matrix(bad), labels)  # negatives are fine for the EMD
