"""Typed stub of the Rust extension ``omicsembed._core`` (checked by ``mypy.stubtest``)."""

from typing import final as _final

import numpy as _np
from numpy.typing import NDArray as _NDArray

__version__: str
__all__ = [
    "NarrowSampler",
    "__version__",
    "_sampler_parallelism_allowed",
    "contingency_table",
    "dbm_fine_tune",
    "g_squared",
    "gibbs_sample",
    "ipf",
    "is_decomposable",
    "log_likelihood_ais",
    "log_likelihood_exact",
    "log_partition_ais",
    "log_partition_exact",
    "log_prob_lower_bound",
    "loglinear_closed_form",
    "mean_field",
    "persistent_contrastive_divergence",
    "reconstruction_error",
    "select_features_loglinear",
    "stack_rbms",
    "tau_index",
    "tissue_wasserstein",
]

# --- tissue (Tau index, tissue-specific Wasserstein distance) ---

def tau_index(
    x: _NDArray[_np.float32] | _NDArray[_np.float64],
    codes: _NDArray[_np.int64],
    n_groups: int,
) -> _NDArray[_np.float64]: ...
def tissue_wasserstein(
    x: _NDArray[_np.float32] | _NDArray[_np.float64],
    codes: _NDArray[_np.int64],
    n_groups: int,
) -> _NDArray[_np.float64]: ...

# --- loglinear (contingency tables, G², IPF, stepwise selection, patterns) ---

def contingency_table(
    x: _NDArray[_np.uint8], levels: list[int] | None = None
) -> _NDArray[_np.int64]: ...
def g_squared(observed: _NDArray[_np.float64], fitted: _NDArray[_np.float64]) -> float: ...
def ipf(
    table: _NDArray[_np.float64],
    margins: list[list[int]],
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> tuple[_NDArray[_np.float64], int, bool, float]: ...
def loglinear_closed_form(
    table: _NDArray[_np.float64], margins: list[list[int]]
) -> _NDArray[_np.float64]: ...
def is_decomposable(margins: list[list[int]], n_vars: int) -> bool: ...
def select_features_loglinear(
    x: _NDArray[_np.uint8],
    u: _NDArray[_np.uint8] | None,
    k: int,
    conditional: bool = False,
    n_permutations: int = 0,
    seed: int = 0,
) -> tuple[
    _NDArray[_np.int64],
    _NDArray[_np.int64],
    _NDArray[_np.float64],
    _NDArray[_np.float64],
    _NDArray[_np.float64] | None,
]: ...

# --- boltzmann (Bernoulli RBM / DBM: PCD, mean field, Gibbs sampling, AIS) ---

def persistent_contrastive_divergence(
    x: _NDArray[_np.float64],
    n_hidden: int,
    *,
    learning_rates: list[float],
    batch_size: int = 1,
    cd_steps: int = 1,
    pcd: bool = True,
    up_factor: float = 1.0,
    down_factor: float = 1.0,
    seed: int = 0,
    start: tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]] | None = None,
    callback: object | None = None,
) -> tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]: ...
def stack_rbms(
    x: _NDArray[_np.float64],
    hidden_sizes: list[int],
    *,
    learning_rates: list[float],
    batch_size: int = 1,
    seed: int = 0,
    callback: object | None = None,
) -> list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]]: ...
def dbm_fine_tune(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    x: _NDArray[_np.float64],
    *,
    learning_rates: list[float],
    n_particles: int = 100,
    n_gibbs_sweeps: int = 5,
    synchronous: bool = False,
    batch_size: int | None = None,
    eps: float = 0.001,
    max_iter: int = 1000,
    seed: int = 0,
    callback: object | None = None,
) -> list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]]: ...
def mean_field(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    x: _NDArray[_np.float64],
    *,
    eps: float = 0.001,
    max_iter: int = 1000,
) -> list[_NDArray[_np.float64]]: ...
def gibbs_sample(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    n_samples: int,
    *,
    n_sweeps: int,
    seed: int = 0,
    init: list[_NDArray[_np.uint8]] | None = None,
    clamp_mask: _NDArray[_np.uint8] | None = None,
) -> list[_NDArray[_np.uint8]]: ...
def log_partition_ais(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    *,
    temperatures: list[float] | None = None,
    n_temperatures: int = 100,
    n_particles: int = 100,
    burn_in: int = 5,
    seed: int = 0,
) -> tuple[float, float, _NDArray[_np.float64]]: ...
def log_partition_exact(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
) -> float: ...
def log_likelihood_exact(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    x: _NDArray[_np.float64],
    *,
    log_z: float | None = None,
) -> _NDArray[_np.float64]: ...
def log_likelihood_ais(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    x: _NDArray[_np.float64],
    *,
    log_z: float,
    temperatures: list[float] | None = None,
    n_temperatures: int = 100,
    n_particles: int = 100,
    burn_in: int = 5,
    seed: int = 0,
) -> _NDArray[_np.float64]: ...
def log_prob_lower_bound(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    x: _NDArray[_np.float64],
    *,
    log_z: float,
    eps: float = 0.001,
    max_iter: int = 1000,
) -> _NDArray[_np.float64]: ...
def reconstruction_error(
    params: list[tuple[_NDArray[_np.float64], _NDArray[_np.float64], _NDArray[_np.float64]]],
    x: _NDArray[_np.float64],
    *,
    eps: float = 0.001,
    max_iter: int = 1000,
) -> _NDArray[_np.float64]: ...

# --- sampler (narrow-format minibatch sampler) ---

@_final
class NarrowSampler:
    def __new__(
        cls,
        x: _NDArray[_np.float32] | _NDArray[_np.float64],
        *,
        batch_size: int = 10000,
        seed: int = 0,
        mask: _NDArray[_np.uint8] | None = None,
        descriptors: _NDArray[_np.int64] | None = None,
        holdout_fraction: float = 0.0,
        holdout_seed: int = 0,
        side: str = "all",
        drop_last: bool = False,
    ) -> NarrowSampler: ...
    def batch(
        self, index: int, epoch: int
    ) -> tuple[
        _NDArray[_np.int64], _NDArray[_np.int64], _NDArray[_np.int64] | None, _NDArray[_np.float32]
    ]: ...
    @property
    def n_entries(self) -> int: ...
    @property
    def n_batches(self) -> int: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def n_descriptors(self) -> int: ...
    @property
    def has_descriptors(self) -> bool: ...
    @property
    def index_bytes(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def holdout_fraction(self) -> float: ...
    @property
    def holdout_seed(self) -> int: ...
    @property
    def side(self) -> str: ...
    @property
    def drop_last(self) -> bool: ...

def _sampler_parallelism_allowed() -> bool: ...
