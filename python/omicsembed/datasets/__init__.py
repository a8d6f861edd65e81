"""Embedded real datasets, shipped inside the package with attribution (see ``NOTICE``).

- :func:`nci60` — NCI60 cancer cell lines, 64 lines x 2000 most variable genes (log2 ratios).
- :func:`pbmc68k_reduced` — 10x Genomics PBMCs (scanpy's subset), 700 cells x 400 variable
  genes of integer UMI counts, with cell-type labels.
- :func:`read_shared_folder` — loader for evaluation data folders in the ``shared/data`` layout
  (``expression.npz``), e.g. the Tasic et al. 2016 cortex neurons; never shipped.
"""

from __future__ import annotations

from omicsembed.datasets._nci60 import nci60
from omicsembed.datasets._pbmc68k import pbmc68k_reduced
from omicsembed.datasets.shared import read_shared_folder

__all__ = ["nci60", "pbmc68k_reduced", "read_shared_folder"]
