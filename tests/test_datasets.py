"""Embedded NCI60 dataset: invariants of the shipped file (CI has no copy of the source)."""

from __future__ import annotations

import importlib.resources
import os
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
