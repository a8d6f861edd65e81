"""Development-time derivation of the embedded NCI60 file ``nci60.npz`` (not used at run time).

Usage::

    python python/omicsembed/datasets/_make_nci60.py /path/to/ISLP/data

``/path/to/ISLP/data`` is the ``ISLP/data`` folder of the unpacked ``ISLP`` 0.6.0 wheel from PyPI
(BSD-style licence, see ``NOTICE``). It must hold ``NCI60data.npy`` (64 x 6830 float64) and
``NCI60labs.csv`` (one column ``label``).

Transformation (also written down in ``NOTICE``):

1. gene variance = ``numpy.var(X, axis=0, ddof=1)`` on the float64 source matrix;
2. keep the 2000 genes of largest variance (ties broken by the lower column index; there are no
   ties at the cut-off), then sort the kept column indices ascending so that genes stay in
   source order;
3. cast the kept values to float32; rows (cell lines) are kept in source order;
4. save with ``numpy.savez_compressed`` as plain (non-object) arrays:

   - ``X``: float32 (64, 2000), the log2 ratios;
   - ``gene_index``: int32 (2000,), 0-based column index in the source matrix (genes are named
     ``gene_<index>`` by the loader because the source has no gene names);
   - ``source_row``: int32 (64,), 0-based row index in the source matrix (the cell-line order);
   - ``label``: unicode (64,), the source label verbatim;
   - ``max_dropped_variance``: float64 scalar, the largest source variance among dropped genes
     (every kept gene has a larger variance; the tests check this on the shipped file).
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

import numpy as np

N_TOP = 2000
N_ROWS, N_COLS = 64, 6830
OUT = Path(__file__).with_name("nci60.npz")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(data_dir: str) -> None:
    """Derive ``nci60.npz`` from the ISLP data folder ``data_dir``."""
    folder = Path(data_dir)
    x_path, lab_path = folder / "NCI60data.npy", folder / "NCI60labs.csv"
    x = np.load(x_path, allow_pickle=False)
    if x.shape != (N_ROWS, N_COLS) or x.dtype != np.float64 or not np.isfinite(x).all():
        raise SystemExit(f"unexpected source matrix: shape {x.shape}, dtype {x.dtype}")
    with lab_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = np.array([r["label"] for r in rows], dtype=str)
    if labels.shape != (N_ROWS,):
        raise SystemExit(f"expected {N_ROWS} labels, got {labels.shape}")

    var = x.var(axis=0, ddof=1)
    order = np.lexsort((np.arange(N_COLS), -var))  # decreasing variance, then lower index
    keep = np.sort(order[:N_TOP])
    max_dropped = float(var[order[N_TOP:]].max())
    if float(var[keep].min()) <= max_dropped:
        raise SystemExit("tie at the variance cut-off; the selection would not be unique")

    np.savez_compressed(
        OUT,
        X=x[:, keep].astype(np.float32),
        gene_index=keep.astype(np.int32),
        source_row=np.arange(N_ROWS, dtype=np.int32),
        label=labels,
        max_dropped_variance=np.float64(max_dropped),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print(f"sha256 NCI60data.npy {_sha256(x_path)}")
    print(f"sha256 NCI60labs.csv {_sha256(lab_path)}")
    print(f"sha256 nci60.npz     {_sha256(OUT)}")
    print(
        f"kept variance range [{var[keep].min():.6g}, {var[keep].max():.6g}]; "
        f"max dropped {max_dropped:.6g}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
