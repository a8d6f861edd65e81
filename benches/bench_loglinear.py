"""Benchmark: stepwise log-linear G² selection (Hess et al. 2020 §2.5, ``bestset``).

The full selection of ``k`` features from ``p`` binary synthetic features with ``r`` binary latent
units and ``n`` samples, model ``[U_j S][X_i]`` on 0.5-filled tables. Methods:

- ``ours``: :func:`omicsembed.explain.loglinear.select_features_loglinear` (Rust: features
  packed as bits, samples sorted by stratum of the selected features; cells (u = 0, 1 within
  a stratum) of at most 7 samples summarised by class — pure, or mixed with κ ones — in
  bit-sliced per-feature counters, 256 features per operation; in larger strata the smaller
  cell counted by bit-sliced (carry-save) adders, the other by difference, and ``x ln x``
  table look-ups from byte counts in strata of at most 255 samples; stratum totals counted
  for the smaller of two siblings, the other one its parent minus it; rayon over latent
  units, GIL released).
- ``numpy``: the best vectorised numpy I could write for the same closed form: X as float32
  and U as bool once, then per step the stratum codes; the feature counts of every stratum and
  of its U_j = 1 samples, all latent units at once, by one dense BLAS product with a 0/1
  indicator matrix (at most 8 strata) or one sparse CSR indicator product (``scipy.sparse``,
  built from the samples in stratum order); then, once the largest stratum is small, each
  (cell, feature) term and its empty-cell flags by two look-ups in one complex table indexed by
  (cell size, count), a latent unit at a time (arrays that stay in cache); with few, large
  strata the same terms from the half-integer ``x ln x`` look-up table. (It replaced, in
  session 21, a baseline 2.5× slower: one sparse product per latent unit and six look-ups per
  cell and feature on whole ``(m, p)`` arrays.) Timed on the full problem (or
  ``--numpy-steps`` steps and extrapolated by the measured per-step times, reported as such).
- ``glm``: what a generic tool does: one statsmodels Poisson GLM (dummy-coded ``[U_j S]``
  interaction + ``X_i``) per candidate table, G² = deviance. Far too slow at full size: a few
  fits are timed at each step up to ``--glm-max-step`` and multiplied by the number of
  candidates of that step; later steps (bigger tables, slower fits) are counted at the last
  measured per-fit time, so the GLM total is an extrapolated **lower bound**.

Scores are checked: numpy vs ours on every candidate of the timed steps (max relative difference
< 1e-9), GLM deviance vs ours on the sampled candidates (< 1e-8). Data: latent units
Bernoulli(0.5); each feature depends on a few latent units through a logistic model.

Timing: ``--rounds`` interleaved rounds, each timing ours as the best of ``--repeats`` calls and
numpy once; the ratio is the median of the rounds' ratios (each round's is in the JSON), so a
burst of load on a shared machine moves it less. Prints a short table on stderr and one JSON
line on stdout (with the 1-minute load average before and after, and on Linux the share of CPU
time the hypervisor took during the run, ``cpu_steal_fraction``).

Usage: ``python benches/bench_loglinear.py [--n 10000 --p 200 --r 10 --k 12]`` and the large
case ``--p 1000 --r 20 --numpy-steps 6 --glm-max-step 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from omicsembed.explain.loglinear import select_features_loglinear


def cpu_times() -> list[int] | None:
    """Aggregate CPU times of the machine (Linux ``/proc/stat``: user, nice, system, idle,
    iowait, irq, softirq, steal), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return [int(v) for v in fields[1:9]] if fields and fields[0] == "cpu" else None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of the machine's CPU time taken by the hypervisor between two readings (a virtual
    machine whose host is busy runs slower by about this much)."""
    if before is None or after is None:
        return None
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return round(spent[7] / max(sum(spent), 1), 3)


def make_data(n: int, p: int, r: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    weights = rng.normal(size=(r, p)) * 2.0 * (rng.random((r, p)) < 0.05)
    logits = (U - 0.5) @ weights + rng.normal(scale=0.5, size=p)
    X = (rng.random((n, p)) < 1.0 / (1.0 + np.exp(-logits))).astype(np.uint8)
    return X, U


def half_log_table(n: int) -> np.ndarray:
    d = np.arange(2 * n + 5) / 2.0
    out = np.zeros_like(d)
    out[1:] = d[1:] * np.log(d[1:])
    return out


def xlogx(v: np.ndarray) -> np.ndarray:
    out = np.zeros_like(v, dtype=np.float64)
    positive = v > 0
    out[positive] = v[positive] * np.log(v[positive])
    return out


def cell_term(h: np.ndarray, a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``x ln x(k) + x ln x(a − k) − x ln x(their sum)`` of cells of ``a`` samples with ``k``
    ones, empty cells filled with 0.5 (``h``: the doubled-index ``x ln x`` table)."""
    ones = np.where(k == 0, 1, 2 * k)
    zeros = np.where(a == k, 1, 2 * (a - k))
    return h[ones] + h[zeros] - h[ones + zeros]


def cell_counts(
    Xf: np.ndarray, on: np.ndarray, strata: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(r + 1, m, p)`` float32 feature counts (exact: counts < 2**24) of every stratum
    (block 0) and of its samples with ``U_j = 1`` (block ``1 + j``), and the ``(r + 1, m)``
    cell sizes. Few cells (``m ≤ 8``, the crossover on the machine of the README): a dense
    indicator matrix and one BLAS product; more: one sparse CSR indicator matrix (built from
    the samples in stratum order, no COO sort) times X."""
    n, r = on.shape
    sizes = np.empty((r + 1, m), np.int64)
    sizes[0] = np.bincount(strata, minlength=m)
    for j in range(r):
        sizes[j + 1] = np.bincount(strata[on[:, j]], minlength=m)
    if m <= 8:
        member = np.empty((n, r + 1), np.float32)
        member[:, 0] = 1.0
        member[:, 1:] = on
        indicator = np.zeros((n, m, r + 1), np.float32)
        indicator[np.arange(n), strata] = member
        counts = (Xf.T @ indicator.reshape(n, -1)).reshape(-1, m, r + 1).transpose(2, 1, 0)
    else:
        order = np.argsort(strata, kind="stable")
        in_order = on[order]
        samples = np.concatenate([order] + [order[in_order[:, j]] for j in range(r)])
        indptr = np.zeros((r + 1) * m + 1, np.int64)
        np.cumsum(sizes.ravel(), out=indptr[1:])
        shape = ((r + 1) * m, n)
        indicator = sp.csr_matrix((np.ones(len(samples), np.float32), samples, indptr), shape=shape)
        counts = (indicator @ Xf).reshape(r + 1, m, -1)
    return counts, sizes


def numpy_step(
    Xf: np.ndarray,
    on: np.ndarray,
    strata: np.ndarray,
    m: int,
    n_selected: int,
    ones: np.ndarray,
    h: np.ndarray,
) -> np.ndarray:
    """``(p, r)`` G² of every feature and latent unit at one step (marginal model); ``Xf`` is X
    as float32, ``on`` is U as bool.

    A cell (u = 0 or 1 within a stratum) of ``a`` samples with ``k`` ones adds
    ``x ln x(k) + x ln x(a − k) − x ln x(sum)`` (0.5 for empty cells) to the statistic, and its
    empty cells to the filled margins of X. When the largest stratum is small (late steps) both
    come from one table indexed by ``a·W + k`` (complex: the term and the empty-cell flags), two
    look-ups per (cell, feature, unit), one latent unit at a time so that the arrays stay in
    cache; otherwise (few strata) from ``h`` directly."""
    n, r = on.shape
    counts, sizes = cell_counts(Xf, on, strata, m)
    size = sizes[0]
    p = counts.shape[2]
    width = int(size.max()) + 1
    unoccupied = 2.0**n_selected - m
    half = np.empty((r, p))
    e0 = np.empty((r, p))
    e1 = np.empty((r, p))
    # (the flags of a feature's 2m cells are summed in one float: x = 1 ones below 2**20)
    if width * width <= m * p * r and 2 * m < 2**20:
        a = np.arange(width)[:, None]
        k = np.minimum(np.arange(width)[None, :], a)
        flags = (k == 0) + 2.0**20 * (a == k)  # empty x = 1 cell, empty x = 0 cell
        table = (cell_term(h, a, k) + 1j * flags).ravel()
        whole = counts[0].astype(np.intp) + (size * width)[:, None]
        for j in range(r):
            ones_cell = counts[j + 1].astype(np.intp) + (sizes[j + 1] * width)[:, None]
            z = (np.take(table, ones_cell) + np.take(table, whole - ones_cell)).sum(0)
            half[j] = z.real
            empty = z.imag.astype(np.int64)
            e1[j] = empty & (2**20 - 1)
            e0[j] = empty >> 20
    else:
        c1 = counts[0].astype(np.int64)
        for j in range(r):
            c11 = counts[j + 1].astype(np.int64)
            c01 = c1 - c11
            a1 = sizes[j + 1][:, None]
            a0 = size[:, None] - a1
            half[j] = (cell_term(h, a0, c01) + cell_term(h, a1, c11)).sum(0)
            e1[j] = (c11 == 0).sum(0) + (c01 == 0).sum(0)
            e0[j] = (c11 == a1).sum(0) + (c01 == a0).sum(0)
    np1 = ones[None] + 0.5 * (e1 + 2 * unoccupied)
    np0 = (n - ones)[None] + 0.5 * (e0 + 2 * unoccupied)
    g2 = 2 * (half - 2 * np.log(2) * unoccupied - xlogx(np0) - xlogx(np1) + xlogx(np0 + np1))
    return g2.T


def numpy_select(
    X: np.ndarray, U: np.ndarray, k: int, steps: int
) -> tuple[list[int], list[np.ndarray], list[float]]:
    """The same selection in numpy; returns selected, per-step scores and per-step seconds."""
    n = X.shape[0]
    h = half_log_table(n)
    ones = X.sum(0).astype(np.int64)
    strata = np.zeros(n, dtype=np.int64)
    m = 1
    selected: list[int] = []
    scores: list[np.ndarray] = []
    seconds: list[float] = []
    start = time.perf_counter()
    # once per selection (counted in the first step's time)
    Xf = X.astype(np.float32)
    on = U.astype(bool)
    for step in range(min(k, steps)):
        g2 = numpy_step(Xf, on, strata, m, step, ones, h)
        g2[selected] = np.nan
        flat = np.nanargmax(g2.ravel())  # first maximum: smallest i, then j
        i = int(flat // U.shape[1])
        selected.append(i)
        _, strata = np.unique(2 * strata + X[:, i], return_inverse=True)
        strata = strata.ravel()
        m = int(strata.max()) + 1
        seconds.append(time.perf_counter() - start)
        scores.append(g2)
        start = time.perf_counter()
    return selected, scores, seconds


def glm_g2(u: np.ndarray, s: np.ndarray, x: np.ndarray) -> float:
    """Deviance of the Poisson GLM [U S][X] on the 0.5-filled table (statsmodels)."""
    import statsmodels.api as sm

    q = s.shape[1]
    cols = np.column_stack([u, s, x]).astype(np.int64)
    cell = cols @ (1 << np.arange(q + 1, -1, -1))
    counts = np.bincount(cell, minlength=2 ** (q + 2)).astype(float)
    counts[counts == 0] = 0.5
    grid = (np.arange(2 ** (q + 2))[:, None] >> np.arange(q + 1, -1, -1)) & 1
    us_code = grid[:, :-1] @ (1 << np.arange(q, -1, -1))
    design = np.zeros((len(counts), 2 ** (q + 1) + 1))
    design[np.arange(len(counts)), us_code] = 1.0  # saturated [U S] (cell-means coding)
    design[:, -1] = grid[:, -1]  # X main effect
    fit = sm.GLM(counts, design, family=sm.families.Poisson()).fit(tol=1e-12, maxiter=100)
    return float(fit.deviance)


def glm_extrapolation(
    X: np.ndarray,
    U: np.ndarray,
    selected: list[int],
    scores: np.ndarray,
    k: int,
    max_step: int,
    fits: int,
    seed: int,
) -> tuple[float, list[float], float]:
    """Extrapolated GLM total (lower bound), per-fit seconds per measured step, max rel diff."""
    rng = np.random.default_rng(seed)
    p, r = X.shape[1], U.shape[1]
    glm_g2(U[:, 0], X[:, :0], X[:, 0])  # warm-up: statsmodels import
    per_fit: list[float] = []
    worst = 0.0
    total = 0.0
    for step in range(k):
        candidates = (p - step) * r
        if step < max_step:
            before = selected[:step]
            free = [i for i in range(p) if i not in before]
            start = time.perf_counter()
            for _ in range(fits):
                i = int(rng.choice(free))
                j = int(rng.integers(r))
                g2 = glm_g2(U[:, j], X[:, before], X[:, i])
                ours = scores[step, i, j]
                worst = max(worst, abs(g2 - ours) / max(abs(ours), 1.0))
            per_fit.append((time.perf_counter() - start) / fits)
        total += candidates * per_fit[-1]
    return total, per_fit, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--p", type=int, default=200)
    parser.add_argument("--r", type=int, default=10)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3, help="calls of ours per round (best)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--numpy-steps", type=int, default=None, help="default: all k steps")
    parser.add_argument("--glm-max-step", type=int, default=6)
    parser.add_argument("--glm-fits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    cpu_before = cpu_times()
    X, U = make_data(args.n, args.p, args.r, args.seed)

    select_features_loglinear(X[:200], U[:200], min(2, args.k))  # warm-up
    numpy_steps = args.k if args.numpy_steps is None else min(args.numpy_steps, args.k)
    # interleaved rounds (the machine may be shared): ours as the best of `repeats` calls, numpy
    # as one run, and the ratio per round; the medians are reported
    ours_rounds: list[float] = []
    numpy_rounds: list[float] = []
    numpy_diff = 0.0
    for _ in range(args.rounds):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            ours = select_features_loglinear(X, U, args.k)
            times.append(time.perf_counter() - start)
        ours_rounds.append(min(times))
        np_selected, np_scores, np_seconds = numpy_select(X, U, args.k, numpy_steps)
        assert np_selected == [int(i) for i in ours.selected[:numpy_steps]], (np_selected, ours)
        numpy_diff = max(
            numpy_diff,
            *(
                float(np.nanmax(np.abs(s - ours.scores[t]) / np.maximum(np.abs(ours.scores[t]), 1)))
                for t, s in enumerate(np_scores)
            ),
        )
        numpy_total = sum(np_seconds)
        if numpy_steps < args.k:  # later steps cost at least as much as the last measured one
            numpy_total += (args.k - numpy_steps) * np_seconds[-1]
        numpy_rounds.append(numpy_total)
    assert numpy_diff < 1e-9, numpy_diff
    ratios = [t_np / t_ours for t_np, t_ours in zip(numpy_rounds, ours_rounds, strict=True)]
    ours_s = float(np.median(ours_rounds))
    numpy_total = float(np.median(numpy_rounds))

    glm_total, glm_per_fit, glm_diff = glm_extrapolation(
        X,
        U,
        [int(i) for i in ours.selected],
        ours.scores,
        args.k,
        args.glm_max_step,
        args.glm_fits,
        args.seed,
    )
    assert glm_diff < 1e-8, glm_diff

    result: dict[str, Any] = {
        "bench": "loglinear_selection",
        "n": args.n,
        "p": args.p,
        "r": args.r,
        "k": args.k,
        "threads": int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count() or 1)),
        "ours_seconds": round(ours_s, 4),
        "numpy_seconds": round(numpy_total, 3),
        "numpy_extrapolated": numpy_steps < args.k,
        "numpy_steps_timed": numpy_steps,
        "glm_seconds_lower_bound": round(glm_total, 1),
        "glm_steps_timed": min(args.glm_max_step, args.k),
        "glm_seconds_per_fit": [round(t, 5) for t in glm_per_fit],
        "speedup_vs_numpy": round(float(np.median(ratios)), 1),
        "speedup_vs_numpy_per_round": [round(v, 1) for v in ratios],
        "speedup_vs_glm_lower_bound": round(glm_total / ours_s, 0),
        "max_rel_diff_numpy": numpy_diff,
        "max_rel_diff_glm": glm_diff,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "cpu_steal_fraction": steal_fraction(cpu_before, cpu_times()),
    }
    print(
        f"ours {ours_s:.3f} s | numpy {numpy_total:.2f} s"
        f"{' (extrapolated)' if numpy_steps < args.k else ''} | GLM ≥ {glm_total:.0f} s "
        f"(extrapolated) | ×{np.median(ratios):.0f} vs numpy (median of rounds: "
        f"{', '.join(f'{v:.0f}' for v in ratios)})"
        + (
            f" | CPU steal {steal:.0%}"
            if (steal := result["cpu_steal_fraction"]) is not None
            else ""
        ),
        file=sys.stderr,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
