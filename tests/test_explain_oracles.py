"""Label transfer (Hess, Hackenberg & Binder 2020, §2.6) and the NMF baseline against oracles.

Every expected value here is computed from the definitions with numpy, scipy and scikit-learn,
not by the functions under test: transferred labels from a lookup table of patterns, label
frequencies from the matching cells, principal components from an SVD of the jointly
standardised data, Davies–Bouldin indices from :func:`sklearn.metrics.davies_bouldin_score`,
ranks by counting, and the NMF selection from :class:`sklearn.decomposition.NMF` fitted here.
Random draws are checked by chi-square tests at a generous level (1e-3) on fixed seeds.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from scipy.stats import chisquare
from sklearn.decomposition import NMF
from sklearn.metrics import davies_bouldin_score

from omicsembed.explain.baselines import nmf_gene_selection
from omicsembed.explain.label_transfer import (
    label_transfer_davies_bouldin,
    principal_components_joint,
    rank_against_random_gene_sets,
    transfer_labels,
)

ALPHA = 1e-3


def oracle_components(observed: np.ndarray, synthetic: np.ndarray, k: int = 2) -> np.ndarray:
    """Scores of the synthetic cells on the first k PCs of the stacked, standardised data."""
    stacked = np.vstack([observed, synthetic]).astype(np.float64)
    centred = stacked - stacked.mean(axis=0)
    sd = np.sqrt((centred**2).mean(axis=0))  # sd over all cells, ddof 0
    standardised = np.divide(centred, sd, out=np.zeros_like(centred), where=sd > 0)
    u, s, _ = np.linalg.svd(standardised, full_matrices=False)
    assert np.all(s[:k] - s[1 : k + 1] > 1e-3 * s[0])  # distinct components: signs only differ
    return (u[:, :k] * s[:k])[observed.shape[0] :]


def oracle_index(points: np.ndarray, labels: np.ndarray) -> float:
    """Davies–Bouldin index of scikit-learn; NaN for a single label."""
    if np.unique(labels).size < 2:
        return float("nan")
    return float(davies_bouldin_score(points, labels))


# label of the pattern in genes (5, 2); two patterns share label "a"
RULE = {(0, 0): "b", (0, 1): "a", (1, 0): "c", (1, 1): "a"}


def determined(seed: int, n_obs: int = 80, n_syn: int = 300) -> tuple[np.ndarray, ...]:
    """Observed cells whose label is a function of genes 5 and 2; the other genes carry noise
    and the synthetic cells' label signal (genes 0, 1 follow the pattern), so PCs are distinct.
    """
    rng = np.random.default_rng(seed)

    def cells(n: int) -> np.ndarray:
        x = (rng.random((n, 8)) < 0.5).astype(np.uint8)
        x[:4, [5, 2]] = list(RULE)  # every pattern present
        x[:, 0] = np.where(rng.random(n) < 0.9, x[:, 5], 1 - x[:, 5])
        x[:, 1] = np.where(rng.random(n) < 0.8, x[:, 2], 1 - x[:, 2])
        return x

    observed, synthetic = cells(n_obs), cells(n_syn)
    labels = np.array([RULE[(row[5], row[2])] for row in observed], dtype=object)
    expected = np.array([RULE[(row[5], row[2])] for row in synthetic], dtype=object)
    return observed, labels, synthetic, expected


def test_labels_of_patterns_that_determine_the_label_are_copied_exactly() -> None:
    observed, labels, synthetic, expected = determined(seed=0)
    for seed in (0, 1, 12345):
        transferred, matched = transfer_labels(observed, labels, synthetic, [5, 2], seed=seed)
        assert matched.all()
        np.testing.assert_array_equal(transferred, expected)
    # a pattern no observed cell has: matched is False exactly there, the rest is still exact
    keep = ~((observed[:, 5] == 1) & (observed[:, 2] == 1))
    transferred, matched = transfer_labels(
        observed[keep], labels[keep], synthetic, np.array([2.0, 5.0]), seed=3
    )
    unmatched = (synthetic[:, 5] == 1) & (synthetic[:, 2] == 1)
    assert 0 < unmatched.sum() < len(synthetic)
    np.testing.assert_array_equal(matched, ~unmatched)
    np.testing.assert_array_equal(transferred[~unmatched], expected[~unmatched])
    assert set(transferred[unmatched]) <= {"a", "b", "c"}


def tie_data() -> tuple[np.ndarray, np.ndarray]:
    """Observed cells in genes (0, 1) and their labels, pattern groups interleaved in order.

    (1, 0): a, b, a, a, c -> a 3/5, b 1/5, c 1/5; (0, 1): b, c, c, c -> b 1/4, c 3/4;
    (1, 1): d. Labels overall: a 3, b 2, c 4, d 1 (the unmatched rule must not follow these).
    """
    rows = [
        ((1, 0), "a"),
        ((0, 1), "b"),
        ((1, 0), "b"),
        ((1, 1), "d"),
        ((1, 0), "a"),
        ((0, 1), "c"),
        ((0, 1), "c"),
        ((1, 0), "a"),
        ((0, 1), "c"),
        ((1, 0), "c"),
    ]
    rng = np.random.default_rng(0)
    observed = np.array([[*pattern, rng.integers(0, 2)] for pattern, _ in rows], dtype=np.uint8)
    labels = np.array([label for _, label in rows], dtype=object)
    return observed, labels


def counts(values: np.ndarray, categories: list[str]) -> np.ndarray:
    assert set(values) <= set(categories)
    return np.array([np.sum(values == c) for c in categories])


def test_among_matching_cells_one_is_drawn_uniformly_per_synthetic_cell() -> None:
    observed, labels = tie_data()
    n = 3000
    rng = np.random.default_rng(1)
    synthetic = np.zeros((2 * n, 3), dtype=np.uint8)
    synthetic[:n, 0] = 1  # pattern (1, 0)
    synthetic[n:, 1] = 1  # pattern (0, 1)
    synthetic[:, 2] = rng.integers(0, 2, 2 * n)  # not selected: must not matter
    transferred, matched = transfer_labels(observed, labels, synthetic, [0, 1], seed=11)
    assert matched.all()
    for part, pattern in ((slice(0, n), (1, 0)), (slice(n, 2 * n), (0, 1))):
        cells = (observed[:, 0] == pattern[0]) & (observed[:, 1] == pattern[1])
        categories = sorted(set(labels[cells]))
        expected = counts(labels[cells], categories) / cells.sum() * n
        got = counts(transferred[part], categories)
        assert chisquare(got, expected).pvalue > ALPHA, (pattern, got, expected)


def test_unmatched_cells_get_a_label_drawn_uniformly_from_the_distinct_labels() -> None:
    observed, labels = tie_data()
    synthetic = np.zeros((4000, 3), dtype=np.uint8)  # pattern (0, 0): no observed cell has it
    synthetic[::2, 2] = 1
    transferred, matched = transfer_labels(observed, labels, synthetic, [0, 1], seed=5)
    assert not matched.any()
    categories = ["a", "b", "c", "d"]
    got = counts(transferred, categories)
    # uniform over the distinct labels (authors: rand(unique(labels))), not over the cells
    assert chisquare(got, np.full(4, len(synthetic) / 4)).pvalue > ALPHA, got


def test_joint_principal_components_equal_an_svd_of_the_jointly_standardised_data() -> None:
    observed, _, synthetic, _ = determined(seed=2, n_obs=50, n_syn=70)
    observed[:, 7] = 1  # constant over all cells: standardised to 0, not NaN
    synthetic[:, 7] = 1
    observed[:, 4] = 0  # constant in the observed cells only: standardised jointly
    for k in (2, 3):
        got = principal_components_joint(observed, synthetic, n_components=k)
        expected = oracle_components(observed, synthetic, k)
        assert got.shape == (len(synthetic), k)
        signs = np.sign(np.sum(got * expected, axis=0))  # a PC's sign is arbitrary
        np.testing.assert_allclose(got * signs, expected, rtol=0, atol=1e-10)


def test_index_of_determined_transfers_equals_scikit_learn_on_oracle_components() -> None:
    observed, labels, synthetic, expected = determined(seed=4)
    components = oracle_components(observed, synthetic)
    want = davies_bouldin_score(components, expected)
    got = label_transfer_davies_bouldin(observed, labels, synthetic, [5, 2], n_transfer_seeds=2)
    assert got == pytest.approx(want, rel=1e-10)
    # any orientation of the same components gives the same index
    flipped = components * np.array([-1.0, 1.0])
    assert label_transfer_davies_bouldin(
        observed, labels, synthetic, [2, 5], components=flipped, n_transfer_seeds=1
    ) == pytest.approx(want, rel=1e-10)


def test_index_is_the_mean_over_transfer_seeds_of_the_transfers_with_two_labels() -> None:
    # genes (0, 1): (1, 0) only "a" cells; (1, 1) three "a" cells and one "b" cell; (0, *) "b".
    # Synthetic cells: 60 of (1, 0) and 2 of (1, 1): a transfer has a "b" only if one of the two
    # tied cells draws the "b" cell (p = 7/16), so some seeds give one label (NaN, skipped).
    rng = np.random.default_rng(6)
    observed = (rng.random((40, 5)) < 0.5).astype(np.uint8)
    observed[:, :2] = [(1, 0)] * 20 + [(1, 1)] * 3 + [(1, 1)] + [(0, 0), (0, 1)] * 8
    labels = np.array(["a"] * 23 + ["b"] * 17, dtype=object)
    synthetic = (rng.random((62, 5)) < 0.5).astype(np.uint8)
    synthetic[:, :2] = [(1, 0)] * 60 + [(1, 1)] * 2
    components = oracle_components(observed, synthetic)
    first, n_seeds = 40, 8
    per_seed = [
        oracle_index(components, transfer_labels(observed, labels, synthetic, [0, 1], seed=s)[0])
        for s in range(first, first + n_seeds)
    ]
    assert 0 < np.isnan(per_seed).sum() < n_seeds  # both kinds of transfer occur
    got = label_transfer_davies_bouldin(
        observed, labels, synthetic, [0, 1], n_transfer_seeds=n_seeds, seed=first
    )
    assert got == pytest.approx(np.nanmean(per_seed), rel=1e-10)


def ranking_data() -> tuple[np.ndarray, ...]:
    """Six genes, three labels; gene 0 marks label "a" exactly and every synthetic cell has it,
    so every gene set with gene 0 transfers "a" only (no index)."""
    rng = np.random.default_rng(8)
    types = np.repeat([0, 1, 2], 20)
    observed = (rng.random((60, 6)) < 0.3 + 0.2 * types[:, None]).astype(np.uint8)
    observed[:, 0] = types == 0
    labels = np.array(["a", "b", "c"], dtype=object)[types]
    kinds = rng.integers(0, 3, 200)
    synthetic = (rng.random((200, 6)) < 0.3 + 0.2 * kinds[:, None]).astype(np.uint8)
    synthetic[:, 0] = 1
    return observed, labels, synthetic


def test_random_gene_sets_are_uniform_subsets_scored_with_the_same_transfer_seeds() -> None:
    observed, labels, synthetic = ranking_data()
    n_seeds, seed, n_random = 2, 17, 300
    ranking = rank_against_random_gene_sets(
        observed, labels, synthetic, [1, 2], n_random=n_random, n_transfer_seeds=n_seeds, seed=seed
    )
    # every 2-gene subset, scored by an oracle loop: the transfers of seeds seed, seed + 1, ...
    # and scikit-learn's index on the oracle components, averaged over transfers with two labels
    components = oracle_components(observed, synthetic)
    subsets = list(itertools.combinations(range(6), 2))
    values = {}
    for subset in subsets:
        per_seed = [
            oracle_index(
                components, transfer_labels(observed, labels, synthetic, subset, seed=s)[0]
            )
            for s in range(seed, seed + n_seeds)
        ]
        values[subset] = np.nan if np.isnan(per_seed).all() else np.nanmean(per_seed)
    assert ranking.selected_index == pytest.approx(values[(1, 2)], rel=1e-10)
    finite = {s: v for s, v in values.items() if np.isfinite(v)}
    assert set(values) - set(finite) == {s for s in subsets if 0 in s}
    distinct = np.array(sorted(finite.values()))
    assert np.all(np.diff(distinct) > 1e-6)  # each finite value names one subset
    # every random set is a 2-gene subset: recover which one from its index
    drawn = []
    for value in ranking.random_indices:
        if np.isnan(value):
            drawn.append("with gene 0")
            continue
        nearest = min(finite, key=lambda s: abs(finite[s] - value))
        assert value == pytest.approx(finite[nearest], rel=1e-10)
        drawn.append(nearest)
    # drawn uniformly among all 15 subsets (the selected genes included)
    categories = [*finite, "with gene 0"]
    got = np.array([drawn.count(c) for c in categories])
    expected = np.array([1.0] * len(finite) + [len(subsets) - len(finite)]) / len(subsets)
    assert chisquare(got, expected * n_random).pvalue > ALPHA, got


def test_rank_counts_strictly_better_sets_and_sets_without_an_index_count_as_worse() -> None:
    observed, labels, synthetic = ranking_data()
    for genes in ([1, 2], [3, 5], [5, 1]):  # [5, 1] ties with drawn sets {1, 5}
        ranking = rank_against_random_gene_sets(
            observed, labels, synthetic, genes, n_random=60, n_transfer_seeds=2, seed=3
        )
        mine = ranking.selected_index
        others = ranking.random_indices
        no_index = np.isnan(others)
        ties = np.sum(others[~no_index] == mine)
        assert no_index.any() and ties > 0  # both special cases occur
        assert ranking.rank == 1 + np.sum(others[~no_index] < mine)
        assert ranking.beaten == np.sum(others[~no_index] > mine) + no_index.sum()
        assert (ranking.rank - 1) + ranking.beaten + ties == len(others)
        assert ranking.to_dict()["random_median"] == pytest.approx(np.nanmedian(others))


def test_a_planted_gene_set_ranks_first_among_random_sets_of_noise_genes() -> None:
    # genes 0-1 give the label exactly; 2-11 are noise; synthetic cells follow the same types
    rng = np.random.default_rng(9)

    def cells(n: int) -> tuple[np.ndarray, np.ndarray]:
        types = rng.integers(0, 3, n)
        x = (rng.random((n, 12)) < 0.5).astype(np.uint8)
        x[:, 0] = types == 1
        x[:, 1] = types == 2
        return x, types

    observed, types = cells(90)
    synthetic, _ = cells(200)
    labels = np.array(["x", "y", "z"], dtype=object)[types]
    ranking = rank_against_random_gene_sets(
        observed, labels, synthetic, [0, 1], n_random=40, n_transfer_seeds=2, seed=0
    )
    # 1 of the 66 gene pairs is the planted one: a random set equal to it ties with it
    ties = int(np.sum(ranking.random_indices == ranking.selected_index))
    assert ranking.rank == 1
    assert ranking.beaten == 40 - ties
    assert ties <= 3


def nmf_oracle(x: np.ndarray, n_components: int, max_iter: int, seed: int) -> np.ndarray:
    """Loadings max_k H[k, j] of scikit-learn's KL NMF with multiplicative updates."""
    model = NMF(
        n_components=min(n_components, *x.shape),
        beta_loss="kullback-leibler",
        solver="mu",
        init="nndsvda",
        max_iter=max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x)
    return model.components_.max(axis=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_selection_is_the_genes_of_largest_scikit_learn_loading() -> None:
    rng = np.random.default_rng(10)
    binary = (rng.random((80, 15)) < rng.random(15)).astype(np.float64)
    counts_ = rng.poisson(rng.gamma(1.0, 2.0, (60, 1)) * rng.gamma(1.0, 1.0, 12)).astype(float)
    cases = [
        (binary, 6, {"n_components": 4, "max_iter": 300, "seed": 0}),
        (binary, 15, {"n_components": 2, "max_iter": 50, "seed": 7}),
        (counts_, 5, {}),  # defaults: 10 components, 500 iterations
        (counts_[:6], 4, {"n_components": 9}),  # more components than cells: reduced to 6
    ]
    for x, n_select, options in cases:
        settings = {"n_components": 10, "max_iter": 500, "seed": 0} | options
        loading = nmf_oracle(x, **settings)
        got = nmf_gene_selection(x, n_select, **options)
        assert got.dtype == np.int64 and got.shape == (n_select,)
        assert len(set(got.tolist())) == n_select
        # largest loading first; ties between equal loadings may come in either order
        np.testing.assert_array_equal(loading[got], np.sort(loading)[::-1][:n_select])


def test_nmf_selects_the_planted_blocks_by_maximal_not_summed_loading() -> None:
    # three groups of cells, each expressing its own block of four genes; gene 12 is expressed
    # (less often) in two groups and genes 13-19 are sparse noise
    rng = np.random.default_rng(0)
    n = 300
    groups = rng.integers(0, 3, n)
    x = np.zeros((n, 20))
    for k in range(3):
        x[groups == k, 4 * k : 4 * k + 4] = rng.random(((groups == k).sum(), 4)) < 0.9
    x[:, 12] = (groups < 2) & (rng.random(n) < 0.6)
    x[:, 13:] = rng.random((n, 7)) < 0.05
    got = nmf_gene_selection(x, 13, n_components=3, seed=0)
    # the twelve block genes first: the shared gene has the larger summed loading (it loads on
    # two components) but the smaller maximal one; it still comes before the noise genes
    assert set(got[:12].tolist()) == set(range(12))
    assert got[12] == 12
    # KL NMF keeps column sums (sum_i (WH)_ij = sum_i x_ij at a fixed point), so within a block
    # (one component) the loadings are ordered as the genes' counts
    for k in range(3):
        block = [g for g in got.tolist() if 4 * k <= g < 4 * k + 4]
        assert np.all(np.diff(x[:, block].sum(axis=0)) <= 0), block
