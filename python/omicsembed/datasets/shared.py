"""Loader for folders in the layout of the project's shared evaluation data.

A folder holds ``expression.npz`` (``np.savez_compressed``, no pickled objects) with a matrix
``X`` (cells/samples × genes) and 1-D arrays: those with one entry per row become ``.obs``
columns, those with one entry per column become ``.var`` columns (``genes`` also names the
genes). These data sets are for tests and evaluation; none is shipped with the package.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from omicsembed.exceptions import InvalidInputError

__all__ = ["read_shared_folder"]


def read_shared_folder(path: str | Path) -> ad.AnnData:
    """Read a shared-data folder (``expression.npz``) as AnnData.

    Parameters
    ----------
    path
        The folder, e.g. ``../shared/data/tasic2016``.

    Returns
    -------
    anndata.AnnData
        ``X`` float32 (n, m); per-row arrays as categorical ``.obs`` columns (e.g.
        ``cell_type``, ``class``); per-column arrays in ``.var``; gene names from ``genes`` or
        ``gene_<index>``.

    Raises
    ------
    InvalidInputError
        When the folder or its ``expression.npz`` is missing, is not a numeric ``.npz``
        archive (object arrays, text in ``X``), or has no 2-D ``X``.

    """
    folder = Path(path)
    archive = folder / "expression.npz"
    if not archive.is_file():
        raise InvalidInputError(f"{folder} is not a data folder: {archive} is missing")
    try:
        with np.load(archive, allow_pickle=False) as data:
            if "X" not in data.files or data["X"].ndim != 2:
                raise InvalidInputError(f"{archive} has no 2-D array 'X' (keys: {data.files})")
            X = np.asarray(data["X"], dtype=np.float32)
            arrays = {key: data[key] for key in data.files if key != "X" and data[key].ndim == 1}
    except (ValueError, TypeError, OSError, zipfile.BadZipFile) as error:
        # object arrays (pickles, refused), text in X, or not an npz archive at all
        raise InvalidInputError(
            f"cannot read {archive} as numeric arrays (X: cells × genes numbers): {error}"
        ) from error
    n, m = X.shape
    # per-cell arrays to .obs and per-gene ones to .var; when there are as many cells as genes
    # only 'genes' is per gene
    obs = pd.DataFrame(
        {
            key: pd.Categorical(value)
            for key, value in arrays.items()
            if len(value) == n and (n != m or key != "genes")
        }
    )
    var = pd.DataFrame(
        {
            key: value
            for key, value in arrays.items()
            if len(value) == m and (n != m or key == "genes")
        }
    )
    gene_names = (
        [str(g) for g in arrays["genes"]] if "genes" in var else [f"gene_{j}" for j in range(m)]
    )
    obs.index = pd.Index([f"{folder.name}_{i}" for i in range(n)])
    var.index = pd.Index(gene_names)
    adata = ad.AnnData(X, obs=obs, var=var)
    adata.var_names_make_unique()
    adata.uns["source"] = str(folder.resolve())
    return adata
