"""Embedded real datasets, shipped inside the package with attribution (see ``NOTICE``).

- :func:`nci60` — NCI60 cancer cell lines, 64 lines x 2000 most variable genes (log2 ratios).
"""

from __future__ import annotations

from omicsembed.datasets._nci60 import nci60

__all__ = ["nci60"]
