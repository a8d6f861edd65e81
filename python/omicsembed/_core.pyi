"""Typed stub of the Rust extension ``omicsembed._core`` (checked by ``mypy.stubtest``)."""

from typing import final as _final

import numpy as _np
from numpy.typing import NDArray as _NDArray

__version__: str
__all__ = [
    "NarrowSampler",
    "__version__",
    "_sampler_parallelism_allowed",
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

# --- boltzmann (Bernoulli RBM / DBM: PCD, mean field, Gibbs sampling, AIS) ---

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
