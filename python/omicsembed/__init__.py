"""omicsembed: embeddings of omics data and explanations of generative models.

Submodules are imported lazily (``import omicsembed`` does not import torch):

- :mod:`omicsembed.stats` — Tau index, tissue-specific Wasserstein distance (Rust kernels)
- :mod:`omicsembed.pp` — preprocessing (log transforms, ...)
- :mod:`omicsembed.models` — estimators (factorized embeddings, deep Boltzmann machines,
  Bernoulli VAE)
- :mod:`omicsembed.explain` — log-linear exploration of generative models
- :mod:`omicsembed.simulate` — synthetic data with planted structure
- :mod:`omicsembed.evaluate` — benchmarks of embeddings (kNN classification, reconstruction)
- :mod:`omicsembed.datasets` — embedded real datasets (NCI60)
- :mod:`omicsembed.pl` — plots
- :mod:`omicsembed.io` — reading and writing AnnData and tables
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from omicsembed._core import __version__
from omicsembed.exceptions import (
    ConvergenceError,
    InvalidInputError,
    OmicsEmbedError,
    ShapeMismatchError,
)

if TYPE_CHECKING:
    from omicsembed import (
        datasets,
        evaluate,
        explain,
        io,
        models,
        pl,
        pp,
        simulate,
        stats,
        train,
    )

__all__ = [
    "ConvergenceError",
    "InvalidInputError",
    "OmicsEmbedError",
    "ShapeMismatchError",
    "__version__",
    "datasets",
    "evaluate",
    "explain",
    "io",
    "models",
    "pl",
    "pp",
    "settings",
    "simulate",
    "stats",
    "train",
]

_SUBMODULES = {
    "datasets",
    "evaluate",
    "explain",
    "io",
    "models",
    "pl",
    "pp",
    "simulate",
    "stats",
    "train",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"omicsembed.{name}")
    if name == "settings":
        return importlib.import_module("omicsembed._settings").settings
    raise AttributeError(f"module 'omicsembed' has no attribute {name!r}")
