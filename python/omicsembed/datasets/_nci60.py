"""Loader of the embedded NCI60 microarray subset (``nci60.npz``; provenance in ``NOTICE``)."""

from __future__ import annotations

import importlib.resources
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from omicsembed.exceptions import OmicsEmbedError

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["CANCER_TYPES", "nci60"]

#: The 9 cancer types (categories of ``obs["cancer_type"]``, in this order).
CANCER_TYPES: tuple[str, ...] = (
    "BREAST",
    "CNS",
    "COLON",
    "LEUKEMIA",
    "MELANOMA",
    "NSCLC",
    "OVARIAN",
    "PROSTATE",
    "RENAL",
)

# Replicate lines of the source labelled by cell-line name rather than by cancer type.
_REPLICATES = {
    "K562A-repro": "LEUKEMIA",  # K562: chronic myelogenous leukaemia line
    "K562B-repro": "LEUKEMIA",
    "MCF7A-repro": "BREAST",  # MCF7: breast adenocarcinoma line
    "MCF7D-repro": "BREAST",
}
_UNKNOWN = "UNKNOWN"
_FILE = "nci60.npz"


def _cancer_type(labels: np.ndarray) -> pd.Categorical:
    mapped: list[str | None] = []
    for lab in labels.tolist():
        if lab == _UNKNOWN:
            mapped.append(None)
        elif lab in _REPLICATES:
            mapped.append(_REPLICATES[lab])
        elif lab in CANCER_TYPES:
            mapped.append(lab)
        else:  # the shipped file is fixed; this guards against a corrupted re-derivation
            raise OmicsEmbedError(f"{_FILE}: unexpected label {lab!r}; re-run _make_nci60.py")
    return pd.Categorical(mapped, categories=list(CANCER_TYPES))


def nci60() -> ad.AnnData:
    """Load the NCI60 cancer cell line microarray subset embedded in the package.

    64 cancer cell lines (Ross et al. 2000, Nat Genet 24:227) x the 2000 most variable of 6830
    genes, as distributed by the ISLP 0.6.0 package (BSD-style licence). The full provenance,
    licence and the exact transformation are in the ``NOTICE`` file next to the data; nothing
    is downloaded.

    Returns
    -------
    anndata.AnnData
        A fresh object (safe to modify) with

        - ``X``: float32 array (64, 2000), log2 expression ratios (roughly -7 to 9; each line
          was median-centred over the 6830 source genes), no missing values;
        - ``obs_names``: ``"nci60_00"`` ... ``"nci60_63"`` (source row order; the source has no
          cell-line names); ``obs["source_row"]`` (int) is the 0-based source row;
        - ``obs["label"]``: the source label verbatim (14 values, including the replicate
          lines ``K562A-repro``, ``K562B-repro``, ``MCF7A-repro``, ``MCF7D-repro`` and
          ``UNKNOWN``);
        - ``obs["cancer_type"]``: categorical with the 9 :data:`CANCER_TYPES`; K562 replicates
          map to ``LEUKEMIA``, MCF7 replicates to ``BREAST``, and the ``UNKNOWN`` line is
          missing (NaN) — drop it (``adata[adata.obs["cancer_type"].notna()]``) before
          classification benchmarks;
        - ``var_names``: ``"gene_<i>"`` where ``i`` is the 0-based column in the 6830-gene
          source (the source has no gene names); ``var["source_column"]`` holds ``i``;
        - ``uns["dataset"]``: source and transformation notes.

    Raises
    ------
    OmicsEmbedError
        If the embedded file is missing or corrupted (a broken installation).

    """
    import anndata as ad

    resource = importlib.resources.files("omicsembed.datasets").joinpath(_FILE)
    try:
        with importlib.resources.as_file(resource) as path, np.load(path) as npz:
            x = np.asarray(npz["X"], dtype=np.float32)
            gene_index = np.asarray(npz["gene_index"], dtype=np.int64)
            source_row = np.asarray(npz["source_row"], dtype=np.int64)
            labels = np.asarray(npz["label"]).astype(str)
    except (OSError, KeyError, ValueError) as exc:
        raise OmicsEmbedError(
            f"cannot read the embedded dataset {_FILE} ({exc}); reinstall omicsembed"
        ) from exc

    obs = pd.DataFrame(
        {
            "label": pd.Series(labels, dtype=str).to_numpy(),
            "cancer_type": _cancer_type(labels),
            "source_row": source_row,
        },
        index=pd.Index([f"nci60_{r:02d}" for r in source_row.tolist()]),
    )
    var = pd.DataFrame(
        {"source_column": gene_index},
        index=pd.Index([f"gene_{g}" for g in gene_index.tolist()]),
    )
    return ad.AnnData(
        X=x,
        obs=obs,
        var=var,
        uns={
            "dataset": {
                "name": "nci60",
                "source": "ISLP 0.6.0 (PyPI), NCI60data.npy / NCI60labs.csv",
                "reference": "Ross et al. 2000, Nature Genetics 24:227-235",
                "values": "log2 ratio (cDNA microarray), float32",
                "transformation": "2000 genes of largest variance (ddof=1) of 6830; see NOTICE",
            }
        },
    )
