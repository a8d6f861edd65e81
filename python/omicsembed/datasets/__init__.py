"""Embedded real datasets, shipped inside the package with attribution (see ``NOTICE``).

- :func:`nci60` — NCI60 cancer cell lines, 64 lines x 2000 most variable genes (log2 ratios).
- :func:`pbmc68k_reduced` — 10x Genomics PBMCs (scanpy's subset), 700 cells x 400 variable
  genes of integer UMI counts, with cell-type labels.
"""

from __future__ import annotations

from omicsembed.datasets._nci60 import nci60
from omicsembed.datasets._pbmc68k import pbmc68k_reduced

__all__ = ["nci60", "pbmc68k_reduced"]
