"""Preprocessing: log transform, highly variable genes, standardization."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from omicsembed.exceptions import InvalidInputError
from omicsembed.pp import highly_variable, log_transform, standardize


@pytest.fixture
def tpm() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.gamma(0.5, 50.0, size=(20, 30))


# ----------------------------------------------------------------------------- log_transform
def test_log10_tpm_plus_one(tpm):
    original = tpm.copy()
    out = log_transform(tpm)
    np.testing.assert_allclose(out, np.log10(tpm + 1), rtol=1e-12)
    np.testing.assert_array_equal(tpm, original)  # input untouched
    # log1p keeps full precision for tiny values, where log10(x + 1) rounds x + 1 first
    tiny = np.array([[1e-12, 1e-300]])
    np.testing.assert_allclose(log_transform(tiny), (tiny - tiny**2 / 2) / np.log(10), rtol=1e-15)


@pytest.mark.parametrize(
    ("base", "pc", "oracle"),
    [
        (None, 1.0, lambda x: np.log(x + 1)),
        (2, 1.0, lambda x: np.log2(x + 1)),
        (10, 0.5, lambda x: np.log10(x + 0.5)),
        (np.e, 0.0, np.log),
    ],
)
def test_bases_and_pseudocounts(tpm, base, pc, oracle):
    x = tpm + 0.01
    np.testing.assert_allclose(log_transform(x, base=base, pseudocount=pc), oracle(x), rtol=1e-13)


def test_dtypes_and_nan():
    x32 = np.array([[0.0, 9.0], [np.nan, 99.0]], dtype=np.float32)
    out = log_transform(x32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0, 1], [np.nan, 2]], rtol=1e-6)
    assert log_transform(np.array([[0, 9]])).dtype == np.float64


def test_log_errors():
    with pytest.raises(InvalidInputError, match=r"-2.0.*pseudocount"):
        log_transform(np.array([[1.0, -2.0]]))
    with pytest.raises(InvalidInputError, match="pseudocount"):
        log_transform(np.array([[0.0]]), pseudocount=0.0)  # log(0) is -inf
    log_transform(np.array([[-0.5]]))  # > -pseudocount is fine
    with pytest.raises(InvalidInputError, match="infinite"):
        log_transform(np.array([[np.inf]]))
    with pytest.raises(InvalidInputError, match="base"):
        log_transform(np.ones((2, 2)), base=1)
    with pytest.raises(InvalidInputError, match="pseudocount"):
        log_transform(np.ones((2, 2)), pseudocount=-1)
    with pytest.raises(InvalidInputError, match="2-D"):
        log_transform(np.ones(3))
    with pytest.raises(InvalidInputError, match="layer"):
        log_transform(np.ones((2, 2)), layer="counts")


def test_log_anndata_in_place_copy_and_layer(tpm):
    a = ad.AnnData(tpm.copy())
    assert log_transform(a) is None
    np.testing.assert_allclose(a.X, np.log10(tpm + 1))
    assert a.uns["log_transform"]["params"] == {"base": 10, "pseudocount": 1.0, "layer": None}

    b = ad.AnnData(tpm.copy())
    c = log_transform(b, base=2, copy=True)
    np.testing.assert_array_equal(b.X, tpm)
    np.testing.assert_allclose(c.X, np.log2(tpm + 1))

    d = ad.AnnData(tpm.copy(), layers={"tpm": tpm.copy()})
    log_transform(d, layer="tpm")
    np.testing.assert_array_equal(d.X, tpm)
    np.testing.assert_allclose(d.layers["tpm"], np.log10(tpm + 1))
    with pytest.raises(InvalidInputError, match=r"'nope'.*\['tpm'\]"):
        log_transform(d, layer="nope")


def test_log_sparse_matches_dense(tpm):
    x = tpm.copy()
    x[x < 20] = 0
    a = ad.AnnData(sp.csr_matrix(x))
    log_transform(a)
    assert sp.issparse(a.X)
    np.testing.assert_allclose(a.X.toarray(), np.log10(x + 1))
    with pytest.raises(InvalidInputError, match="sparse"):
        log_transform(ad.AnnData(sp.csr_matrix(x)), pseudocount=0.5)


# ----------------------------------------------------------------------------- highly_variable
def test_highly_variable_matches_numpy_var(tpm):
    idx = highly_variable(tpm, 10)
    var = tpm.var(axis=0)
    np.testing.assert_array_equal(idx, np.argsort(-var, kind="stable")[:10])
    assert idx.dtype == np.int64
    assert np.all(np.diff(var[idx]) <= 0)  # decreasing variance


def test_highly_variable_ties_nan_and_sources(tpm):
    x = np.zeros((4, 5))
    x[:, 1] = x[:, 3] = [0, 1, 0, 1]  # tie: lower index first
    x[:, 4] = np.nan  # no observed value: last
    np.testing.assert_array_equal(highly_variable(x, 5), [1, 3, 0, 2, 4])
    y = tpm.copy()
    y[::3, ::2] = np.nan
    np.testing.assert_array_equal(
        highly_variable(y, 7), np.argsort(-np.nanvar(y, axis=0), kind="stable")[:7]
    )
    dense = highly_variable(tpm, 12)
    np.testing.assert_array_equal(highly_variable(ad.AnnData(tpm), 12), dense)
    np.testing.assert_array_equal(highly_variable(ad.AnnData(sp.csr_matrix(tpm)), 12), dense)
    np.testing.assert_array_equal(highly_variable(sp.csc_matrix(tpm), 12), dense)


@pytest.mark.parametrize("n_top", [0, 31, 2.5, True])
def test_highly_variable_errors(tpm, n_top):
    with pytest.raises(InvalidInputError, match="n_top"):
        highly_variable(tpm, n_top)


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(2, 8), st.integers(1, 8)),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    )
)
def test_highly_variable_property(x):
    n_top = x.shape[1]
    idx = highly_variable(x, n_top)
    assert sorted(idx.tolist()) == list(range(n_top))  # a permutation
    var = x.var(axis=0)
    assert np.all(np.diff(var[idx]) <= 1e-9 * (1 + np.abs(var[idx][:-1])))


# ----------------------------------------------------------------------------- standardize
def test_standardize_array_and_anndata(tpm):
    z = standardize(tpm)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(standardize(tpm, ddof=1).std(axis=0, ddof=1), 1, rtol=1e-12)

    a = ad.AnnData(tpm.copy())
    assert standardize(a) is None
    np.testing.assert_allclose(a.X, z)
    np.testing.assert_allclose(a.var["mean"], tpm.mean(axis=0))
    np.testing.assert_allclose(a.var["std"], tpm.std(axis=0))
    b = standardize(ad.AnnData(tpm.copy()), copy=True)
    np.testing.assert_allclose(b.X, z)


def test_standardize_constant_and_nan():
    x = np.array([[1.0, 5.0], [2.0, 5.0], [np.nan, 5.0], [3.0, 5.0]])
    z = standardize(x)
    np.testing.assert_array_equal(z[:, 1], 0)
    assert np.isnan(z[2, 0])
    col = x[[0, 1, 3], 0]
    np.testing.assert_allclose(z[[0, 1, 3], 0], (col - col.mean()) / col.std())


def test_standardize_errors():
    with pytest.raises(InvalidInputError, match="dense"):
        standardize(sp.csr_matrix(np.eye(3)))
    with pytest.raises(InvalidInputError, match="sparse"):
        standardize(ad.AnnData(sp.csr_matrix(np.eye(3))))
    with pytest.raises(InvalidInputError, match="infinite"):
        standardize(np.array([[np.inf, 1.0], [0.0, 1.0]]))
    with pytest.raises(InvalidInputError, match="ddof"):
        standardize(np.eye(3), ddof=-1)
