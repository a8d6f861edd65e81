"""Development-time derivation of the embedded ``pbmc68k_reduced.npz`` (not used at run time).

Usage::

    pip download scanpy==1.11.5 --no-deps -d /tmp/scanpy
    cd /tmp/scanpy && unzip -o scanpy-1.11.5-py3-none-any.whl 'scanpy/datasets/*'
    python python/omicsembed/datasets/_make_pbmc68k.py \
        /tmp/scanpy/scanpy/datasets/10x_pbmc68k_reduced.h5ad

The source is scanpy's ``pbmc68k_reduced`` (BSD-3-Clause; 10x Genomics "Fresh 68k PBMCs
(Donor A)" data; see ``NOTICE``): 700 cells x 765 genes. Its ``.raw.X`` holds
``log1p(counts / n_counts * 1e4)`` rounded to 3 decimals, where ``n_counts`` (``.obs``) is the
cell's total count over *all* genes of the original data (not only the 765 kept here).

Transformation (also written down in ``NOTICE``):

1. ``counts = round(expm1(raw.X) * n_counts / 1e4)`` in float64 (largest distance to the
   nearest integer before rounding: 0.082, so the rounding is unambiguous; the smallest
   non-zero value is 1 in every cell);
2. gene variance = ``numpy.var(log1p(counts), axis=0, ddof=1)``; keep the 400 genes of largest
   variance (ties broken by the lower column index; there is no tie at the cut-off), sorted
   ascending so that genes stay in source order; cells keep the source order;
3. save with ``numpy.savez_compressed`` as plain (non-object) arrays:

   - ``data`` (uint16), ``indices`` (uint16), ``indptr`` (int32), ``shape`` (int64, 2): the
     cells x genes count matrix in CSR form;
   - ``var_names`` (unicode): gene symbols; ``gene_index`` (int32): 0-based column in the
     765-gene source;
   - ``obs_names`` (unicode): cell barcodes;
   - ``n_counts`` (int32), ``n_genes`` (int32), ``percent_mito`` (float32): the source
     ``.obs`` columns (totals over the original, unreduced data);
   - ``<key>_codes`` (int8) and ``<key>_categories`` (unicode) for the categorical ``.obs``
     columns ``bulk_labels``, ``louvain`` and ``phase`` (categories in source order);
   - ``max_dropped_variance`` (float64 scalar): the largest variance among dropped genes.
"""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

N_TOP = 400
N_CELLS, N_GENES = 700, 765
CATEGORICAL = ("bulk_labels", "louvain", "phase")
OUT = Path(__file__).with_name("pbmc68k_reduced.npz")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(source: str) -> None:
    """Derive ``pbmc68k_reduced.npz`` from scanpy's ``10x_pbmc68k_reduced.h5ad``."""
    import anndata as ad

    path = Path(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = ad.read_h5ad(path)
    if adata.raw is None or adata.raw.shape != (N_CELLS, N_GENES):
        raise SystemExit(f"unexpected source: raw shape {getattr(adata.raw, 'shape', None)}")
    raw = adata.raw.X
    logn = (raw.toarray() if sp.issparse(raw) else np.asarray(raw)).astype(np.float64)
    n_counts = adata.obs["n_counts"].to_numpy(dtype=np.float64)
    if not np.array_equal(n_counts, np.round(n_counts)):
        raise SystemExit("n_counts is not integral")

    scaled = np.expm1(logn) * n_counts[:, None] / 1e4
    counts = np.round(scaled)
    gap = float(np.abs(scaled - counts).max())
    if gap >= 0.25:
        raise SystemExit(f"counts are not close to integers (max gap {gap})")
    smallest = np.array([row[row > 0].min() for row in counts])
    if not np.all(smallest == 1):
        raise SystemExit("some cell's smallest non-zero count is not 1")
    back = np.log1p(counts / n_counts[:, None] * 1e4)
    error = float(np.abs(back - logn).max())

    var = np.log1p(counts).var(axis=0, ddof=1)
    order = np.lexsort((np.arange(N_GENES), -var))
    keep = np.sort(order[:N_TOP])
    max_dropped = float(var[order[N_TOP:]].max())
    if float(var[keep].min()) <= max_dropped:
        raise SystemExit("tie at the variance cut-off; the selection would not be unique")

    matrix = sp.csr_matrix(counts[:, keep])
    matrix.sort_indices()
    if matrix.data.max() > np.iinfo(np.uint16).max:
        raise SystemExit("counts do not fit uint16")
    arrays: dict[str, np.ndarray] = {
        "data": matrix.data.astype(np.uint16),
        "indices": matrix.indices.astype(np.uint16),
        "indptr": matrix.indptr.astype(np.int32),
        "shape": np.asarray(matrix.shape, dtype=np.int64),
        "var_names": np.asarray(adata.var_names[keep], dtype=str),
        "gene_index": keep.astype(np.int32),
        "obs_names": np.asarray(adata.obs_names, dtype=str),
        "n_counts": n_counts.astype(np.int32),
        "n_genes": adata.obs["n_genes"].to_numpy().astype(np.int32),
        "percent_mito": adata.obs["percent_mito"].to_numpy().astype(np.float32),
        "max_dropped_variance": np.asarray(max_dropped, dtype=np.float64),
    }
    for key in CATEGORICAL:
        column = adata.obs[key]
        arrays[f"{key}_codes"] = column.cat.codes.to_numpy().astype(np.int8)
        arrays[f"{key}_categories"] = np.asarray(column.cat.categories.astype(str), dtype=str)
    np.savez_compressed(OUT, allow_pickle=False, **arrays)

    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), {matrix.shape}, nnz {matrix.nnz}")
    print(f"sha256 source   {_sha256(path)}")
    print(f"sha256 npz      {_sha256(OUT)}")
    print(f"max distance to nearest integer before rounding: {gap:.4f}")
    print(f"max |log1p(counts / n_counts * 1e4) - raw.X|: {error:.2e}")
    print(f"max count {int(matrix.data.max())}")
    print(
        f"kept variance range [{var[keep].min():.6g}, {var[keep].max():.6g}]; "
        f"largest dropped {max_dropped:.6g}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
