"""Label transfer, Davies–Bouldin ranking, NMF baseline and energy statistic."""

from __future__ import annotations

import numpy as np
import pytest

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.explain.baselines import energy_statistic, nmf_gene_selection
from omicsembed.explain.label_transfer import (
    davies_bouldin,
    label_transfer_davies_bouldin,
    rank_against_random_gene_sets,
    transfer_labels,
)


def cell_types(n: int, seed: int, n_noise: int = 30):
    """Three cell types marked by genes 0-5 (two high genes each), plus noise genes."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, 3, n)
    markers = np.zeros((n, 6))
    markers[np.arange(n), 2 * types] = 1
    markers[np.arange(n), 2 * types + 1] = 1
    flips = rng.random(markers.shape) < 0.05
    markers = np.where(flips, 1 - markers, markers)
    noise = rng.random((n, n_noise)) < 0.5
    X = np.hstack([markers, noise]).astype(np.uint8)
    return X, np.array(["a", "b", "c"])[types]


def test_transfer_copies_labels_of_identical_patterns() -> None:
    observed = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=np.uint8)
    labels = np.array(["x", "y", "z"], dtype=object)
    synthetic = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]], dtype=np.uint8)
    transferred, matched = transfer_labels(observed, labels, synthetic, [0, 1], seed=1)
    # genes 0-1: pattern (1,0) is shared by x and z; (0,1) only y; (0,0) none
    assert matched.tolist() == [True, True, True, False]
    assert transferred[1] == "y"
    assert transferred[0] in {"x", "z"} and transferred[2] in {"x", "z"}
    assert transferred[3] in {"x", "y", "z"}


def test_ties_and_unmatched_are_drawn_uniformly() -> None:
    observed = np.array([[1], [1], [1], [1]], dtype=np.uint8)
    labels = np.array(["p", "p", "p", "q"], dtype=object)
    synthetic = np.vstack([np.ones((4000, 1)), np.zeros((4000, 1))]).astype(np.uint8)
    transferred, matched = transfer_labels(observed, labels, synthetic, [0], seed=3)
    assert matched[:4000].all() and not matched[4000:].any()
    assert abs(np.mean(transferred[:4000] == "q") - 0.25) < 0.03  # one of four matching cells
    assert abs(np.mean(transferred[4000:] == "q") - 0.5) < 0.03  # uniform over distinct labels


def test_marker_genes_rank_first_among_random_gene_sets() -> None:
    observed, labels = cell_types(600, seed=0)
    synthetic, _ = cell_types(2000, seed=1)
    ranking = rank_against_random_gene_sets(
        observed, labels, synthetic, np.arange(6), n_random=20, n_transfer_seeds=3, seed=0
    )
    assert ranking.rank == 1 and ranking.beaten == 20
    noise = label_transfer_davies_bouldin(
        observed, labels, synthetic, np.arange(10, 16), n_transfer_seeds=3
    )
    assert ranking.selected_index < noise


def test_label_transfer_rejects_bad_input() -> None:
    observed, labels = cell_types(20, seed=0)
    with pytest.raises(InvalidInputError, match="binary"):
        transfer_labels(observed * 2, labels, observed, [0])
    with pytest.raises(ShapeMismatchError):
        transfer_labels(observed, labels[:5], observed, [0])
    with pytest.raises(InvalidInputError, match="missing"):
        transfer_labels(observed, np.array([None] * 20), observed, [0])
    with pytest.raises(InvalidInputError, match="indices"):
        transfer_labels(observed, labels, observed, [99])


def test_nmf_selects_block_genes_over_noise() -> None:
    rng = np.random.default_rng(0)
    programs = np.zeros((300, 40))
    groups = rng.integers(0, 2, 300)
    programs[groups == 0, :5] = rng.random(((groups == 0).sum(), 5)) < 0.9
    programs[groups == 1, 5:10] = rng.random(((groups == 1).sum(), 5)) < 0.9
    programs[:, 10:] = rng.random((300, 30)) < 0.1
    selected = nmf_gene_selection(programs, 6, n_components=2, seed=0)
    assert set(selected.tolist()) <= set(range(10))
    with pytest.raises(InvalidInputError):
        nmf_gene_selection(-programs, 3)


def test_energy_statistic_separates_shifted_data() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    b = rng.normal(size=(500, 8))
    shifted = rng.normal(size=(500, 8)) + 1.0
    same = energy_statistic(a, b)
    different = energy_statistic(shifted, b)
    assert abs(same) < 0.05
    assert different > 10 * abs(same) and different > 0.2
    with pytest.raises(ShapeMismatchError):
        energy_statistic(a, b[:, :3])


def test_davies_bouldin_equals_scikit_learn() -> None:
    from sklearn.metrics import davies_bouldin_score

    rng = np.random.default_rng(0)
    for n_clusters, dims in [(2, 2), (15, 2), (4, 5)]:
        points = rng.normal(size=(3000, dims))
        codes = rng.integers(0, n_clusters, 3000) * 3  # gaps in the codes are ignored
        points += codes[:, None] * 0.1
        assert davies_bouldin(points, codes) == pytest.approx(
            davies_bouldin_score(points, codes), rel=1e-10
        )
    assert np.isnan(davies_bouldin(points, np.zeros(3000, int)))
