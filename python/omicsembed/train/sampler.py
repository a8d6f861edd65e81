"""Narrow-format minibatch sampler for factorized embeddings.

Factorized embeddings (Trofimov et al. 2020, "Factorized embeddings learns rich and biologically
meaningful embedding spaces using factorized tensor decomposition", *Bioinformatics* 36(S1),
§2.1) train an MLP on the *narrow format* of an n×m matrix X: one training example per entry
(sample i, gene j, value X[i, j]). The original code materialised the n·m table of index pairs
and shuffled it with ``torch.utils.data.DataLoader(shuffle=True)``: 16·n·m bytes of int64 pairs
plus a per-row collate. :class:`NarrowFormatSampler` serves the same shuffled minibatches from the
Rust core without that table:

- a keyed bijection of the N included entries (6-round Feistel network with cycle-walking,
  keys from ``(seed, epoch)``) addresses batch b of epoch e directly, so every included entry
  appears exactly once per epoch and the result does not depend on the number of threads;
- missing values (NaN), an explicit mask and a hash-based held-out split exclude entries; when
  anything is excluded a rank/select bitmap of n·m bits (n·m/7 bytes with its block counts,
  ≈ 1/28 of the float32 matrix) maps permuted ranks to entries; otherwise no index memory is
  used at all;
- X is not copied (float32/float64 arrays of any layout are referenced read-only); each batch
  allocates O(batch) memory and is filled with the GIL released.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from omicsembed._core import NarrowSampler as _CoreSampler
from omicsembed._seeds import RUST_SEEDS, seed_int
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

__all__ = ["NarrowBatch", "NarrowFormatDataset", "NarrowFormatSampler"]

Side = Literal["train", "validation", "all"]


@dataclass(frozen=True)
class NarrowBatch:
    """One minibatch in the narrow format (Trofimov et al. 2020, §2.1).

    Attributes
    ----------
    samples
        int64 tensor of shape (b,): sample (row) index i of each entry, in [0, n).
    genes
        int64 tensor of shape (b,): gene (column) index j of each entry, in [0, m).
    descriptors
        int64 tensor of shape (b, d): the per-sample descriptors of each entry's sample
        (``descriptors[samples]``), or ``None`` when the sampler has no descriptors.
    values
        float32 tensor of shape (b,): ``X[samples, genes]`` (finite; never NaN).

    """

    samples: torch.Tensor
    genes: torch.Tensor
    descriptors: torch.Tensor | None
    values: torch.Tensor

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def to(self, device: str | torch.device, *, non_blocking: bool = False) -> NarrowBatch:
        """Return a copy of the batch on ``device``.

        Parameters
        ----------
        device
            Target torch device (e.g. ``"cuda"``).
        non_blocking
            Passed to :meth:`torch.Tensor.to` (useful with pinned memory).

        Returns
        -------
        NarrowBatch
            The same batch with every tensor on ``device``.

        """
        desc = self.descriptors
        return NarrowBatch(
            samples=self.samples.to(device, non_blocking=non_blocking),
            genes=self.genes.to(device, non_blocking=non_blocking),
            descriptors=None if desc is None else desc.to(device, non_blocking=non_blocking),
            values=self.values.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> NarrowBatch:
        """Return a copy in page-locked memory (called by ``DataLoader(pin_memory=True)``).

        Returns
        -------
        NarrowBatch
            The same batch with every tensor pinned.

        """
        desc = self.descriptors
        return NarrowBatch(
            samples=self.samples.pin_memory(),
            genes=self.genes.pin_memory(),
            descriptors=None if desc is None else desc.pin_memory(),
            values=self.values.pin_memory(),
        )


def _as_matrix(X: Any) -> NDArray[np.float32] | NDArray[np.float64]:
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise InvalidInputError(
            "X is a sparse matrix; the narrow-format sampler needs a dense array with NaN for "
            "missing values (use X.toarray(), knowing that sparse zeros are observed zeros)"
        )
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise InvalidInputError(
            f"X must be a 2-D (samples × genes) array, got {arr.ndim} dimension(s) with shape "
            f"{arr.shape}"
        )
    if arr.dtype in (np.float32, np.float64) and arr.dtype.isnative:
        return arr
    if arr.dtype.kind in "biuf":
        # Integer, boolean and other float dtypes: one float32 copy (documented).
        return arr.astype(np.float32)
    raise InvalidInputError(
        f"X must hold real numbers (float32/float64 preferred), got dtype {arr.dtype}"
    )


def _as_mask(mask: Any, shape: tuple[int, int]) -> NDArray[np.uint8]:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ShapeMismatchError(
            f"mask must be a 2-D array of shape {shape} (same as X), got shape {arr.shape}"
        )
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind not in "iuf":
        raise InvalidInputError(f"mask must be boolean or 0/1 integers, got dtype {arr.dtype}")
    bad = ~((arr == 0) | (arr == 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InvalidInputError(
            f"mask must hold 0 (exclude) or 1 (include), got {arr[i, j]} at sample {i}, gene {j}"
        )
    return arr.astype(np.uint8)


def _as_descriptors(descriptors: Any) -> NDArray[np.int64]:
    arr = np.asarray(descriptors)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeMismatchError(
            f"descriptors must be an (n, d) array of per-sample codes, got shape {arr.shape}"
        )
    if arr.dtype.kind not in "biu":
        raise InvalidInputError(
            f"descriptors must be integer category codes (>= 0), got dtype {arr.dtype}; "
            "encode categories with pandas.factorize"
        )
    return arr.astype(np.int64, copy=False)


class NarrowFormatSampler:
    """Shuffled minibatches of the narrow format of X, one pass over its entries per epoch.

    Implements the training-example stream of factorized embeddings (Trofimov et al. 2020,
    *Bioinformatics*, §2.1): each example is an entry (sample i, gene j, value X[i, j]) and the
    model trains on observed entries only. Iterating yields the batches of the current epoch
    (set with :meth:`set_epoch`); every included entry appears exactly once per epoch. Batch
    ``b`` holds the entries at permuted ranks ``[b·B, (b+1)·B)``; the permutation is a seeded
    Feistel bijection (keys from ``seed`` and the epoch), so batches are addressable by index.

    Parameters
    ----------
    X
        Dense (n, m) array of samples × genes. float32 and float64 arrays (any memory layout) are
        referenced without a copy (read-only arrays and ``np.load(..., mmap_mode="r")`` memory
        maps work too) — do not modify X while sampling; other real dtypes are copied once to
        float32. NaN marks a missing entry (excluded); ±inf is an error.
    batch_size
        Entries per batch, ≥ 1 (the last batch of an epoch may be smaller unless ``drop_last``).
    seed
        Seed of the per-epoch permutations (int in [0, 2**64), or a numpy Generator to draw one
        from).
    mask
        Optional (n, m) boolean (or 0/1 integer) array; 1/True includes an entry, 0 excludes it.
        Used once at construction (not kept).
    descriptors
        Optional (n, d) array of non-negative integer codes per sample (batch, sex, donor, …);
        a 1-D array is one column. Copied (n·d int64). Each batch returns the rows of its
        samples.
    holdout_fraction
        Fraction in [0, 1) of observed entries put on the validation side of a held-out split:
        entry (i, j) is a validation entry iff a keyed 64-bit hash of its flat index ``i·m + j``
        is below ``holdout_fraction·2⁶⁴`` (deterministic, no memory).
    holdout_seed
        Key of that hash (int in [0, 2**64) or numpy Generator).
    side
        ``"train"`` (entries not held out), ``"validation"`` (held-out entries) or ``"all"``
        (ignore the split).
    drop_last
        Drop the last batch of an epoch when it is smaller than ``batch_size``.

    Attributes
    ----------
    n_entries : int
        Included entries per epoch.
    shape : tuple of int
        (n, m) of X.
    epoch : int
        Current epoch (see :meth:`set_epoch`).
    index_bytes : int
        Bytes of the included-entry bitmap (0 when nothing is excluded; ≈ n·m/7 otherwise).

    Raises
    ------
    InvalidInputError
        X is not 2-D, is sparse, has infinite values (the message gives sample and gene), the
        mask is not 0/1, descriptors are negative or not integers, ``batch_size < 1``,
        ``holdout_fraction`` is outside [0, 1), ``side`` is unknown, or no entry is included.
    ShapeMismatchError
        The mask is not (n, m) or the descriptors do not have n rows.

    Notes
    -----
    Memory: X is referenced, not copied; the rank/select index costs n·m/7 + N/128 bytes
    (bitmap with per-448-bit counts, select hints) when some entries are excluded and nothing
    otherwise; a batch costs 20·B + 8·B·d bytes.
    The original implementation materialised 16·n·m bytes of index pairs.

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(100, 50)).astype(np.float32)
    >>> sampler = NarrowFormatSampler(X, batch_size=256, holdout_fraction=0.1, side="train")
    >>> for epoch in range(2):
    ...     sampler.set_epoch(epoch)
    ...     for batch in sampler:
    ...         pass  # batch.samples, batch.genes, batch.values
    >>> val = sampler.validation()
    >>> sampler.n_entries + val.n_entries == X.size
    True

    """

    def __init__(
        self,
        X: np.ndarray,
        *,
        batch_size: int = 10_000,
        seed: int | np.random.Generator = 0,
        mask: np.ndarray | None = None,
        descriptors: np.ndarray | None = None,
        holdout_fraction: float = 0.0,
        holdout_seed: int | np.random.Generator = 0,
        side: Side = "all",
        drop_last: bool = False,
    ) -> None:
        x = _as_matrix(X)
        shape = (int(x.shape[0]), int(x.shape[1]))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if batch_size < 0:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        mask_arr = None if mask is None else _as_mask(mask, shape)
        desc_arr = None if descriptors is None else _as_descriptors(descriptors)
        self._settings: dict[str, Any] = {
            "batch_size": int(batch_size),
            "seed": seed_int(seed, below=RUST_SEEDS),
            "holdout_fraction": float(holdout_fraction),
            "holdout_seed": seed_int(holdout_seed, below=RUST_SEEDS, name="holdout_seed"),
            "side": str(side),
            "drop_last": bool(drop_last),
        }
        self._x = x
        self._mask = mask_arr
        self._descriptors = desc_arr
        self._core = _CoreSampler(x, mask=mask_arr, descriptors=desc_arr, **self._settings)
        self.epoch = 0

    # -- properties ------------------------------------------------------------------------

    @property
    def n_entries(self) -> int:
        """Included entries per epoch."""
        return int(self._core.n_entries)

    @property
    def shape(self) -> tuple[int, int]:
        """(n, m) of X."""
        return self._core.shape

    @property
    def batch_size(self) -> int:
        """Entries per batch."""
        return self._core.batch_size

    @property
    def side(self) -> str:
        """Side of the held-out split served: "train", "validation" or "all"."""
        return self._core.side

    @property
    def n_descriptors(self) -> int:
        """Descriptor columns d (0 without descriptors)."""
        return self._core.n_descriptors

    @property
    def index_bytes(self) -> int:
        """Bytes of the included-entry index (0 when nothing is excluded)."""
        return self._core.index_bytes

    def __len__(self) -> int:
        return int(self._core.n_batches)

    def __repr__(self) -> str:
        n, m = self.shape
        return (
            f"NarrowFormatSampler(shape=({n}, {m}), n_entries={self.n_entries}, "
            f"batch_size={self.batch_size}, side={self.side!r}, epoch={self.epoch})"
        )

    # -- sampling --------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of the following iterations (like ``DistributedSampler``).

        Parameters
        ----------
        epoch
            Epoch number, ≥ 0. The same ``(seed, epoch)`` always gives the same batches.

        Raises
        ------
        InvalidInputError
            If ``epoch`` is negative or not an int.

        """
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise InvalidInputError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def batch(self, index: int) -> NarrowBatch:
        """Batch ``index`` of the current epoch.

        Parameters
        ----------
        index
            Batch number in ``[-len(self), len(self))`` (negative counts from the end).

        Returns
        -------
        NarrowBatch
            ``min(batch_size, n_entries - index·batch_size)`` entries.

        Raises
        ------
        IndexError
            If ``index`` is out of range.

        """
        return self._batch(index, self.epoch)

    def _batch(self, index: int, epoch: int) -> NarrowBatch:
        n_batches = len(self)
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"batch index must be an int, got {index!r}")
        if index < 0:
            index += n_batches
        if not 0 <= index < n_batches:
            raise IndexError(f"batch index out of range: this sampler has {n_batches} batches")
        samples, genes, desc, values = self._core.batch(int(index), epoch)
        return NarrowBatch(
            samples=torch.from_numpy(samples),
            genes=torch.from_numpy(genes),
            descriptors=None if desc is None else torch.from_numpy(desc),
            values=torch.from_numpy(values),
        )

    def __iter__(self) -> Iterator[NarrowBatch]:
        epoch = self.epoch
        for index in range(len(self)):
            yield self._batch(index, epoch)

    def validation(self) -> NarrowFormatSampler:
        """Build the validation side of the same held-out split.

        Returns
        -------
        NarrowFormatSampler
            Same X, mask, descriptors, batch size, seed and split, with ``side="validation"``.

        Raises
        ------
        InvalidInputError
            If ``holdout_fraction`` is 0 (there is no validation side).

        """
        if self._settings["holdout_fraction"] == 0.0:
            raise InvalidInputError(
                "validation() needs a held-out split: build the sampler with "
                "holdout_fraction > 0 (e.g. 0.1) and side='train'"
            )
        return self._with_side("validation")

    def _with_side(self, side: Side) -> NarrowFormatSampler:
        settings = {**self._settings, "side": side}
        return NarrowFormatSampler(
            self._x, mask=self._mask, descriptors=self._descriptors, **settings
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling (spawned DataLoader workers) sends X and rebuilds the index in the worker.
        return (_rebuild, (self._x, self._mask, self._descriptors, self._settings, self.epoch))


def _rebuild(
    x: np.ndarray,
    mask: np.ndarray | None,
    descriptors: np.ndarray | None,
    settings: dict[str, Any],
    epoch: int,
) -> NarrowFormatSampler:
    sampler = NarrowFormatSampler(x, mask=mask, descriptors=descriptors, **settings)
    sampler.set_epoch(epoch)
    return sampler


class NarrowFormatDataset(torch.utils.data.IterableDataset[NarrowBatch]):
    """A :class:`NarrowFormatSampler` as a torch ``IterableDataset`` for ``DataLoader`` workers.

    Yields whole :class:`NarrowBatch` objects, so use ``DataLoader(dataset, batch_size=None,
    num_workers=k)``. Worker ``w`` of ``k`` yields batches ``b ≡ w (mod k)`` of the current
    epoch, so each included entry is yielded exactly once per epoch in total. Forked workers
    share X and the index with the parent (copy-on-write) and fill batches on one thread each
    (the Rust core turns rayon off in forked children); spawned workers receive a pickled copy.

    Parameters
    ----------
    sampler
        The sampler to serve (its epoch is read when each worker starts iterating).

    Notes
    -----
    Call :meth:`set_epoch` before iterating a new epoch. With ``persistent_workers=True`` the
    workers keep the epoch they started with, so leave ``persistent_workers`` off (the
    default) to reshuffle every epoch.

    """

    def __init__(self, sampler: NarrowFormatSampler) -> None:
        super().__init__()
        if not isinstance(sampler, NarrowFormatSampler):
            raise InvalidInputError(
                f"NarrowFormatDataset wraps a NarrowFormatSampler, got {type(sampler).__name__}"
            )
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of the wrapped sampler (see :meth:`NarrowFormatSampler.set_epoch`).

        Parameters
        ----------
        epoch
            Epoch number, ≥ 0.

        """
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[NarrowBatch]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        epoch = self.sampler.epoch
        for index in range(worker, len(self.sampler), n_workers):
            yield self.sampler._batch(index, epoch)
