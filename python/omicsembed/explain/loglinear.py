"""Log-linear models of binary data: contingency tables, G², IPF and stepwise G² selection.

Hess, Hackenberg & Binder (2020), "Exploring generative deep learning for omics data using
log-linear models", Bioinformatics 36(20):5045–5053, §2.5, explain what a generative model
learned by selecting, among its synthetic binary features, the few that best capture the
dependence on its binary latent units. The functions follow the authors' Julia packages:

- ``LogLinearModels.jl`` — ``freqtab`` (:func:`contingency_table`), ``gsquare``
  (:func:`g_squared`), ``ipf`` (:func:`ipf`);
- ``PatternsByLogLin.jl`` — ``bestset`` (:func:`select_features_loglinear`).

All kernels run in Rust (``omicsembed._core``; rayon, GIL released). Tables are dense numpy
arrays with one axis per variable, in the order of the columns (C order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from omicsembed import _core
from omicsembed._seeds import RUST_SEEDS, seed_int
from omicsembed.exceptions import ConvergenceError, InvalidInputError, ShapeMismatchError

__all__ = [
    "IPFResult",
    "LoglinearSelection",
    "contingency_table",
    "g_squared",
    "ipf",
    "is_decomposable",
    "select_features_loglinear",
]


def _as_matrix(data: ArrayLike, name: str) -> NDArray[Any]:
    array = np.asarray(data)
    if array.ndim != 2:
        raise ShapeMismatchError(
            f"{name} must be 2-D (samples × variables), got shape {array.shape}"
        )
    return array


def _as_uint8_codes(
    data: ArrayLike, name: str, *, binary: bool, core_checks_binary: bool = False
) -> NDArray[np.uint8]:
    """2-D array of small non-negative integers (or 0/1) as C-contiguous uint8.

    ``core_checks_binary``: the caller hands the codes to a Rust function that rejects values
    above 1 itself (with the same message, naming row and column), so a uint8 input is not
    scanned twice (a tenth of a millisecond per million values).
    """
    array = _as_matrix(data, name)
    if array.dtype == np.uint8:
        codes = array
    elif array.dtype == np.bool_:
        codes = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.number) and array.dtype.kind != "c":
        finite = np.isfinite(array)
        upper = 1 if binary else 255
        valid = finite & (array >= 0) & (array <= upper)
        with np.errstate(invalid="ignore"):
            valid &= np.equal(np.mod(np.where(finite, array, 0), 1), 0)
        if not valid.all():
            row, col = (int(v[0]) for v in np.nonzero(~valid))
            what = "binary (0/1)" if binary else "integer codes 0..255"
            raise InvalidInputError(
                f"{name} must hold {what}, but {name}[{row}, {col}] = {array[row, col]!r}; "
                f"recode column {col}" + (" (e.g. omicsembed.pp.dichotomize)" if binary else "")
            )
        codes = array.astype(np.uint8)
    else:
        raise InvalidInputError(f"{name} must be real numbers or booleans, got dtype {array.dtype}")
    if binary and not core_checks_binary and codes.size and int(codes.max()) > 1:
        row, col = (int(v[0]) for v in np.nonzero(codes > 1))
        raise InvalidInputError(
            f"{name} must be binary (0/1), but {name}[{row}, {col}] = {int(codes[row, col])}; "
            f"dichotomise column {col} first (e.g. omicsembed.pp.dichotomize)"
        )
    return np.ascontiguousarray(codes)


def contingency_table(X: ArrayLike, levels: int | Sequence[int] | None = None) -> NDArray[np.int64]:
    """Count every joint configuration of categorical columns (``LogLinearModels.freqtab``).

    Each row is packed into one cell index (for binary columns its bit pattern) in parallel, and
    the indices are counted. Hess et al. (2020), §2.5.

    Parameters
    ----------
    X
        ``(n, q)`` array of category codes ``0 .. levels[c] - 1`` (uint8, bool or integer-valued
        numbers; at most 255 levels per column).
    levels
        Number of levels of each column (one int for all, or one per column). ``None`` infers
        ``max(column maximum + 1, 2)`` per column, so binary columns always get two levels (as
        ``LogLinearModels.LevelData``).

    Returns
    -------
    numpy.ndarray
        int64 counts of shape ``levels`` (one axis per column, in column order);
        ``table[a, b, ...]`` is the number of rows equal to ``(a, b, ...)``. Sums to ``n``.

    Raises
    ------
    InvalidInputError
        If a value is not an integer code 0..255, or lies outside the given levels (the error
        names the row and column; values are never dropped silently), or the table would have
        more than 2**26 cells.
    ShapeMismatchError
        If ``X`` is not 2-D or ``levels`` does not have one entry per column.

    """
    codes = _as_uint8_codes(X, "X", binary=False)
    q = codes.shape[1]
    level_list: list[int] | None
    if levels is None:
        level_list = None
    elif isinstance(levels, int | np.integer) and not isinstance(levels, bool):
        level_list = [_integer(levels, "levels", 1, 256)] * q
    elif isinstance(levels, Iterable) and not isinstance(levels, str):
        level_list = [_integer(v, "a level count", 1, 256) for v in levels]
        if len(level_list) != q:
            raise ShapeMismatchError(
                f"{len(level_list)} levels given for {q} columns; give one number per column"
            )
    else:
        raise InvalidInputError(f"levels must be an int or one int per column, got {levels!r}")
    if level_list is not None and any(v < 1 for v in level_list):
        raise InvalidInputError(f"every column needs at least one level, got levels {level_list}")
    return _core.contingency_table(codes, level_list)


def _as_table(table: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.ascontiguousarray(np.asarray(table, dtype=np.float64))
    if array.ndim == 0:
        raise ShapeMismatchError(f"{name} must be an array with one axis per variable")
    return array


def g_squared(observed: ArrayLike, fitted: ArrayLike) -> float:
    """Likelihood-ratio statistic G² = 2 Σ n · ln(n / m) over the cells with n > 0.

    Natural log, cells with ``n = 0`` contribute nothing (``LogLinearModels.gsquare``; Hess et
    al. 2020, §2.5). Against the saturated model this is the deviance of the fitted model.

    Parameters
    ----------
    observed
        Observed table ``n`` (any shape), finite and ≥ 0.
    fitted
        Fitted values ``m`` of the same shape, finite and ≥ 0.

    Returns
    -------
    float
        G² ≥ 0 for fitted values with the observed total (``inf`` if some ``n > 0`` has
        ``m = 0``).

    Raises
    ------
    ShapeMismatchError
        If the shapes differ.
    InvalidInputError
        If a value is negative, NaN or infinite.

    """
    n = _as_table(observed, "observed")
    m = _as_table(fitted, "fitted")
    return float(_core.g_squared(n, m))


@dataclass(frozen=True)
class IPFResult:
    """Fit of a hierarchical log-linear model by :func:`ipf`.

    Attributes
    ----------
    fitted
        Fitted values, float64, same shape as the table.
    iterations
        Full cycles over the margins that were run (0 for the closed form).
    converged
        Whether the largest margin deviation of a cycle fell below ``tol`` (always ``True``
        for the closed form).
    max_deviation
        Largest ``|observed − fitted|`` margin deviation of the last cycle, measured before
        that cycle's adjustments (as R's ``loglin``); 0 for the closed form.
    method
        ``"ipf"`` or ``"closed_form"``.

    """

    fitted: NDArray[np.float64]
    iterations: int
    converged: bool
    max_deviation: float
    method: Literal["ipf", "closed_form"]


def _integer(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int in [minimum, maximum].

    Whole-number floats pass; bools, fractions and other types are errors (``int()`` would
    truncate 2.5 and make True 1).
    """
    whole = isinstance(value, float | np.floating) and np.isfinite(value) and value == int(value)
    if isinstance(value, bool) or not (isinstance(value, int | np.integer) or whole):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f"≥ {minimum}"
        raise InvalidInputError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _as_margins(margins: Sequence[Sequence[int]], ndim: int) -> list[list[int]]:
    if isinstance(margins, str) or not isinstance(margins, Iterable):
        raise InvalidInputError(
            f"margins must be a list of lists of variable indices, got {margins!r}"
        )
    out: list[list[int]] = []
    for g, generator in enumerate(margins):
        if isinstance(generator, int | np.integer):
            generator = [int(generator)]
        if isinstance(generator, str) or not isinstance(generator, Iterable):
            raise InvalidInputError(f"margin {g} must be a list of variable indices: {generator!r}")
        indices = [_integer(v, f"margin {g}'s variable", 0) for v in generator]
        bad = [v for v in indices if not 0 <= v < ndim]
        if bad:
            raise InvalidInputError(
                f"margin {g} ({indices}) refers to variable {bad[0]}, but the table has {ndim} "
                f"axes (0..{ndim - 1})"
            )
        out.append(indices)
    return out


def is_decomposable(margins: Sequence[Sequence[int]], n_vars: int) -> bool:
    """Whether a hierarchical log-linear model is decomposable (has closed-form estimates).

    Parameters
    ----------
    margins
        Generating class: lists of variable indices, e.g. ``[[0, 1], [1, 2]]`` for [AB][BC].
    n_vars
        Number of variables of the table.

    Returns
    -------
    bool
        ``True`` if the generators (after dropping those contained in another) can be ordered
        so that each one's intersection with the earlier ones lies in one earlier generator
        (running intersection; checked by GYO reduction). [AB][BC] is decomposable,
        [AB][BC][AC] is not.

    Raises
    ------
    InvalidInputError
        If a margin names a variable outside ``0 .. n_vars - 1`` or repeats one.

    """
    n_vars = _integer(n_vars, "n_vars", 1)
    return bool(_core.is_decomposable(_as_margins(margins, n_vars), n_vars))


def ipf(
    table: ArrayLike,
    margins: Sequence[Sequence[int]],
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
    method: Literal["ipf", "closed_form", "auto"] = "ipf",
    raise_on_failure: bool = False,
) -> IPFResult:
    """Fit a hierarchical log-linear model by iterative proportional fitting (IPF).

    The model is given by its generating class (margins), as in R's ``stats::loglin`` and
    ``LogLinearModels.ipf``: ``[[0, 1], [2]]`` is [AB][C] (A, B jointly independent of C),
    ``[[0, 1], [1, 2], [0, 2]]`` is the no-three-way-interaction model. Variables in no margin
    are fitted as uniform. IPF starts from 1 in every cell and, cycle after cycle, scales the
    fitted table to each observed margin in turn (Hess et al. 2020, §2.5).

    Decomposable models also have a closed form (``method="closed_form"``): over a perfect
    ordering of the generators ``C_t`` with separators ``S_t``, ``m = Π n(C_t) / Π n(S_t)``
    (``n(∅) = N``), e.g. ``m = n(U,S) n(X) / N`` for [U S][X] and ``m = n(U,S) n(S,X) / n(S)``
    for [U S][S X]. It is the limit IPF converges to.

    Parameters
    ----------
    table
        Observed counts, any number of axes, finite and ≥ 0 (e.g. from
        :func:`contingency_table`; empty cells may be pre-filled, e.g. with 0.5).
    margins
        Generating class: sequences of axis indices.
    tol
        IPF stops after the first cycle whose largest ``|observed − fitted|`` margin deviation
        (before adjusting) is below ``tol`` (> 0; absolute, in counts).
    max_iter
        Cap on IPF cycles (≥ 1).
    method
        ``"ipf"`` (default), ``"closed_form"`` (decomposable models only), or ``"auto"``
        (closed form when decomposable, else IPF).
    raise_on_failure
        Raise :class:`ConvergenceError` when IPF hits ``max_iter`` without converging instead of
        returning ``converged=False``.

    Returns
    -------
    IPFResult
        Fitted values, iterations, convergence flag, last deviation and the method used.

    Raises
    ------
    InvalidInputError
        Negative / non-finite counts, margins naming missing axes or repeating one, bad
        ``tol``/``max_iter``/``method``, or ``method="closed_form"`` on a non-decomposable
        model.
    ConvergenceError
        Only if ``raise_on_failure`` and IPF did not converge.

    """
    observed = _as_table(table, "table")
    generators = _as_margins(margins, observed.ndim)
    if method not in ("ipf", "closed_form", "auto"):
        raise InvalidInputError(f"method must be 'ipf', 'closed_form' or 'auto', got {method!r}")
    if method == "auto":
        method = "closed_form" if _core.is_decomposable(generators, observed.ndim) else "ipf"
    if method == "closed_form":
        fitted = _core.loglinear_closed_form(observed, generators)
        return IPFResult(fitted, 0, True, 0.0, "closed_form")
    real = isinstance(tol, int | float | np.integer | np.floating) and not isinstance(tol, bool)
    if not (real and np.isfinite(tol) and tol > 0):
        raise InvalidInputError(f"tol must be finite and > 0, got {tol!r}")
    max_iter = _integer(max_iter, "max_iter", 1, 2**63 - 1)
    fitted, iterations, converged, deviation = _core.ipf(observed, generators, float(tol), max_iter)
    if raise_on_failure and not converged:
        raise ConvergenceError(
            f"IPF did not converge in {iterations} cycles (largest margin deviation "
            f"{deviation:.3g} ≥ tol = {tol:g}); raise max_iter or tol"
        )
    return IPFResult(fitted, int(iterations), bool(converged), float(deviation), "ipf")


@dataclass(frozen=True)
class LoglinearSelection:
    """Result of :func:`select_features_loglinear`.

    Attributes
    ----------
    selected
        ``(k,)`` int64 feature (column) indices in the order of selection.
    latent_units
        ``(k,)`` int64 latent unit of the winning candidate of each step (-1 without latent
        units).
    g2
        ``(k,)`` float64 G² of the winning candidate of each step.
    scores
        ``(k, p, r)`` float64: ``scores[t, i, j]`` is the G² of feature ``i`` with latent unit
        ``j`` at step ``t`` (``r = 1`` without latent units); NaN for features selected before
        step ``t``.
    p_values
        ``(k,)`` float64 permutation p-values of the selected features, or ``None``.
    model
        ``"marginal"`` or ``"conditional"``.
    n_permutations
        Permutations per step (0: no p-values).
    seed
        Seed of the permutation streams.

    """

    selected: NDArray[np.int64]
    latent_units: NDArray[np.int64]
    g2: NDArray[np.float64]
    scores: NDArray[np.float64]
    p_values: NDArray[np.float64] | None
    model: Literal["marginal", "conditional"]
    n_permutations: int
    seed: int

    def to_frame(self) -> pd.DataFrame:
        """Tidy table with one row per step.

        Returns
        -------
        pandas.DataFrame
            Columns ``step`` (1-based), ``feature`` (column index), ``latent_unit`` (-1 without
            latent units), ``g2`` and ``p_value`` (NaN without permutations).

        """
        k = len(self.selected)
        p_values = self.p_values if self.p_values is not None else np.full(k, np.nan)
        return pd.DataFrame(
            {
                "step": np.arange(1, k + 1, dtype=np.int64),
                "feature": self.selected,
                "latent_unit": self.latent_units,
                "g2": self.g2,
                "p_value": p_values,
            }
        )


def select_features_loglinear(
    X: ArrayLike,
    U: ArrayLike | None = None,
    k: int = 12,
    *,
    model: Literal["marginal", "conditional"] = "marginal",
    n_permutations: int = 0,
    seed: int | np.random.Generator = 0,
) -> LoglinearSelection:
    """Stepwise log-linear G² selection of binary features (``PatternsByLogLin.bestset``).

    Hess, Hackenberg & Binder (2020), §2.5. ``X`` holds binary synthetic features and ``U`` the
    binary latent units that generated them (e.g. hidden units of a DBM, or the dichotomised
    latent code of a VAE). Starting from the empty set ``S``, every step scores each candidate
    feature ``i ∉ S`` with each latent unit ``j`` separately: it builds the table over
    ``(U_j, S…, X_i)``, replaces empty cells by 0.5, fits the model

    - ``model="marginal"``: ``[U_j S][X_i]`` (Hess et al. 2020), or
    - ``model="conditional"``: ``[U_j S][S X_i]`` (the authors' 2022 variant: ``X_i``
      independent of ``U_j`` given ``S``),

    and computes G² against the (0.5-filled) saturated table. The step adds the feature of the
    largest G² over all ``(i, j)``; ties go to the smallest ``i``, then the smallest ``j``
    (scores within a relative 1e-10 of the largest count as tied: equal G² of differently
    arranged tables, e.g. of a feature and its complement, differ by rounding). At
    the first step (``S`` empty) both models are ``[U_j][X_i]``. Both models are decomposable,
    so the fitted values are exact closed forms of the filled margins (``m = n'(u,s)·n'(x)/N'``
    and ``m = n'(u,s)·n'(s,x)/n'(s)``) — the values R's ``stats::loglin`` / the authors' IPF
    converge to.

    Without latent units (``U=None``; ``bestset`` with ``startsize=2``) the selection starts from
    the best pair under ``[X_i][X_k]``: step 1 scores every feature by its best ``[X_i][X_k]``
    G² over partners ``k ≠ i`` and adds the best one; the next steps score ``[S][X_i]``, so step
    2 adds that feature's best partner (both steps report the pair's G²).

    Parameters
    ----------
    X
        ``(n, p)`` binary synthetic features (0/1; uint8, bool, int or float).
    U
        ``(n, r)`` binary latent units of the same samples, or ``None``.
    k
        Number of features to select, ``1 ≤ k ≤ min(p, 40)``: the 0.5-filled table has
        ``2^(k+2)`` cells, and beyond 40 float64 rounding of their empty-cell terms exceeds 0.01
        in G².
    model
        ``"marginal"`` or ``"conditional"`` (the latter needs ``U``).
    n_permutations
        ``B ≥ 0`` permutations per step for p-values (0: none). The chosen feature's column is
        permuted (within the strata of ``S`` for the conditional model, whose null hypothesis
        keeps the ``X``–``S`` association), the step's statistic recomputed (its best G² over
        latent units, or over partners at the pair step), and
        ``p = (1 + #{G²_perm ≥ G²_obs}) / (B + 1)``. Permutation ``b`` of step ``t`` uses its
        own ChaCha8 stream of ``seed``, so results do not depend on the number of threads.
        p-values ignore the selection over features.
    seed
        Seed of the permutation streams (int in [0, 2**64) or a numpy Generator).

    Returns
    -------
    LoglinearSelection
        Selected features, winning latent units, G² per step, the full ``(k, p, r)`` score
        array, and p-values.

    Raises
    ------
    InvalidInputError
        Non-binary values (the error names row and column), ``k`` outside ``1..min(p, 40)``, an
        unknown ``model``, ``model="conditional"`` without ``U``, ``U`` without columns,
        ``U=None`` with fewer than 2 features, negative ``n_permutations``, or a bad ``seed``.
    ShapeMismatchError
        If ``X`` or ``U`` is not 2-D, or they have different numbers of rows.

    Notes
    -----
    Cost per step is ``O(n·p·r/2)`` bit additions (256 features per operation) plus
    ``O(m·p·r)`` cell terms, where ``m ≤ min(n, 2^|S|)`` is the number of occupied
    configurations of ``S``; cells (``U_j = 0, 1`` within a stratum) of at most 7 samples
    are summarised by class instead of looked up per feature. p = 1000, r = 20,
    n = 10,000, k = 12 takes about 0.03 s on two cores (see ``benches/bench_loglinear.py``).
    With many selected features most of the ``2^(|S|+2)`` cells are empty and filled with 0.5,
    which the statistic (as in the original method) then reflects.

    """
    # values above 1 are rejected by the Rust core (``Binary::new``), before any work
    codes = _as_uint8_codes(X, "X", binary=True, core_checks_binary=True)
    n, p = codes.shape
    latent: NDArray[np.uint8] | None = None
    if U is not None:
        latent = _as_uint8_codes(U, "U", binary=True, core_checks_binary=True)
        if latent.shape[0] != n:
            raise ShapeMismatchError(
                f"X has {n} samples (rows) but U has {latent.shape[0]}; give the latent units of "
                "the same samples"
            )
        if latent.shape[1] == 0:
            raise InvalidInputError("U has no latent units (columns); pass U=None instead")
    if model not in ("marginal", "conditional"):
        raise InvalidInputError(f"model must be 'marginal' or 'conditional', got {model!r}")
    if model == "conditional" and latent is None:
        raise InvalidInputError(
            "model='conditional' ([U S][S X]) needs latent units U; without U the selection "
            "uses [S][X]"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= p:
        raise InvalidInputError(f"k must be an integer with 1 ≤ k ≤ p = {p}, got {k!r}")
    if latent is None and p < 2:
        raise InvalidInputError("selection without latent units needs at least 2 features")
    if n == 0:
        raise InvalidInputError("X has no samples (rows)")
    if (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, int | np.integer)
        or n_permutations < 0
    ):
        raise InvalidInputError(f"n_permutations must be an int ≥ 0, got {n_permutations!r}")
    seed_value = seed_int(seed, below=RUST_SEEDS)
    selected, latent_units, g2, scores, p_values = _core.select_features_loglinear(
        codes,
        latent,
        int(k),
        conditional=model == "conditional",
        n_permutations=int(n_permutations),
        seed=seed_value,
    )
    return LoglinearSelection(
        selected=selected,
        latent_units=latent_units,
        g2=g2,
        scores=scores,
        p_values=p_values,
        model=model,
        n_permutations=int(n_permutations),
        seed=seed_value,
    )
