"""Optional Julia reference paths (BoltzmannMachines.jl deep Boltzmann machines, Flux VAEs).

The Julia package ``julia/OmicsEmbedReference`` of the source tree wraps the reference
implementations the paper's authors used (Hess, Hackenberg & Binder 2020) behind the same
arguments as omicsembed's own models, so that a machine with Julia can compare the languages on
the same data. Julia is optional: nothing here is imported by ``import omicsembed``; juliacall
is imported on first use, and a clear :class:`JuliaUnavailableError` says what is missing.

Set ``OMICSEMBED_JULIA_PROJECT`` to the ``OmicsEmbedReference`` folder when omicsembed is not
run from a source checkout. When torch is already imported, juliacall may clash with it in the
same process (PySR's experience); run Julia work in its own process then.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from omicsembed.exceptions import OmicsEmbedError

__all__ = [
    "JuliaUnavailableError",
    "fit_bernoulli_vae",
    "fit_dbm",
    "generate_bernoulli_vae",
    "julia_available",
    "julia_project",
    "sample_dbm",
]


class JuliaUnavailableError(OmicsEmbedError, RuntimeError):
    """Julia, juliacall or the OmicsEmbedReference project is not available."""


def julia_project() -> Path:
    """Folder of the ``OmicsEmbedReference`` Julia package.

    ``OMICSEMBED_JULIA_PROJECT`` if set, else ``julia/OmicsEmbedReference`` of the source
    checkout this module lives in.

    Raises
    ------
    JuliaUnavailableError
        When the folder has no ``Project.toml``.

    """
    configured = os.environ.get("OMICSEMBED_JULIA_PROJECT")
    folder = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[2] / "julia" / "OmicsEmbedReference"
    )
    if not (folder / "Project.toml").is_file():
        raise JuliaUnavailableError(
            f"the Julia project OmicsEmbedReference was not found at {folder}; set "
            "OMICSEMBED_JULIA_PROJECT to the julia/OmicsEmbedReference folder of the source tree"
        )
    return folder


def julia_available() -> bool:
    """Whether juliacall can be imported (it then provides a Julia)."""
    return importlib.util.find_spec("juliacall") is not None


@cache
def _reference() -> Any:
    if not julia_available():
        raise JuliaUnavailableError(
            "Julia is not available: install the optional extra (pip install "
            "'omicsembed[julia]'), which brings juliacall; it installs Julia on first use"
        )
    project = julia_project()
    os.environ.setdefault("PYTHON_JULIAPKG_PROJECT", str(project))
    juliacall = importlib.import_module("juliacall")
    main = juliacall.Main
    main.seval("import Pkg")
    main.Pkg.activate(str(project))
    main.Pkg.instantiate()
    main.seval("using OmicsEmbedReference")
    return main.OmicsEmbedReference


def _binary_matrix(X: ArrayLike) -> np.ndarray:
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2 or not np.isin(matrix, (0.0, 1.0)).all():
        raise OmicsEmbedError("the Julia reference models need a 2-D 0/1 matrix")
    return matrix


def fit_dbm(X: ArrayLike, **options: Any) -> Any:
    """Train a DBM with BoltzmannMachines.jl ``fitdbm`` (see ``OmicsEmbedReference.fit_dbm``).

    Options: ``hidden_sizes``, ``epochs``, ``epochs_pretraining``, ``learning_rate``,
    ``learning_rate_pretraining``, ``batch_size_pretraining``, ``n_particles``, ``seed`` — the
    names of :class:`omicsembed.models.DeepBoltzmannMachine`. BoltzmannMachines.jl always
    sweeps the particles synchronously: compare it with ours at ``gibbs_schedule="synchronous"``.
    Returns the Julia DBM object.
    """
    return _reference().fit_dbm(_binary_matrix(X), **options)


def sample_dbm(dbm: Any, n_samples: int, *, burn_in: int = 50, seed: int = 0) -> list[np.ndarray]:
    """Gibbs samples of all layers of a Julia DBM (visible first), as numpy arrays."""
    layers = _reference().sample_dbm(dbm, n_samples, burn_in=burn_in, seed=seed)
    return [np.asarray(layer) for layer in layers]


def fit_bernoulli_vae(X: ArrayLike, **options: Any) -> Any:
    """Train the Flux Bernoulli VAE (options as :class:`omicsembed.models.BernoulliVAE`)."""
    return _reference().fit_bernoulli_vae(_binary_matrix(X), **options)


def generate_bernoulli_vae(
    vae: Any, n_samples: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic binary cells and binary latent codes from a Flux Bernoulli VAE."""
    features, latent = _reference().generate_bernoulli_vae(vae, n_samples, seed=seed)
    return np.asarray(features), np.asarray(latent)
