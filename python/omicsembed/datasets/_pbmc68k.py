"""Loader of the embedded 10x PBMC subset ``pbmc68k_reduced.npz`` (provenance in ``NOTICE``)."""

from __future__ import annotations

import importlib.resources
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from omicsembed.exceptions import OmicsEmbedError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["pbmc68k_reduced"]

_FILE = "pbmc68k_reduced.npz"
_CATEGORICAL = ("bulk_labels", "louvain", "phase")


def _categorical(codes: np.ndarray, categories: np.ndarray, key: str) -> pd.Categorical:
    if codes.size and (codes.min() < -1 or codes.max() >= categories.size):
        raise OmicsEmbedError(f"{_FILE}: codes of {key!r} out of range; re-run _make_pbmc68k.py")
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=categories.tolist())


def pbmc68k_reduced() -> ad.AnnData:
    """Load the embedded 10x PBMC subset: 700 cells x 400 genes of integer UMI counts.

    Derived from scanpy 1.11.5's ``pbmc68k_reduced`` (BSD-3-Clause), a subsample of the 10x
    Genomics "Fresh 68k PBMCs (Donor A)" dataset (Zheng et al. 2017, Nat Commun 8:14049). The
    source stores ``log1p(counts / n_counts * 1e4)`` (rounded to 3 decimals); the counts were
    recovered as ``round(expm1(raw.X) * n_counts / 1e4)`` and the 400 genes of largest
    variance of ``log1p(counts)`` kept. The full provenance, licence, attribution and the exact
    transformation are in the ``NOTICE`` file next to the data (derivation script
    ``_make_pbmc68k.py``); nothing is downloaded and scanpy is not needed.

    Returns
    -------
    anndata.AnnData
        A fresh object (safe to modify) with

        - ``X``: scipy CSR float32 (700, 400), integer-valued UMI counts in 0..259;
        - ``obs_names``: cell barcodes; ``var_names``: gene symbols (source order);
          ``var["source_column"]``: 0-based column in the 765-gene source;
        - ``obs["bulk_labels"]``: categorical, 10 FACS-sorted reference cell types
          (e.g. ``"CD14+ Monocyte"``, ``"CD19+ B"``, ``"Dendritic"``);
          ``obs["louvain"]``: categorical, 11 clusters ``"0"`` ... ``"10"``;
          ``obs["phase"]``: categorical cell-cycle phase (``G1``, ``G2M``, ``S``);
        - ``obs["n_counts"]`` (int): total count of the cell over *all* genes of the original
          data (the normalisation denominator; the 400 genes hold ~20 % of it),
          ``obs["n_genes"]`` (int) and ``obs["percent_mito"]`` (float32) from the source;
        - ``uns["dataset"]``: source, licence and transformation notes.

        ``log1p(X / n_counts * 1e4)`` reproduces the source's ``raw.X`` to within 5e-4 (its
        3-decimal rounding).

    Raises
    ------
    OmicsEmbedError
        If the embedded file is missing or corrupted (a broken installation).

    Examples
    --------
    >>> from omicsembed.datasets import pbmc68k_reduced
    >>> adata = pbmc68k_reduced()
    >>> adata.shape
    (700, 400)

    """
    import anndata as ad

    resource = importlib.resources.files("omicsembed.datasets").joinpath(_FILE)
    try:
        with (
            importlib.resources.as_file(resource) as path,
            np.load(path, allow_pickle=False) as npz,
        ):
            arrays = {key: np.asarray(npz[key]) for key in npz.files}
        shape = (int(arrays["shape"][0]), int(arrays["shape"][1]))
        x = sp.csr_matrix(
            (
                arrays["data"].astype(np.float32),
                arrays["indices"].astype(np.int32),
                arrays["indptr"].astype(np.int32),
            ),
            shape=shape,
        )
        x.check_format(full_check=True)
        obs = pd.DataFrame(
            {
                **{
                    key: _categorical(arrays[f"{key}_codes"], arrays[f"{key}_categories"], key)
                    for key in _CATEGORICAL
                },
                "n_counts": arrays["n_counts"].astype(np.int64),
                "n_genes": arrays["n_genes"].astype(np.int64),
                "percent_mito": arrays["percent_mito"].astype(np.float32),
            },
            index=pd.Index(arrays["obs_names"].astype(str).tolist()),
        )
        var = pd.DataFrame(
            {"source_column": arrays["gene_index"].astype(np.int64)},
            index=pd.Index(arrays["var_names"].astype(str).tolist()),
        )
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise OmicsEmbedError(
            f"cannot read the embedded dataset {_FILE} ({exc}); reinstall omicsembed"
        ) from exc
    return ad.AnnData(
        X=x,
        obs=obs,
        var=var,
        uns={
            "dataset": {
                "name": "pbmc68k_reduced",
                "source": "scanpy 1.11.5 (PyPI wheel), scanpy/datasets/10x_pbmc68k_reduced.h5ad",
                "licence": "BSD-3-Clause (scanpy); data: 10x Genomics, see NOTICE",
                "reference": "Zheng et al. 2017, Nature Communications 8:14049",
                "values": "UMI counts (integer-valued float32, CSR)",
                "transformation": (
                    "counts = round(expm1(raw.X) * n_counts / 1e4); 400 genes of largest "
                    "variance (ddof=1) of log1p(counts) out of 765; see NOTICE"
                ),
            }
        },
    )
