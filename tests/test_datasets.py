"""Embedded NCI60 dataset: invariants of the shipped file (CI has no copy of the source)."""

from __future__ import annotations

import importlib.resources
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from omicsembed.datasets import nci60
from omicsembed.datasets._nci60 import CANCER_TYPES

REPLICATES = {
    "K562A-repro": "LEUKEMIA",
    "K562B-repro": "LEUKEMIA",
    "MCF7A-repro": "BREAST",
    "MCF7D-repro": "BREAST",
}
SOURCE_DIR = Path(os.environ.get("OMICSEMBED_ISLP_DATA", "/tmp/islp/ISLP/data"))


@pytest.fixture(scope="module")
def adata():
    return nci60()


@pytest.fixture(scope="module")
def npz():
    resource = importlib.resources.files("omicsembed.datasets").joinpath("nci60.npz")
    with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}, path.stat().st_size


def test_shape_dtype_and_values(adata):
    assert adata.shape == (64, 2000)
    assert adata.X.dtype == np.float32
    assert isinstance(adata.X, np.ndarray)
    assert np.isfinite(adata.X).all()
    # log2 ratios: centred-ish values of both signs, no absurd magnitudes
    assert adata.X.min() < -3 and adata.X.max() > 3
    assert np.abs(adata.X).max() < 20


def test_file_is_small_and_plain(npz):
    arrays, size = npz
    assert size < 1_000_000
    assert set(arrays) == {"X", "gene_index", "source_row", "label", "max_dropped_variance"}
    assert all(a.dtype != object for a in arrays.values())


def test_cancer_type_categories_and_mapping(adata):
    ct = adata.obs["cancer_type"]
    assert isinstance(ct.dtype, pd.CategoricalDtype)
    assert list(ct.cat.categories) == list(CANCER_TYPES)
    assert len(CANCER_TYPES) == 9
    labels = adata.obs["label"]
    assert labels.nunique() == 14
    # UNKNOWN -> NaN, and it is the only missing value
    assert ct.isna().sum() == 1
    assert (labels[ct.isna()] == "UNKNOWN").all()
    for lab, expected in REPLICATES.items():
        assert (ct[labels == lab] == expected).all()
        assert (labels == lab).sum() == 1
    plain = labels.isin(CANCER_TYPES)
    assert (ct[plain].astype(str) == labels[plain]).all()
    assert plain.sum() + len(REPLICATES) + 1 == 64
    assert set(ct.dropna().unique()) == set(CANCER_TYPES)
    assert ct.value_counts()["LEUKEMIA"] == 8
    assert ct.value_counts()["BREAST"] == 9


def test_names_and_order(adata):
    src = adata.var["source_column"].to_numpy()
    assert list(adata.var_names) == [f"gene_{i}" for i in src]
    assert np.all(np.diff(src) > 0)
    assert src.min() >= 0 and src.max() < 6830
    rows = adata.obs["source_row"].to_numpy()
    np.testing.assert_array_equal(rows, np.arange(64))
    assert adata.obs_names[0] == "nci60_00" and adata.obs_names[-1] == "nci60_63"
    assert adata.obs_names.is_unique and adata.var_names.is_unique


def test_kept_genes_are_more_variable_than_any_dropped(adata, npz):
    arrays, _ = npz
    var = adata.X.astype(np.float64).var(axis=0, ddof=1)
    assert var.min() > float(arrays["max_dropped_variance"])


def test_fresh_object_each_call():
    a = nci60()
    a.X[:] = 0
    a.obs["cancer_type"] = "x"
    b = nci60()
    assert np.abs(b.X).sum() > 0
    assert b.obs["cancer_type"].isna().sum() == 1


def test_notice_has_source_licence_and_transformation():
    text = importlib.resources.files("omicsembed.datasets").joinpath("NOTICE").read_text()
    for needle in (
        "ISLP 0.6.0",
        "Ross",
        "Redistribution and use in source and binary forms",
        "2000 genes of largest variance",
        "UNKNOWN",
        "K562",
        "MCF7",
    ):
        assert needle in text


@pytest.mark.skipif(not (SOURCE_DIR / "NCI60data.npy").is_file(), reason="ISLP source absent")
def test_matches_source_exactly(adata):
    x = np.load(SOURCE_DIR / "NCI60data.npy", allow_pickle=False)
    labels = pd.read_csv(SOURCE_DIR / "NCI60labs.csv")["label"].to_numpy()
    var = x.var(axis=0, ddof=1)
    top = np.sort(np.argsort(-var, kind="stable")[:2000])
    np.testing.assert_array_equal(adata.var["source_column"].to_numpy(), top)
    np.testing.assert_array_equal(adata.X, x[:, top].astype(np.float32))
    np.testing.assert_array_equal(adata.obs["label"].to_numpy(), labels)


# ----------------------------------------------------------------------------- pbmc68k_reduced
PBMC_SOURCE = Path(
    os.environ.get(
        "OMICSEMBED_SCANPY_PBMC68K", "/tmp/scanpy/scanpy/datasets/10x_pbmc68k_reduced.h5ad"
    )
)
BULK_LABEL_COUNTS = {
    "Dendritic": 240,
    "CD14+ Monocyte": 129,
    "CD19+ B": 95,
    "CD4+/CD25 T Reg": 68,
    "CD8+ Cytotoxic T": 54,
    "CD8+/CD45RA+ Naive Cytotoxic": 43,
    "CD56+ NK": 31,
    "CD4+/CD45RO+ Memory": 19,
    "CD34+": 13,
    "CD4+/CD45RA+/CD25- Naive T": 8,
}


@pytest.fixture(scope="module")
def pbmc():
    from omicsembed.datasets import pbmc68k_reduced

    return pbmc68k_reduced()


@pytest.fixture(scope="module")
def pbmc_npz():
    resource = importlib.resources.files("omicsembed.datasets").joinpath("pbmc68k_reduced.npz")
    with importlib.resources.as_file(resource) as path, np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}, path.stat().st_size


def test_pbmc_counts_are_sparse_non_negative_integers(pbmc):
    import scipy.sparse as sp

    assert pbmc.shape == (700, 400)
    assert sp.issparse(pbmc.X) and pbmc.X.format == "csr"
    assert pbmc.X.dtype == np.float32
    data = pbmc.X.data
    assert (data > 0).all()  # explicit entries are the non-zero counts
    np.testing.assert_array_equal(data, np.round(data))
    assert data.max() == 259
    # the smallest non-zero count of every cell is 1 (UMI counts, not normalised values)
    row_min = np.array([pbmc.X[i].data.min() for i in range(pbmc.n_obs)])
    assert (row_min == 1).all()
    # 400 of the original genes cannot hold more than the cell's total count
    totals = np.asarray(pbmc.X.sum(axis=1)).ravel()
    n_counts = pbmc.obs["n_counts"].to_numpy()
    assert (totals < n_counts).all() and 0.05 < np.median(totals / n_counts) < 0.5
    assert (pbmc.obs["n_genes"].to_numpy() >= (pbmc.X > 0).sum(axis=1).A1).all()
    assert (np.asarray((pbmc.X > 0).sum(axis=0)).ravel() > 0).all()  # no empty gene


def test_pbmc_file_is_small_and_plain(pbmc_npz):
    arrays, size = pbmc_npz
    assert size < 1_000_000
    assert all(a.dtype != object for a in arrays.values())
    assert arrays["data"].dtype == np.uint16 and arrays["indices"].dtype == np.uint16


def test_pbmc_labels(pbmc):
    bulk = pbmc.obs["bulk_labels"]
    assert isinstance(bulk.dtype, pd.CategoricalDtype)
    assert bulk.value_counts().to_dict() == BULK_LABEL_COUNTS
    louvain = pbmc.obs["louvain"]
    assert isinstance(louvain.dtype, pd.CategoricalDtype)
    assert list(louvain.cat.categories) == [str(i) for i in range(11)]
    assert louvain.notna().all() and bulk.notna().all()
    assert set(pbmc.obs["phase"].cat.categories) == {"G1", "G2M", "S"}
    # labels carry signal in the counts: monocytes express CD14 and LYZ more than B cells
    for gene in ("LYZ", "CD14"):
        if gene in pbmc.var_names:
            column = pbmc[:, gene].X.toarray().ravel()
            assert column[bulk == "CD14+ Monocyte"].mean() > column[bulk == "CD19+ B"].mean()


def test_pbmc_names_and_selection(pbmc, pbmc_npz):
    arrays, _ = pbmc_npz
    assert pbmc.obs_names.is_unique and pbmc.var_names.is_unique
    assert all(re.fullmatch(r"[ACGT]{14}-\d", name) for name in pbmc.obs_names)
    src = pbmc.var["source_column"].to_numpy()
    assert np.all(np.diff(src) > 0) and src.min() >= 0 and src.max() < 765
    log_counts = np.log1p(pbmc.X.toarray().astype(np.float64))
    assert log_counts.var(axis=0, ddof=1).min() > float(arrays["max_dropped_variance"])


def test_pbmc_fresh_object_each_call(pbmc):
    from omicsembed.datasets import pbmc68k_reduced

    a = pbmc68k_reduced()
    a.X.data[:] = 0
    a.obs["bulk_labels"] = "x"
    b = pbmc68k_reduced()
    assert b.X.sum() == pbmc.X.sum() > 0
    assert b.obs["bulk_labels"].value_counts()["Dendritic"] == 240


def test_pbmc_notice():
    text = importlib.resources.files("omicsembed.datasets").joinpath("NOTICE").read_text()
    for needle in (
        "scanpy 1.11.5",
        "10x Genomics",
        "Zheng",
        "BSD 3-Clause License",
        "Copyright (c) 2017 F. Alexander Wolf, P. Angerer, Theis Lab",
        "round(expm1(raw.X) * n_counts / 1e4)",
        "400 genes of largest",
    ):
        assert needle in text


@pytest.mark.skipif(not PBMC_SOURCE.is_file(), reason="scanpy's 10x_pbmc68k_reduced.h5ad absent")
def test_pbmc_reproduces_the_source_normalisation(pbmc):
    import warnings

    import anndata as ad

    with warnings.catch_warnings():  # the 2017 file predates anndata's encoding metadata
        warnings.simplefilter("ignore")
        source = ad.read_h5ad(PBMC_SOURCE)
    cols = pbmc.var["source_column"].to_numpy()
    assert list(source.raw.var_names[cols]) == list(pbmc.var_names)
    assert list(source.obs_names) == list(pbmc.obs_names)
    raw = source.raw.X[:, cols].toarray().astype(np.float64)
    n_counts = pbmc.obs["n_counts"].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(n_counts, source.obs["n_counts"].to_numpy())
    back = np.log1p(pbmc.X.toarray().astype(np.float64) / n_counts[:, None] * 1e4)
    assert np.abs(back - raw).max() <= 5.01e-4  # the source's 3-decimal rounding
    for key in ("bulk_labels", "louvain"):
        assert list(pbmc.obs[key].astype(str)) == list(source.obs[key].astype(str))


SHARED_TASIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasic2016"


@pytest.mark.skipif(not SHARED_TASIC.is_dir(), reason="../shared/data/tasic2016 is absent")
def test_read_shared_folder_tasic() -> None:
    from omicsembed.datasets import read_shared_folder

    adata = read_shared_folder(SHARED_TASIC)
    assert adata.shape == (1525, 180)
    assert adata.obs["cell_type"].nunique() == 15
    assert adata.obs["class"].value_counts().to_dict() == {"Glutamate": 764, "GABA": 761}
    assert adata.var_names[0] == "gene_0"


def test_read_shared_folder_errors(tmp_path) -> None:
    from omicsembed.datasets import read_shared_folder
    from omicsembed.exceptions import InvalidInputError

    with pytest.raises(InvalidInputError, match="missing"):
        read_shared_folder(tmp_path)
    np.savez_compressed(tmp_path / "expression.npz", Y=np.zeros(3))
    with pytest.raises(InvalidInputError, match="no 2-D array 'X'"):
        read_shared_folder(tmp_path)
    # object arrays (pickled), text in X and a file that is no archive: errors, not tracebacks
    for arrays in ({"X": np.array([[1, "a"]], dtype=object)}, {"X": np.array([["1", "a"]])}):
        np.savez(tmp_path / "expression.npz", **arrays)
        with pytest.raises(InvalidInputError, match=r"cannot read .* as numeric arrays"):
            read_shared_folder(tmp_path)
    (tmp_path / "expression.npz").write_bytes(b"not an archive")
    with pytest.raises(InvalidInputError, match="cannot read"):
        read_shared_folder(tmp_path)


def test_read_shared_folder_with_as_many_cells_as_genes(tmp_path) -> None:
    """Per-cell arrays were dropped (and put in .var) when the counts agreed."""
    from omicsembed.datasets import read_shared_folder

    labels = np.array(["a", "b", "a"])
    np.savez(
        tmp_path / "expression.npz",
        X=np.eye(3),
        genes=np.array(["g1", "g2", "g3"]),
        cell_type=labels,
    )
    adata = read_shared_folder(tmp_path)
    assert list(adata.obs["cell_type"]) == ["a", "b", "a"]
    assert list(adata.var_names) == ["g1", "g2", "g3"] and "cell_type" not in adata.var
