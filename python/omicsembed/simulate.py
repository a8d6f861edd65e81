"""Synthetic data generators with planted structure, for tests, demos and method checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pandas as pd

from omicsembed._seeds import numpy_rng
from omicsembed.evaluate._checks import check_count
from omicsembed.exceptions import InvalidInputError

if TYPE_CHECKING:
    import anndata as ad
    from numpy.typing import NDArray

__all__ = ["GENE_KINDS", "stair_cell_stages"]

#: Categories of ``var["kind"]`` of :func:`stair_cell_stages`, in this order.
GENE_KINDS: tuple[str, ...] = ("stage", "overlap", "noise")


def _check_probability(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InvalidInputError(f"{name} must be a probability in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{name} must be a probability in [0, 1], got {value!r}")
    return float(value)


@overload
def stair_cell_stages(
    n_cells: int,
    *,
    n_noise_genes: int = ...,
    p_high: float = ...,
    p_background: float = ...,
    n_stages: int = ...,
    genes_per_stage: int = ...,
    overlap: int = ...,
    seed: int | np.random.Generator | None = ...,
    as_anndata: Literal[True] = ...,
) -> ad.AnnData: ...
@overload
def stair_cell_stages(
    n_cells: int,
    *,
    n_noise_genes: int = ...,
    p_high: float = ...,
    p_background: float = ...,
    n_stages: int = ...,
    genes_per_stage: int = ...,
    overlap: int = ...,
    seed: int | np.random.Generator | None = ...,
    as_anndata: Literal[False],
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.str_]]: ...
def stair_cell_stages(
    n_cells: int,
    *,
    n_noise_genes: int = 18,
    p_high: float = 0.6,
    p_background: float = 0.1,
    n_stages: int = 10,
    genes_per_stage: int = 5,
    overlap: int = 2,
    seed: int | np.random.Generator | None = None,
    as_anndata: bool = True,
) -> Any:
    """Binary cells passing through stages, each stage switching on a stair step of genes.

    The simulation of Hess, Hackenberg & Binder (2020, Bioinformatics 36:5045), §3.1: cells
    belong to one of 10 consecutive stages; stage ``s`` (0-based) has the 5 genes
    ``3s, ..., 3s + 4`` "high", so neighbouring stages share 2 genes and the 10 stages span
    ``3 * 9 + 5 = 32`` stage genes (a staircase in the cells x genes matrix). A cell's high
    genes are 1 with probability ``p_high`` (0.6), every other gene (including the noise genes
    appended after the stage genes; the paper used 18 or 168) with ``p_background`` (0.1), all
    independently.

    Parameters
    ----------
    n_cells
        Number of cells (>= 1). Stages get equal shares: cell ``i`` is in stage
        ``floor(i * n_stages / n_cells)`` (sorted by stage; sizes differ by at most 1).
    n_noise_genes
        Genes without structure, appended after the stage genes (>= 0).
    p_high, p_background
        Probabilities of a 1 for a cell's stage genes and for all other genes.
    n_stages, genes_per_stage, overlap
        The staircase: ``n_stages`` stages of ``genes_per_stage`` high genes, each sharing
        ``overlap`` genes with the next (0 <= overlap < genes_per_stage). Stage genes:
        ``(n_stages - 1) * (genes_per_stage - overlap) + genes_per_stage``.
    seed
        Seed: an int in [0, 2**63) or a numpy Generator (``None``: ``omicsembed.settings.seed``).
    as_anndata
        Return an AnnData (default) or the tuple ``(X, stage, kind)``.

    Returns
    -------
    anndata.AnnData or tuple
        AnnData with ``X`` uint8 0/1 (n_cells, n_stage_genes + n_noise_genes);
        ``obs["stage"]`` int stage of each cell (``obs["stage_label"]`` categorical
        ``"stage_0"`` ...); ``var_names`` ``"gene_0"`` ...; ``var["kind"]`` categorical in
        :data:`GENE_KINDS`: ``"stage"`` (high in exactly one stage), ``"overlap"`` (high in
        two neighbouring stages) or ``"noise"``; ``var["first_stage"]`` /
        ``var["last_stage"]`` (int, -1 for noise genes); ``uns["simulate"]["params"]``.
        With ``as_anndata=False``: ``X`` (uint8), ``stage`` (int64, (n_cells,)) and ``kind``
        (str, (n_genes,)).
        With the defaults there are 14 ``"stage"``, 18 ``"overlap"`` and ``n_noise_genes``
        ``"noise"`` genes.

    Raises
    ------
    InvalidInputError
        If a count is not a non-negative integer (``n_cells``, ``n_stages``,
        ``genes_per_stage`` >= 1), ``overlap`` is not below ``genes_per_stage``, or a
        probability is outside [0, 1].

    Examples
    --------
    >>> adata = stair_cell_stages(200, seed=1)
    >>> adata.shape
    (200, 50)
    >>> adata.var["kind"].value_counts(sort=False).to_dict()
    {'stage': 14, 'overlap': 18, 'noise': 18}

    """
    n_cells = check_count("n_cells", n_cells, 1)
    n_noise = check_count("n_noise_genes", n_noise_genes, 0)
    n_stages = check_count("n_stages", n_stages, 1)
    width = check_count("genes_per_stage", genes_per_stage, 1)
    overlap = check_count("overlap", overlap, 0)
    if overlap >= width:
        raise InvalidInputError(
            f"overlap ({overlap}) must be smaller than genes_per_stage ({width})"
        )
    p_high = _check_probability("p_high", p_high)
    p_background = _check_probability("p_background", p_background)
    rng = numpy_rng(seed)

    step = width - overlap
    n_stage_genes = (n_stages - 1) * step + width
    n_genes = n_stage_genes + n_noise
    stage = (np.arange(n_cells, dtype=np.int64) * n_stages) // n_cells
    high = np.zeros((n_stages, n_genes), dtype=bool)
    for s in range(n_stages):
        high[s, s * step : s * step + width] = True
    probability = np.where(high[stage], p_high, p_background)
    x = (rng.random((n_cells, n_genes)) < probability).astype(np.uint8)

    n_high_stages = high.sum(axis=0)
    kind = np.where(
        n_high_stages == 0, "noise", np.where(n_high_stages == 1, "stage", "overlap")
    ).astype(str)
    if not as_anndata:
        return x, stage, kind

    import anndata as ad

    first = np.where(n_high_stages > 0, high.argmax(axis=0), -1)
    last = np.where(n_high_stages > 0, n_stages - 1 - high[::-1].argmax(axis=0), -1)
    obs = pd.DataFrame(
        {
            "stage": stage,
            "stage_label": pd.Categorical(
                [f"stage_{s}" for s in stage], categories=[f"stage_{s}" for s in range(n_stages)]
            ),
        },
        index=pd.Index([f"cell_{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(
        {
            "kind": pd.Categorical(kind, categories=list(GENE_KINDS)),
            "first_stage": first.astype(np.int64),
            "last_stage": last.astype(np.int64),
        },
        index=pd.Index([f"gene_{g}" for g in range(n_genes)]),
    )
    params = {
        "n_cells": n_cells,
        "n_noise_genes": n_noise,
        "p_high": p_high,
        "p_background": p_background,
        "n_stages": n_stages,
        "genes_per_stage": width,
        "overlap": overlap,
        "seed": int(seed) if isinstance(seed, int | np.integer) else None,
    }
    return ad.AnnData(X=x, obs=obs, var=var, uns={"simulate": {"params": params}})
