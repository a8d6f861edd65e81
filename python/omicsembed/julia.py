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
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from anndata import AnnData
from numpy.typing import ArrayLike
from scipy import sparse

from omicsembed._clamping import Clamped, clamp_arrays
from omicsembed.exceptions import InvalidInputError, OmicsEmbedError, ShapeMismatchError
from omicsembed.io import anndata_matrix

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


def _check_n_samples(n_samples: int) -> None:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
        raise InvalidInputError(f"n_samples must be an integer ≥ 1, got {n_samples!r}")
    if n_samples < 1:
        raise InvalidInputError(f"n_samples must be ≥ 1, got {n_samples}")


def _cells(from_cells: AnnData | ArrayLike, layer: str | None) -> np.ndarray:
    """Return ``from_cells`` as a dense 0/1 float64 matrix with at least one row.

    ``.X`` or ``.layers[layer]`` of AnnData, or an array; the columns are taken in order (the
    Julia models have no gene names).
    """
    matrix = anndata_matrix(from_cells, layer)
    cells = _binary_matrix(matrix.toarray() if sparse.issparse(matrix) else matrix)
    if cells.shape[0] == 0:
        raise InvalidInputError("from_cells has no cells (rows)")
    return cells


def _layer_sizes(hidden_sizes: Sequence[int]) -> np.ndarray:
    """Hidden layer sizes as an int64 array, for the Julia methods.

    juliacall passes it as an ``AbstractVector{Int64}``; a Python list would arrive as a
    vector of Python objects, which the methods' ``AbstractVector{<:Integer}`` refuses.
    """
    sizes = np.asarray([int(size) for size in hidden_sizes], dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (sizes < 1).any():
        raise InvalidInputError(
            f"hidden_sizes must name at least one layer of ≥ 1 units, got {list(hidden_sizes)}"
        )
    return sizes


def fit_dbm(
    X: ArrayLike,
    hidden_sizes: Sequence[int] = (100, 20, 10),
    *,
    pretraining_epochs: int | None = None,
    epochs: int = 10,
    learning_rate: float = 0.005,
    pretraining_learning_rate: float | None = None,
    batch_size: int = 1,
    fine_tuning_batch_size: int | None = None,
    n_particles: int = 100,
    n_gibbs_sweeps: int = 5,
    gibbs_schedule: str = "synchronous",
    seed: int = 0,
) -> Any:
    """Train a DBM with BoltzmannMachines.jl ``fitdbm`` (``OmicsEmbedReference.fit_dbm``).

    The arguments and defaults are those of :class:`omicsembed.models.DeepBoltzmannMachine`
    (Lenz et al.'s BoltzmannMachines.jl, as used by Hess et al. 2020), so the same call trains
    both. BoltzmannMachines.jl fine-tunes on the whole data with 5 synchronous Gibbs sweeps of
    its particles: compare it with ours at ``gibbs_schedule="synchronous"``; other values of
    ``fine_tuning_batch_size``, ``n_gibbs_sweeps`` and ``gibbs_schedule`` are refused.

    Returns
    -------
    Any
        The Julia DBM object (for :func:`sample_dbm`).

    Raises
    ------
    InvalidInputError
        Settings BoltzmannMachines.jl cannot follow.
    OmicsEmbedError
        If ``X`` is not a 2-D 0/1 matrix.
    JuliaUnavailableError
        Without Julia.

    """
    fixed = {
        "fine_tuning_batch_size": (fine_tuning_batch_size, None),
        "n_gibbs_sweeps": (n_gibbs_sweeps, 5),
        "gibbs_schedule": (gibbs_schedule, "synchronous"),
    }
    for name, (value, supported) in fixed.items():
        if value != supported:
            raise InvalidInputError(
                f"BoltzmannMachines.jl fitdbm has no setting for {name}={value!r} (it uses "
                f"{supported!r}); leave it at that value to compare with it"
            )
    x, sizes = _binary_matrix(X), _layer_sizes(hidden_sizes)  # checked before Julia starts
    return _reference().fit_dbm(
        x,
        hidden_sizes=sizes,
        pretraining_epochs=pretraining_epochs,
        epochs=epochs,
        learning_rate=learning_rate,
        pretraining_learning_rate=pretraining_learning_rate,
        batch_size=batch_size,
        n_particles=n_particles,
        seed=seed,
    )


def sample_dbm(
    dbm: Any, n_samples: int, *, burn_in: int = 50, seed: int = 0, clamped: Clamped | None = None
) -> list[np.ndarray]:
    """Gibbs samples of all layers of a Julia DBM (visible first), as numpy arrays.

    The arguments of :meth:`omicsembed.models.DeepBoltzmannMachine.sample`: fresh particles
    (``initparticles``) and ``burn_in`` sweeps of ``gibbssample!``, or of
    ``gibbssamplecond!`` with ``clamped`` visible units (conditional sampling). The Julia
    DBM knows its features by index only, so ``clamped`` names them by index.

    Returns
    -------
    list of numpy.ndarray
        float64 0/1 arrays, (n_samples, p) for the visible layer then (n_samples, n_l) per
        hidden layer.

    Raises
    ------
    InvalidInputError
        ``n_samples`` not an integer ≥ 1, or a bad ``clamped`` (a feature name, an index
        outside the visible units, a value other than 0/1).
    ShapeMismatchError
        A clamp mask or values of the wrong shape.
    JuliaUnavailableError
        Without Julia.

    """
    _check_n_samples(n_samples)
    # Python ints: a numpy scalar may reach Julia as a 0-d array under older juliacall
    n, options = int(n_samples), {"burn_in": int(burn_in), "seed": int(seed)}
    reference = _reference()  # a Julia DBM exists only once Julia runs
    if clamped is None:
        layers = reference.sample_dbm(dbm, n, **options)
    else:
        mask, values = clamp_arrays(clamped, n, reference.n_features(dbm), None)
        layers = reference.sample_dbm(
            dbm,
            n,
            **options,
            clamp_mask=mask,
            clamp_values=np.ascontiguousarray(values, dtype=np.float64),
        )
    return [np.asarray(layer) for layer in layers]


def fit_bernoulli_vae(
    X: ArrayLike,
    *,
    n_latent: int = 10,
    hidden_sizes: Sequence[int] = (100,),
    learning_rate: float = 1e-4,
    batch_size: int = 32,
    max_epochs: int = 300,
    seed: int = 0,
) -> Any:
    """Train the Flux Bernoulli VAE (``OmicsEmbedReference.fit_bernoulli_vae``).

    The arguments and defaults are those of :class:`omicsembed.models.BernoulliVAE` (Hess et
    al. 2020 §2.4); the Flux model trains for all ``max_epochs``, without the validation split
    and early stopping of ours.

    Returns
    -------
    Any
        The Julia VAE (for :func:`generate_bernoulli_vae`).

    Raises
    ------
    OmicsEmbedError
        If ``X`` is not a 2-D 0/1 matrix.
    JuliaUnavailableError
        Without Julia.

    """
    x, sizes = _binary_matrix(X), _layer_sizes(hidden_sizes)  # checked before Julia starts
    return _reference().fit_bernoulli_vae(
        x,
        n_latent=n_latent,
        hidden_sizes=sizes,
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_epochs=max_epochs,
        seed=seed,
    )


def generate_bernoulli_vae(
    vae: Any,
    n_samples: int,
    *,
    seed: int = 0,
    from_cells: AnnData | ArrayLike | None = None,
    layer: str | None = None,
    dichotomize_latent: str = "zero",
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic binary cells and binary latent codes from a Flux Bernoulli VAE.

    The arguments of :meth:`omicsembed.models.BernoulliVAE.generate`: z from the prior N(0, I)
    or, with ``from_cells``, from the posterior q(z | x) of cell ``i mod n_cells`` for sample
    ``i``; the cells Bernoulli draws from the decoder mean; the latent codes dichotomised at 0
    (``"zero"``) or at each unit's median over the draws (``"median"``). The Flux model has
    no gene names: the columns of ``from_cells`` are taken in the order of the training data.

    Returns
    -------
    features, latent : numpy.ndarray
        uint8 (n_samples, n_features) and (n_samples, n_latent) 0/1 arrays.

    Raises
    ------
    InvalidInputError
        ``n_samples`` not an integer ≥ 1, an unknown ``dichotomize_latent``, an unknown
        ``layer`` or ``layer`` without AnnData, or ``from_cells`` without rows.
    OmicsEmbedError
        ``from_cells`` that is not a 2-D 0/1 matrix.
    ShapeMismatchError
        ``from_cells`` with another number of features than the model.
    JuliaUnavailableError
        Without Julia.

    """
    _check_n_samples(n_samples)
    if dichotomize_latent not in ("zero", "median"):
        raise InvalidInputError(
            f"dichotomize_latent must be 'zero' or 'median', got {dichotomize_latent!r}"
        )
    if from_cells is None and layer is not None:
        raise InvalidInputError("layer= selects the matrix of from_cells; give from_cells")
    cells = None if from_cells is None else _cells(from_cells, layer)  # before Julia starts
    reference = _reference()
    if cells is not None and cells.shape[1] != (n_features := reference.n_features(vae)):
        raise ShapeMismatchError(
            f"from_cells has {cells.shape[1]} features (columns); the model has {n_features}"
        )
    features, codes = reference.generate_bernoulli_vae(
        vae, int(n_samples), seed=int(seed), cells=cells
    )
    z = np.asarray(codes, dtype=np.float64)
    threshold = np.median(z, axis=0) if dichotomize_latent == "median" else 0.0
    return np.asarray(features, dtype=np.uint8), (z > threshold).astype(np.uint8)
