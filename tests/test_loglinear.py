"""Log-linear kernels: tables, G², IPF vs Poisson GLM, stepwise selection vs R's loglin."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import power_divergence

from omicsembed.exceptions import ConvergenceError, InvalidInputError, ShapeMismatchError
from omicsembed.explain.loglinear import (
    LoglinearSelection,
    contingency_table,
    g_squared,
    ipf,
    is_decomposable,
    select_features_loglinear,
)

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"
REFERENCE_FILE = REFERENCE / "loglinear_bestset_r.json"


def rel_close(got: np.ndarray, want: np.ndarray, rel: float) -> bool:
    got, want = np.asarray(got, float), np.asarray(want, float)
    return bool(np.all(np.abs(got - want) <= rel * np.maximum(np.abs(want), 1.0)))


# --- contingency tables ------------------------------------------------------------------------


def test_contingency_table_matches_direct_counting() -> None:
    rng = np.random.default_rng(0)
    levels = [2, 3, 2, 4]
    X = np.column_stack([rng.integers(0, v, 500) for v in levels]).astype(np.uint8)
    table = contingency_table(X, levels)
    assert table.shape == tuple(levels) and table.dtype == np.int64
    expected = np.zeros(levels, dtype=np.int64)
    for row in X:
        expected[tuple(row)] += 1
    np.testing.assert_array_equal(table, expected)
    # inferred levels: max + 1, at least 2 (binary); bool and float input accepted
    np.testing.assert_array_equal(contingency_table(X), expected)
    B = rng.random((50, 3)) < 0.5
    np.testing.assert_array_equal(contingency_table(B), contingency_table(B.astype(float)))
    assert contingency_table(np.zeros((4, 2), np.uint8)).shape == (2, 2)


def test_contingency_table_rejects_values_outside_levels() -> None:
    X = np.array([[0, 1], [1, 0], [0, 2]], dtype=np.uint8)
    with pytest.raises(InvalidInputError, match=r"row 2, column 1"):
        contingency_table(X, [2, 2])
    with pytest.raises(InvalidInputError, match=r"X\[1, 0\]"):
        contingency_table(np.array([[0.0, 1.0], [0.5, 0.0]]))
    with pytest.raises(InvalidInputError):
        contingency_table(np.array([[0, -1]]))
    with pytest.raises(ShapeMismatchError):
        contingency_table(X, [2, 3, 2])
    with pytest.raises(ShapeMismatchError):
        contingency_table(np.zeros(5, np.uint8))
    with pytest.raises(InvalidInputError):
        contingency_table(X, [0, 3])


# --- G² ----------------------------------------------------------------------------------------


def test_g_squared_hand_example_and_scipy() -> None:
    n = np.array([[10.0, 20.0], [30.0, 40.0]])
    m = np.outer(n.sum(1), n.sum(0)) / n.sum()  # [[12, 18], [28, 42]]
    by_hand = 2 * (
        10 * np.log(10 / 12) + 20 * np.log(20 / 18) + 30 * np.log(30 / 28) + 40 * np.log(40 / 42)
    )
    assert g_squared(n, m) == pytest.approx(by_hand, rel=1e-14)
    stat, _ = power_divergence(n.ravel(), m.ravel(), lambda_="log-likelihood")
    assert g_squared(n, m) == pytest.approx(stat, rel=1e-12)
    # cells with n = 0 contribute nothing; n > 0 with m = 0 is infinite
    assert g_squared([0.0, 2.0], [1.0, 2.0]) == 0.0
    assert g_squared([1.0], [0.0]) == np.inf


def test_g_squared_errors() -> None:
    with pytest.raises(ShapeMismatchError):
        g_squared(np.ones((2, 2)), np.ones(4))
    with pytest.raises(InvalidInputError):
        g_squared([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(InvalidInputError):
        g_squared([1.0, np.nan], [1.0, 1.0])


# --- IPF vs Poisson GLM --------------------------------------------------------------------------


def glm_fitted(table: np.ndarray, margins: list[list[int]]) -> np.ndarray:
    """Fitted values of the hierarchical model by a statsmodels Poisson GLM (dummy coding)."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    names = [f"v{a}" for a in range(table.ndim)]
    cells = list(itertools.product(*[range(s) for s in table.shape]))
    frame = pd.DataFrame(cells, columns=names)
    frame["count"] = [table[c] for c in cells]
    terms = ["*".join(f"C({names[a]})" for a in generator) for generator in margins]
    fit = smf.glm("count ~ " + " + ".join(terms), frame, family=sm.families.Poisson()).fit(
        tol=1e-13, maxiter=200
    )
    return np.asarray(fit.fittedvalues).reshape(table.shape)


MODELS = [
    ((2, 3, 2), [[0, 1], [1, 2], [0, 2]]),  # no three-way interaction: needs IPF
    ((2, 2, 2, 2), [[0, 1], [1, 2], [2, 3], [3, 0]]),  # 4-cycle: needs IPF
    ((2, 2, 3, 2), [[0, 1, 2], [1, 2, 3]]),  # decomposable
    ((3, 2, 2), [[0, 1], [2]]),  # [AB][C]
    ((2, 2, 2, 2), [[0, 1], [1, 2], [0, 2], [3]]),  # non-decomposable + independent D
]


@pytest.mark.parametrize(("shape", "margins"), MODELS)
def test_ipf_agrees_with_poisson_glm(shape: tuple[int, ...], margins: list[list[int]]) -> None:
    rng = np.random.default_rng(len(shape) + len(margins))
    table = rng.poisson(20.0, size=shape).astype(float) + rng.integers(0, 2, size=shape)
    result = ipf(table, margins, tol=1e-12, max_iter=10_000)
    assert result.converged and result.method == "ipf"
    assert rel_close(result.fitted, glm_fitted(table, margins), 1e-8)
    # the fitted margins equal the observed ones
    for generator in margins:
        others = tuple(a for a in range(len(shape)) if a not in generator)
        np.testing.assert_allclose(table.sum(others), result.fitted.sum(others), atol=1e-9)
    decomposable = is_decomposable(margins, len(shape))
    assert decomposable == (margins in ([[0, 1, 2], [1, 2, 3]], [[0, 1], [2]]))
    if decomposable:
        closed = ipf(table, margins, method="closed_form")
        assert closed.iterations == 0 and closed.converged
        assert rel_close(closed.fitted, result.fitted, 1e-10)
    else:
        with pytest.raises(InvalidInputError, match="not decomposable"):
            ipf(table, margins, method="closed_form")
    assert ipf(table, margins, method="auto").method == ("closed_form" if decomposable else "ipf")


def test_ipf_filled_table_of_selection_model() -> None:
    """[U S][X] and [U S][S X] on a 0.5-filled table: closed form = IPF = GLM."""
    rng = np.random.default_rng(5)
    table = rng.poisson(1.5, size=(2, 2, 2, 2)).astype(float)
    table[table == 0] = 0.5
    for margins in ([[0, 1, 2], [3]], [[0, 1, 2], [1, 2, 3]]):
        closed = ipf(table, margins, method="closed_form").fitted
        assert rel_close(closed, ipf(table, margins, tol=1e-12).fitted, 1e-10)
        assert rel_close(closed, glm_fitted(table, margins), 1e-8)


def test_ipf_convergence_reporting() -> None:
    rng = np.random.default_rng(2)
    table = rng.poisson(10.0, size=(2, 2, 2)).astype(float) + 1
    margins = [[0, 1], [1, 2], [0, 2]]
    capped = ipf(table, margins, tol=1e-12, max_iter=1)
    assert not capped.converged and capped.iterations == 1 and capped.max_deviation > 0
    with pytest.raises(ConvergenceError, match="did not converge"):
        ipf(table, margins, tol=1e-12, max_iter=1, raise_on_failure=True)
    with pytest.raises(InvalidInputError, match="refers to variable 5"):
        ipf(table, [[0, 5]])
    with pytest.raises(InvalidInputError, match="lists a variable twice"):
        ipf(table, [[0, 0]])
    with pytest.raises(InvalidInputError, match="observed table has value"):
        ipf(-table, margins)
    with pytest.raises(InvalidInputError, match="tol must be"):
        ipf(table, margins, tol=0.0)
    with pytest.raises(InvalidInputError, match="max_iter must be"):
        ipf(table, margins, max_iter=0)
    with pytest.raises(InvalidInputError, match="method must be"):
        ipf(table, margins, method="newton")  # type: ignore[arg-type]


def test_is_decomposable() -> None:
    assert is_decomposable([[0, 1], [1, 2]], 3)
    assert not is_decomposable([[0, 1], [1, 2], [0, 2]], 3)
    assert is_decomposable([[0, 1, 2], [0, 1], [1, 2], [0, 2]], 3)  # contained generators
    assert is_decomposable([], 3)


# --- stepwise selection: reference values from R -------------------------------------------------


@pytest.mark.skipif(not REFERENCE_FILE.exists(), reason="R reference file absent")
def test_selection_matches_r_loglin_reference() -> None:
    reference = json.loads(REFERENCE_FILE.read_text())
    X = np.array(reference["X"], dtype=np.uint8)
    H = np.array(reference["H"], dtype=np.uint8)
    result = select_features_loglinear(X, H, reference["k"])
    assert result.selected.tolist() == reference["selected"]
    for t, step in enumerate(reference["steps"]):
        assert sorted(result.selected[:t].tolist()) == sorted(step["S_before"])
        assert result.selected[t] == step["best_i"]
        assert result.latent_units[t] == step["best_j"]
        assert abs(result.g2[t] - step["best_g2"]) <= 1e-8 * max(step["best_g2"], 1.0)
        want = np.array([[np.nan if v is None else v for v in row] for row in step["g2"]])
        got = result.scores[t]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        assert rel_close(got[ok], want[ok], 1e-8)


# --- stepwise selection: independent numpy / GLM oracles -----------------------------------------


def filled_table(columns: list[np.ndarray]) -> np.ndarray:
    q = len(columns)
    cell = np.zeros(len(columns[0]), dtype=np.int64)
    for c in columns:
        cell = 2 * cell + c
    table = np.bincount(cell, minlength=2**q).astype(float).reshape((2,) * q)
    table[table == 0] = 0.5
    return table


def oracle_g2(u: np.ndarray | None, s: np.ndarray, x: np.ndarray, conditional: bool) -> float:
    """G² of [U S][X] / [U S][S X] / [S][X] on the 0.5-filled table, by dense numpy."""
    columns = ([u] if u is not None else []) + [s[:, a] for a in range(s.shape[1])] + [x]
    table = filled_table(columns)
    n_us = table.sum(axis=-1, keepdims=True)
    if conditional:
        n_s = table.sum(axis=(0, -1), keepdims=True)
        n_sx = table.sum(axis=0, keepdims=True)
        fitted = n_us * n_sx / n_s
    else:
        n_x = table.sum(axis=tuple(range(table.ndim - 1)), keepdims=True)
        fitted = n_us * n_x / table.sum()
    return float(2 * np.sum(table * np.log(table / fitted)))


@pytest.mark.parametrize(
    ("model", "n"), [("marginal", 700), ("conditional", 700), ("marginal", 1), ("marginal", 9)]
)
def test_selection_scores_match_dense_closed_form(model: str, n: int) -> None:
    # n below the largest small cell summarised by class (16 samples then, 8 now) once made the
    # marginal engine panic
    rng = np.random.default_rng(11)
    p, r = 12, 3
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    X = (rng.random((n, p)) < 0.35).astype(np.uint8)
    X[:, 3] ^= U[:, 1] & (rng.random(n) < 0.7)
    result = select_features_loglinear(X, U, 5, model=model)  # type: ignore[arg-type]
    conditional = model == "conditional"
    for t in range(5):
        before = result.selected[:t]
        for i in range(p):
            if i in before:
                assert np.all(np.isnan(result.scores[t, i]))
                continue
            for j in range(r):
                want = oracle_g2(U[:, j], X[:, before], X[:, i], conditional)
                assert abs(result.scores[t, i, j] - want) <= 1e-9 * max(want, 1.0)
        best = np.nanargmax(result.scores[t].ravel())
        assert (result.selected[t], result.latent_units[t]) == divmod(int(best), r)


def test_selection_scores_match_poisson_glm() -> None:
    """A few candidate tables refitted as Poisson GLMs (statsmodels), both models."""
    rng = np.random.default_rng(4)
    n, p, r = 300, 6, 2
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    X = (rng.random((n, p)) < 0.5).astype(np.uint8)
    for model, margins in (("marginal", [[0, 1, 2], [3]]), ("conditional", [[0, 1, 2], [1, 2, 3]])):
        result = select_features_loglinear(X, U, 3, model=model)  # type: ignore[arg-type]
        before = result.selected[:2]
        for i in (a for a in range(p) if a not in before):
            j = i % r
            table = filled_table([U[:, j], X[:, before[0]], X[:, before[1]], X[:, i]])
            fitted = glm_fitted(table, margins)
            want = float(2 * np.sum(table * np.log(table / fitted)))
            assert abs(result.scores[2, i, j] - want) <= 1e-8 * max(want, 1.0)


def test_selection_without_latent_units_starts_from_best_pair() -> None:
    rng = np.random.default_rng(8)
    n, p = 400, 8
    X = (rng.random((n, p)) < 0.5).astype(np.uint8)
    X[:, 6] = X[:, 2] ^ (rng.random(n) < 0.2)
    result = select_features_loglinear(X, None, 4)
    pair = np.full((p, p), -np.inf)
    for i, k in itertools.permutations(range(p), 2):
        pair[i, k] = oracle_g2(None, X[:, [i]], X[:, k], False)
    i, k = divmod(int(np.argmax(pair)), p)  # first i, then first k
    assert result.selected[:2].tolist() == [i, k] == [2, 6]
    assert result.g2[0] == pytest.approx(pair[i, k], rel=1e-10)
    assert result.g2[1] == pytest.approx(pair[i, k], rel=1e-10)
    np.testing.assert_allclose(result.scores[0, :, 0], pair.max(axis=1), rtol=1e-10)
    assert result.scores.shape == (4, p, 1)
    assert (result.latent_units == -1).all()
    before = result.selected[:2]
    for a in (a for a in range(p) if a not in before):
        want = oracle_g2(None, X[:, before], X[:, a], False)
        assert result.scores[2, a, 0] == pytest.approx(want, rel=1e-9)


def test_planted_feature_is_selected_first_with_small_p_value() -> None:
    rng = np.random.default_rng(3)
    n, p, r = 1000, 30, 5
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    X = (rng.random((n, p)) < 0.5).astype(np.uint8)
    X[:, 17] = U[:, 3]  # copies latent unit 3
    result = select_features_loglinear(X, U, 3, n_permutations=199, seed=1)
    assert (result.selected[0], result.latent_units[0]) == (17, 3)
    assert result.p_values is not None
    assert result.p_values[0] == pytest.approx(1 / 200)
    again = select_features_loglinear(X, U, 3, n_permutations=199, seed=1)
    np.testing.assert_array_equal(result.p_values, again.p_values)  # seeded
    generator = select_features_loglinear(X, U, 1, seed=np.random.default_rng(0))
    assert generator.selected[0] == 17


@pytest.mark.parametrize("model", ["marginal", "conditional"])
def test_selection_scores_of_two_lanes_and_many_samples_match_dense_closed_form(
    model: str,
) -> None:
    """p = 300 features (two 256-feature lanes) and n = 3000 samples (large strata, byte and
    word counts) against the dense numpy oracle, 15 candidates × 3 units per step."""
    rng = np.random.default_rng(7)
    n, p, r = 3000, 300, 3
    factors = rng.random((n, 6)) < 0.5
    noise = rng.random((n, p)) < 0.05 + 0.3 * (np.arange(p) % 7) / 7
    X = (factors[:, np.arange(p) % 6] ^ noise).astype(np.uint8)
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    result = select_features_loglinear(X, U, 6, model=model)  # type: ignore[arg-type]
    conditional = model == "conditional"
    for step in range(6):
        before = result.selected[:step]
        free = [i for i in range(p) if i not in before]
        for i in rng.choice(free, 15, replace=False):
            for j in range(r):
                want = oracle_g2(U[:, j], X[:, before], X[:, i], conditional)
                assert abs(result.scores[step, i, j] - want) <= 1e-9 * max(want, 1.0)


def test_permutation_p_values_roughly_uniform_under_noise() -> None:
    # one feature and one latent unit (no selection), independent noise: p ~ U(0, 1) up to the
    # discreteness of G² (ties count as ≥, which makes p slightly conservative)
    rng = np.random.default_rng(12)
    p_values = []
    for replicate in range(300):
        X = (rng.random((1000, 1)) < 0.5).astype(np.uint8)
        U = (rng.random((1000, 1)) < 0.5).astype(np.uint8)
        result = select_features_loglinear(X, U, 1, n_permutations=99, seed=replicate)
        assert result.p_values is not None
        p_values.append(result.p_values[0])
    values = np.array(p_values)
    assert 0.42 < values.mean() < 0.62
    for alpha in (0.05, 0.1, 0.25, 0.5, 0.75):
        assert alpha - 0.15 < np.mean(values <= alpha) < alpha + 0.04, alpha


@pytest.mark.parametrize("model", ["marginal", "conditional"])
def test_permutation_p_values_after_the_first_step_match_a_numpy_permutation_test(
    model: str,
) -> None:
    """Step 2 with two latent units: the statistic is the best G² over the units, and the
    conditional model permutes the chosen feature within the strata of S (its null keeps the
    X–S association). Both p-values are Monte Carlo estimates of the same permutation p-value:
    they agree within 4 standard errors."""
    rng = np.random.default_rng(0)
    n, p, r, permutations = 300, 4, 2, 999
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    X = (rng.random((n, p)) < 0.5).astype(np.uint8)
    X[:, 0] = U[:, 0] ^ (rng.random(n) < 0.1)
    X[:, 2] = U[:, 1] ^ (rng.random(n) < 0.46)
    result = select_features_loglinear(X, U, 2, n_permutations=permutations, seed=3, model=model)  # type: ignore[arg-type]
    assert result.p_values is not None
    conditional = model == "conditional"
    before, chosen = X[:, result.selected[:1]], X[:, result.selected[1]]

    def statistic(x: np.ndarray) -> float:
        return max(oracle_g2(U[:, j], before, x, conditional) for j in range(r))

    observed = statistic(chosen)
    assert observed == pytest.approx(result.g2[1], rel=1e-9)
    strata = [np.flatnonzero(before[:, 0] == v) for v in (0, 1)]
    at_least = 0
    for _ in range(permutations):
        if conditional:
            permuted = chosen.copy()
            for members in strata:
                permuted[members] = rng.permutation(chosen[members])
        else:
            permuted = rng.permutation(chosen)
        at_least += statistic(permuted) >= observed - 1e-10 * max(observed, 1.0)
    want = (1 + at_least) / (permutations + 1)
    assert 0.01 < want < 0.5  # a p-value that the comparison can tell apart
    spread = np.sqrt(2 * want * (1 - want) / permutations)
    assert abs(result.p_values[1] - want) < 4 * spread, (result.p_values[1], want)


def two_by_two_g2(n: int, ones_u: int, ones_x: int, both: int) -> float:
    """G² of [U][X] on the 0.5-filled 2 × 2 table with these margins and n11 = both."""
    sizes = [both, ones_u - both, ones_x - both, n - ones_u - ones_x + both]
    u = np.repeat([1, 1, 0, 0], sizes)
    x = np.repeat([1, 0, 1, 0], sizes)
    return oracle_g2(None, u[:, None], x, False)


def test_permutation_p_values_match_exact_hypergeometric() -> None:
    # permuting X keeps both margins of the 2 × 2 table, so the permutation null of n11 is
    # hypergeometric: the exact p-value is P(G²(N11) ≥ G²_obs) (ties within 1e-10 count)
    from scipy.stats import hypergeom

    rng = np.random.default_rng(21)
    n, n_perm = 150, 1999
    for replicate in range(5):
        U = (rng.random((n, 1)) < 0.4).astype(np.uint8)
        X = (rng.random((n, 1)) < np.where(U[:, :1] == 1, 0.6, 0.45)).astype(np.uint8)
        result = select_features_loglinear(X, U, 1, n_permutations=n_perm, seed=replicate)
        assert result.p_values is not None
        ones_x, ones_u = int(X.sum()), int(U.sum())
        support = np.arange(max(0, ones_x + ones_u - n), min(ones_x, ones_u) + 1)

        g2 = np.array([two_by_two_g2(n, ones_u, ones_x, int(b)) for b in support])
        observed = result.g2[0]
        weights = hypergeom(n, ones_u, ones_x).pmf(support)
        exact = weights[g2 >= observed - 1e-10 * max(observed, 1.0)].sum()
        sd = np.sqrt(exact * (1 - exact) / n_perm) + 1e-3
        assert abs(result.p_values[0] - exact) < 4 * sd, (replicate, result.p_values[0], exact)


def test_ties_go_to_first_feature_then_first_unit() -> None:
    rng = np.random.default_rng(6)
    n = 200
    base = (rng.random(n) < 0.5).astype(np.uint8)
    U = np.column_stack([rng.random(n) < 0.5, base, base]).astype(np.uint8)  # units 1, 2 equal
    X = np.column_stack([rng.random(n) < 0.5, base, base, base]).astype(np.uint8)
    result = select_features_loglinear(X, U, 2)
    assert (result.selected[0], result.latent_units[0]) == (1, 1)
    assert result.scores[0, 1, 1] == result.scores[0, 2, 2] == result.scores[0, 3, 1]


def test_ties_up_to_rounding_go_to_first_feature_then_first_unit() -> None:
    # a feature and its complement, a unit and its complement, and the two features of a pair
    # tie exactly, but their tables are arranged differently and their G² round differently
    n = 300
    for seed in range(40):
        rng = np.random.default_rng(seed)
        u = (rng.random(n) < 0.5).astype(np.uint8)
        x = u ^ (rng.random(n) < 0.25).astype(np.uint8)
        noise = (rng.random((n, 2)) < 0.5).astype(np.uint8)
        U = np.column_stack([noise[:, 0], 1 - u, u]).astype(np.uint8)
        X = np.column_stack([noise[:, 1], 1 - x, x]).astype(np.uint8)
        for model in ("marginal", "conditional"):
            result = select_features_loglinear(X, U, 1, model=model)
            assert (result.selected[0], result.latent_units[0]) == (1, 1), (seed, model)
        pair = np.column_stack([noise[:, 0], x, u]).astype(np.uint8)
        assert select_features_loglinear(pair, None, 2).selected.tolist() == [1, 2], seed


def test_to_frame() -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((100, 6)) < 0.5).astype(np.uint8)
    U = (rng.random((100, 2)) < 0.5).astype(np.uint8)
    result = select_features_loglinear(X, U, 3, n_permutations=9)
    assert isinstance(result, LoglinearSelection)
    frame = result.to_frame()
    assert list(frame.columns) == ["step", "feature", "latent_unit", "g2", "p_value"]
    assert frame["step"].tolist() == [1, 2, 3]
    assert frame["feature"].tolist() == result.selected.tolist()
    np.testing.assert_array_equal(frame["g2"], result.g2)
    assert select_features_loglinear(X, U, 2).to_frame()["p_value"].isna().all()


def test_selection_errors_are_typed() -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((50, 4)) < 0.5).astype(np.uint8)
    U = (rng.random((50, 2)) < 0.5).astype(np.uint8)
    bad = X.copy()
    bad[7, 2] = 2
    with pytest.raises(InvalidInputError, match=r"X\[7, 2\].*column 2"):
        select_features_loglinear(bad, U, 2)
    with pytest.raises(InvalidInputError, match=r"U\[0, 1\]"):
        select_features_loglinear(X, np.where(np.arange(2) == 1, 0.5, 0.0)[None].repeat(50, 0))
    # uint8 values above 1 are rejected by the Rust core, with the same message
    bad_units = U.copy()
    bad_units[4, 1] = 3
    with pytest.raises(InvalidInputError, match=r"U must be binary.*U\[4, 1\] = 3.*column 1"):
        select_features_loglinear(X, bad_units, 2)
    with pytest.raises(ShapeMismatchError):
        select_features_loglinear(X, U[:40], 2)
    with pytest.raises(ShapeMismatchError):
        select_features_loglinear(X[:, 0], U, 1)
    for k in (0, 5, 2.5, True):
        with pytest.raises(InvalidInputError, match="k must be"):
            select_features_loglinear(X, U, k)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="model"):
        select_features_loglinear(X, U, 2, model="joint")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="needs latent units"):
        select_features_loglinear(X, None, 2, model="conditional")
    with pytest.raises(InvalidInputError, match="no latent units"):
        select_features_loglinear(X, U[:, :0], 2)
    with pytest.raises(InvalidInputError, match="at least 2 features"):
        select_features_loglinear(X[:, :1], None, 1)
    with pytest.raises(InvalidInputError, match="n_permutations"):
        select_features_loglinear(X, U, 2, n_permutations=-1)
    with pytest.raises(InvalidInputError, match="seed"):
        select_features_loglinear(X, U, 2, seed=-3)
    with pytest.raises(InvalidInputError, match="no samples"):
        select_features_loglinear(X[:0], U[:0], 2)
    wide = (rng.random((50, 45)) < 0.5).astype(np.uint8)
    with pytest.raises(InvalidInputError, match="more than 40 features"):
        select_features_loglinear(wide, U, 41)
    assert len(select_features_loglinear(wide, U, 40).selected) == 40


def test_memory_layout_does_not_change_selection() -> None:
    # the public function reads any layout; the Rust binding refuses Fortran order rather than
    # reading its column-major memory as rows
    from omicsembed import _core

    rng = np.random.default_rng(3)
    X = (rng.random((120, 9)) < 0.4).astype(np.uint8)
    U = (rng.random((120, 3)) < 0.5).astype(np.uint8)
    reference = select_features_loglinear(X, U, 3)
    for layout in (np.asfortranarray(X), np.hstack([X, X])[:, :9], X.astype(bool)):
        other = select_features_loglinear(layout, np.asfortranarray(U), 3)
        np.testing.assert_array_equal(other.selected, reference.selected)
        np.testing.assert_array_equal(other.scores, reference.scores)
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        _core.select_features_loglinear(
            np.asfortranarray(X), U, 3, conditional=False, n_permutations=0, seed=0
        )


@pytest.mark.slow
def test_full_size_selection_takes_seconds() -> None:
    import time

    rng = np.random.default_rng(0)
    n, p, r = 10_000, 1000, 20
    U = (rng.random((n, r)) < 0.5).astype(np.uint8)
    X = (rng.random((n, p)) < 0.5).astype(np.uint8)
    X[:, 500] = U[:, 7]
    start = time.perf_counter()
    result = select_features_loglinear(X, U, 12)
    assert time.perf_counter() - start < 20.0
    assert (result.selected[0], result.latent_units[0]) == (500, 7)
    assert result.scores.shape == (12, p, r)


def test_arguments_of_the_wrong_kind_are_typed_errors() -> None:
    # int() would have truncated 2.5 and 0.5, and complex data failed deep inside numpy
    x = np.array([[0, 1], [1, 0], [1, 1]], dtype=np.uint8)
    table = np.ones((2, 2))
    calls = [
        (lambda: contingency_table(x, levels=2.5), "levels must be"),
        (lambda: contingency_table(x, levels=[np.nan, 2]), "level count must be an integer"),
        (lambda: contingency_table(x, levels=[2**64, 2]), r"level count .* \[1, 256\]"),
        (lambda: contingency_table(x, levels="2"), "levels must be"),
        (lambda: contingency_table(x.astype(complex)), "X must be real numbers"),
        (lambda: select_features_loglinear(x.astype(complex), None, 1), "X must be real"),
        (lambda: is_decomposable([[0]], -1), "n_vars must be"),
        (lambda: is_decomposable([[0]], 2.5), "n_vars must be"),
        (lambda: ipf(table, [[0.5]]), "variable must be an integer"),
        (lambda: ipf(table, None), "margins must be"),
        (lambda: ipf(table, [[0], [1]], max_iter=1.5), "max_iter must be"),
        (lambda: ipf(table, [[0], [1]], max_iter=2**70), "max_iter must be"),
        (lambda: ipf(table, [[0], [1]], max_iter=None), "max_iter must be"),
        (lambda: ipf(table, [[0], [1]], tol="a"), "tol must be"),
    ]
    for call, message in calls:
        with pytest.raises(InvalidInputError, match=message):
            call()
    # what int() used to accept without loss still works
    import pandas as pd

    for levels in (pd.Series([2, 2]), np.array([2.0, 2.0])):
        assert contingency_table(x, levels=levels).shape == (2, 2)
    assert ipf(table, [{0}, {1}], max_iter=1e4).converged
