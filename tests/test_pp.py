"""Preprocessing: log transform, variable genes, standardization, size factors, dichotomize."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.pp import (
    dichotomize,
    highly_variable,
    log_transform,
    normalize_size_factors,
    size_factors,
    standardize,
)


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


# ----------------------------------------------------------------------------- size factors
def _size_factors_oracle(counts: np.ndarray) -> np.ndarray:
    """Anders & Huber (2010) eq. 5 written as plain loops (independent of the vectorised code)."""
    import math
    import statistics

    n, m = counts.shape
    genes = [g for g in range(m) if all(counts[i, g] > 0 for i in range(n))]
    geo = {g: math.exp(sum(math.log(counts[i, g]) for i in range(n)) / n) for g in genes}
    # DESeq2 takes the median on the log scale (even counts: geometric mean of the middle two)
    return np.array(
        [
            math.exp(statistics.median(math.log(counts[i, g] / geo[g]) for g in genes))
            for i in range(n)
        ]
    )


def test_size_factors_hand_example():
    counts = np.array([[2, 0, 8, 1], [8, 3, 2, 4]])
    # gene 1 has a zero -> excluded; geometric means 4, 4, 2; ratios (0.5, 2, 0.5), (2, 0.5, 2)
    np.testing.assert_allclose(size_factors(counts), [0.5, 2.0], rtol=1e-15)


@pytest.mark.parametrize("scales", [[0.5, 1.0, 2.0], [1.0, 3.0, 7.0, 0.25]])
def test_size_factors_of_rescaled_copies_are_the_scales(scales):
    rng = np.random.default_rng(3)
    base = rng.poisson(20, size=50).astype(float)
    base[:5] = 0  # excluded genes do not matter
    counts = np.outer(scales, base)
    expected = np.array(scales) / np.exp(np.mean(np.log(scales)))
    np.testing.assert_allclose(size_factors(counts), expected, rtol=1e-12)


def test_size_factors_match_loop_oracle_and_sparse():
    rng = np.random.default_rng(4)
    depth = rng.uniform(0.3, 3.0, size=(12, 1))
    counts = rng.poisson(depth * rng.gamma(2.0, 10.0, size=(1, 80))).astype(float)
    counts[0, :7] = 0
    assert (counts == 0).sum() > 0
    expected = _size_factors_oracle(counts)
    np.testing.assert_allclose(size_factors(counts), expected, rtol=1e-12)
    np.testing.assert_allclose(size_factors(sp.csr_matrix(counts)), expected, rtol=1e-12)
    np.testing.assert_allclose(size_factors(counts.astype(np.int64)), expected, rtol=1e-12)
    # scale-equivariant per sample (relative to the others: the reference moves too),
    # invariant to gene order
    doubled = counts.copy()
    doubled[3] *= 2
    factors = size_factors(doubled)
    n = len(counts)
    np.testing.assert_allclose(factors[3] / expected[3], 2.0 ** (1 - 1 / n), rtol=1e-12)
    others = np.arange(n) != 3
    np.testing.assert_allclose(factors[others] / expected[others], 2.0 ** (-1 / n), rtol=1e-12)
    perm = rng.permutation(80)
    np.testing.assert_allclose(size_factors(counts[:, perm]), expected, rtol=1e-12)
    # the factors track the planted sequencing depths
    assert np.corrcoef(np.log(expected), np.log(depth.ravel()))[0, 1] > 0.95


def _poscounts_oracle(counts: np.ndarray) -> np.ndarray:
    """DESeq2 ``estimateSizeFactors(type="poscounts")`` written as plain loops: geoMeanNZ
    (Σ log of the positive counts / number of samples), the median of log ratios over each
    sample's positive counts, factors divided by their geometric mean."""
    import math
    import statistics

    n, m = counts.shape
    log_geo = [
        sum(math.log(counts[i, g]) for i in range(n) if counts[i, g] > 0) / n for g in range(m)
    ]
    raw = [
        statistics.median(math.log(counts[i, g]) - log_geo[g] for g in range(m) if counts[i, g] > 0)
        for i in range(n)
    ]
    centre = sum(raw) / n
    return np.array([math.exp(v - centre) for v in raw])


def test_poscounts_size_factors_match_the_deseq2_definition_on_sparse_counts():
    rng = np.random.default_rng(8)
    depth = rng.uniform(0.3, 3.0, size=(30, 1))
    counts = rng.poisson(depth * rng.gamma(0.3, 3.0, size=(1, 60))).astype(float)
    counts[np.arange(60) % 30, np.arange(60)] = 0  # every gene has a zero somewhere
    counts[:, 5] = 0  # a gene with no count at all
    assert not (counts > 0).all(axis=0).any()  # the ratio method has no gene to use
    with pytest.raises(InvalidInputError, match="positive in every sample"):
        size_factors(counts)
    expected = _poscounts_oracle(counts)
    np.testing.assert_allclose(size_factors(counts, method="poscounts"), expected, rtol=1e-12)
    sparse = sp.csr_matrix(counts)
    np.testing.assert_allclose(size_factors(sparse, method="poscounts"), expected, rtol=1e-12)
    np.testing.assert_allclose(
        normalize_size_factors(counts, method="poscounts"), counts / expected[:, None], rtol=1e-12
    )
    assert np.corrcoef(np.log(expected), np.log(depth.ravel()))[0, 1] > 0.8
    # with every count positive: the ratio method's factors, rescaled to geometric mean 1
    dense = rng.poisson(20, size=(5, 40)).astype(float) + 1
    ratio = size_factors(dense)
    np.testing.assert_allclose(
        size_factors(dense, method="poscounts"), ratio / np.exp(np.log(ratio).mean()), rtol=1e-12
    )
    counts[3] = 0
    with pytest.raises(InvalidInputError, match=r"sample 3 .* no positive count"):
        size_factors(counts, method="poscounts")
    with pytest.raises(InvalidInputError, match="method"):
        size_factors(dense, method="median")  # type: ignore[call-overload]


def test_size_factors_anndata_and_normalize():
    rng = np.random.default_rng(5)
    counts = rng.poisson(rng.uniform(1, 4, (8, 1)) * 30, size=(8, 40)).astype(np.float32)
    factors = size_factors(counts)
    a = ad.AnnData(sp.csr_matrix(counts), layers={"counts": counts.copy()})
    assert size_factors(a) is None
    np.testing.assert_allclose(a.obs["size_factors"], factors, rtol=1e-12)
    assert a.uns["size_factors"]["params"] == {
        "layer": None,
        "method": "ratio",
        "n_genes_used": 40,
    }
    c = size_factors(
        ad.AnnData(np.ones((8, 40)), layers={"counts": counts}), layer="counts", copy=True
    )
    np.testing.assert_allclose(c.obs["size_factors"], factors, rtol=1e-12)
    # normalisation divides rows by the factors (computed, or given)
    normalized = normalize_size_factors(counts)
    np.testing.assert_allclose(normalized, counts / factors[:, None], rtol=1e-12)
    again = size_factors(normalized)  # normalised samples all get the same factor
    np.testing.assert_allclose(again, np.full(8, again[0]), rtol=1e-12)
    given = normalize_size_factors(sp.csr_matrix(counts), factors=np.full(8, 2.0))
    assert sp.issparse(given)
    np.testing.assert_allclose(given.toarray(), counts / 2.0)
    normalize_size_factors(a, layer="counts")
    np.testing.assert_allclose(a.layers["counts"], counts / factors[:, None], rtol=1e-6)


def test_size_factor_errors():
    with pytest.raises(InvalidInputError, match="no gene of data is positive in every sample"):
        size_factors(np.array([[1.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(InvalidInputError, match="positive in every sample"):
        size_factors(np.array([[1.0, 2.0], [0.0, 0.0]]))  # an empty sample
    with pytest.raises(InvalidInputError, match="negative"):
        size_factors(np.array([[1.0, -2.0], [1.0, 1.0]]))
    with pytest.raises(InvalidInputError, match="NaN"):
        size_factors(np.array([[1.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(InvalidInputError, match="layer"):
        size_factors(ad.AnnData(np.ones((2, 2))), layer="missing")
    with pytest.raises(ShapeMismatchError, match="one value per sample"):
        normalize_size_factors(np.ones((3, 2)), factors=[1.0, 2.0])
    with pytest.raises(InvalidInputError, match="sample 1"):
        normalize_size_factors(np.ones((3, 2)), factors=[1.0, 0.0, 2.0])
    # a tiny factor is positive but the division overflows to inf
    for tiny in (1e-320, 1e-307):
        with pytest.raises(InvalidInputError, match="sample 2"):
            normalize_size_factors(np.ones((3, 2)) * 100, factors=[1.0, 1.0, tiny])
        with pytest.raises(InvalidInputError, match="sample 2"):
            normalize_size_factors(sp.csr_matrix(np.ones((3, 2)) * 100), factors=[1, 1, tiny])


# ----------------------------------------------------------------------------- dichotomize
def _type7_quantile(column: np.ndarray, q: float) -> float:
    ordered = sorted(column.tolist())
    h = (len(ordered) - 1) * q
    low = int(np.floor(h))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def test_dichotomize_median_and_ties():
    x = np.array([[0, 1, 0, 7], [1, 1, 0, 7], [5, 1, 0, 7], [2, 1, 3, 7]])
    out = dichotomize(x)
    assert out.dtype == np.uint8
    # column 0: median 1.5; column 1 constant -> all 0; column 2: median 0, ties -> 0
    expected = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0]])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("q", [0.5, 0.7, 0.0, 0.33])
def test_dichotomize_matches_type7_quantile_oracle(q):
    rng = np.random.default_rng(6)
    x = np.round(rng.gamma(1.0, 3.0, size=(37, 9)), 1)  # some ties
    out = dichotomize(x, quantile=q)
    for g in range(x.shape[1]):
        threshold = _type7_quantile(x[:, g], q)
        np.testing.assert_array_equal(out[:, g], (x[:, g] > threshold).astype(np.uint8))
    # 0..99: the 0.7 quantile is 69.3 (type 7), leaving 70..99 as ones
    distinct = rng.permutation(100).reshape(100, 1).astype(float)
    assert dichotomize(distinct, quantile=0.7).sum() == 30
    assert dichotomize(distinct).sum() == 50


def test_dichotomize_sparse_and_anndata():
    rng = np.random.default_rng(7)
    counts = rng.poisson(0.8, size=(30, 12)).astype(np.float32)
    dense = dichotomize(counts, quantile=0.7)
    sparse = dichotomize(sp.csr_matrix(counts), quantile=0.7)
    assert sp.issparse(sparse) and sparse.dtype == np.uint8
    np.testing.assert_array_equal(sparse.toarray(), dense)
    negative = sp.csr_matrix(counts - 1.0)
    np.testing.assert_array_equal(dichotomize(negative), dichotomize(counts - 1.0))
    a = ad.AnnData(sp.csr_matrix(counts), layers={"raw": counts.copy()})
    b = dichotomize(a, quantile=0.7, copy=True)
    assert sp.issparse(a.X) and a.X.dtype == np.float32  # untouched
    np.testing.assert_array_equal(b.X.toarray(), dense)
    np.testing.assert_allclose(
        b.var["dichotomize_threshold"], np.quantile(counts.astype(float), 0.7, axis=0), rtol=1e-15
    )
    assert b.uns["dichotomize"]["params"] == {"quantile": 0.7, "layer": None}
    assert dichotomize(a, layer="raw") is None
    np.testing.assert_array_equal(a.layers["raw"], dichotomize(counts))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (8, 3), elements=st.floats(-5, 5, allow_nan=False)))
def test_dichotomize_is_monotone_in_the_quantile(x):
    low, high = dichotomize(x, quantile=0.3), dichotomize(x, quantile=0.8)
    assert np.all(low >= high)
    assert np.all(dichotomize(x, quantile=1.0) == 0)
    # ones are exactly the values above the threshold: every 1 exceeds every 0 of its gene
    for g in range(3):
        ones, zeros = x[high[:, g] == 1, g], x[high[:, g] == 0, g]
        if ones.size and zeros.size:
            assert ones.min() > zeros.max()


def test_dichotomize_errors():
    x = np.ones((3, 2))
    x[2, 1] = np.nan
    with pytest.raises(InvalidInputError, match="row 2, column 1"):
        dichotomize(x)
    for bad in (-0.1, 1.5, True, "median"):
        with pytest.raises(InvalidInputError, match="quantile"):
            dichotomize(np.ones((3, 2)), quantile=bad)
    with pytest.raises(InvalidInputError, match="layer"):
        dichotomize(np.ones((3, 2)), layer="x")


def test_sparse_duplicate_entries_are_summed_not_counted_apart() -> None:
    # scipy keeps several entries for one cell (their sum is its value); pp must see the sum
    dense = np.array([[4.0, 2.0], [1.0, 3.0], [3.0, 1.0], [10.0, 5.0]])
    rows, cols = np.nonzero(dense)
    values = dense[rows, cols]
    # every value split into two entries of the same cell (each row: 2 genes × 2 entries)
    duplicated = sp.csr_matrix(
        (np.repeat(values / 2, 2), np.repeat(cols, 2), np.arange(0, 2 * len(values) + 1, 4)),
        shape=dense.shape,
    )
    assert not duplicated.has_canonical_format
    before = duplicated.data.copy()
    np.testing.assert_array_equal(dichotomize(duplicated).toarray(), dichotomize(dense))
    np.testing.assert_allclose(
        size_factors(duplicated, method="poscounts"), size_factors(dense, method="poscounts")
    )
    np.testing.assert_array_equal(duplicated.data, before)  # the input is left as it was
