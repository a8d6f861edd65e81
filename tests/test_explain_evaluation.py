"""Label transfer, Davies–Bouldin ranking, NMF baseline, energy statistic and its monitor."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.explain import EnergyStatisticMonitor
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
    with pytest.raises(InvalidInputError, match="no observed cells"):
        transfer_labels(observed[:0], labels[:0], observed, [0])
    with pytest.raises(InvalidInputError, match="no synthetic cells"):
        label_transfer_davies_bouldin(observed, labels, observed[:0], [0])
    # one label: a transfer is defined, its Davies–Bouldin index and a rank are not
    single = np.full(20, "a", dtype=object)
    assert set(transfer_labels(observed, single, observed, [0])[0]) == {"a"}
    with pytest.raises(InvalidInputError, match="distinct label"):
        label_transfer_davies_bouldin(observed, single, observed, [0])
    with pytest.raises(InvalidInputError, match="distinct label"):
        rank_against_random_gene_sets(observed, single, observed, [0], n_random=3)
    # a boolean mask or fractions are not indices; repeated genes are not a gene set
    mask = np.zeros(observed.shape[1], bool)
    mask[[0, 2]] = True
    for genes in (mask, [0.7, 1.2], [0, 0]):
        with pytest.raises(InvalidInputError, match="genes must be"):
            transfer_labels(observed, labels, observed, genes)
    with pytest.raises(InvalidInputError, match="n_random"):
        rank_against_random_gene_sets(observed, labels, observed, [0], n_random=-5)
    with pytest.raises(InvalidInputError, match="scores of 1,000,000,000,000 gene sets"):
        rank_against_random_gene_sets(observed, labels, observed, [0], n_random=10**12)
    # whole-number floats are indices; a Generator seed gives every gene set the same
    # transfer seeds (one int drawn once)
    whole = transfer_labels(observed, labels, observed, [0.0, 2.0], seed=3)
    assert (whole[0] == transfer_labels(observed, labels, observed, [0, 2], seed=3)[0]).all()
    drawn = int(np.random.default_rng(5).integers(0, 2**63))
    by_generator = rank_against_random_gene_sets(
        observed, labels, observed, [0, 2], n_random=4, seed=np.random.default_rng(5)
    )
    by_int = rank_against_random_gene_sets(
        observed, labels, observed, [0, 2], n_random=4, seed=drawn
    )
    np.testing.assert_array_equal(by_generator.random_indices, by_int.random_indices)
    assert by_generator.selected_index == by_int.selected_index
    with pytest.raises(InvalidInputError, match="2 principal components"):
        label_transfer_davies_bouldin(observed[:, :1], labels, observed[:, :1], [0])


def test_a_gene_set_without_an_index_ranks_below_every_set_with_one() -> None:
    rng = np.random.default_rng(0)
    observed = (rng.random((40, 6)) < 0.5).astype(np.uint8)
    observed[:, 0] = np.arange(40) < 20  # gene 0 = 1 exactly for the cells labelled "a"
    labels = np.where(np.arange(40) < 20, "a", "b").astype(object)
    synthetic = (rng.random((300, 6)) < 0.5).astype(np.uint8)
    synthetic[:, 0] = 1  # every synthetic cell matches only "a" cells in gene 0
    assert np.isnan(label_transfer_davies_bouldin(observed, labels, synthetic, [0]))
    ranking = rank_against_random_gene_sets(
        observed, labels, synthetic, [0], n_random=30, n_transfer_seeds=2
    )
    with_index = int(np.isfinite(ranking.random_indices).sum())
    assert with_index > 0
    # NaN compared with < would have given rank 1 ("better than every random set")
    assert ranking.rank == 1 + with_index
    assert ranking.beaten == 0


def test_nmf_energy_and_transfer_settings_are_checked() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((30, 5)) < 0.5).astype(float)
    # fewer genes than the default 10 components: reduced to what nndsvda allows
    assert len(nmf_gene_selection(x, 3)) == 3
    bad = [
        ({"n_select": 2.5}, "n_select must be"),
        ({"n_select": 1, "n_components": 0}, "n_components must be"),
        ({"n_select": 1, "max_iter": 0}, "max_iter must be"),
        ({"n_select": 1, "seed": -1}, "seed must be"),
    ]
    for options, message in bad:
        with pytest.raises(InvalidInputError, match=message):
            nmf_gene_selection(x, **options)
    with pytest.raises(InvalidInputError, match="no cells"):
        nmf_gene_selection(x[:0], 1)
    observed, labels = cell_types(20, seed=0)
    with pytest.raises(InvalidInputError, match="seed"):
        transfer_labels(observed, labels, observed, [0], seed=-1)
    with pytest.raises(InvalidInputError, match="seed"):
        rank_against_random_gene_sets(observed, labels, observed, [0], n_random=2, seed=-1)
    with pytest.raises(InvalidInputError, match="seed"):
        energy_statistic(x, x, seed=-1)
    # at construction, not at the first scored epoch of a training run
    with pytest.raises(InvalidInputError, match="seed"):
        EnergyStatisticMonitor(x, seed=-1)


def test_nmf_selects_block_genes_over_noise() -> None:
    rng = np.random.default_rng(0)
    programs = np.zeros((300, 40))
    groups = rng.integers(0, 2, 300)
    programs[groups == 0, :5] = rng.random(((groups == 0).sum(), 5)) < 0.9
    programs[groups == 1, 5:10] = rng.random(((groups == 1).sum(), 5)) < 0.9
    programs[:, 10:] = rng.random((300, 30)) < 0.1
    selected = nmf_gene_selection(programs, 6, n_components=2, seed=0)
    assert set(selected.tolist()) <= set(range(10))
    with pytest.raises(InvalidInputError, match="finite, non-negative"):
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
    for options in ({"n_components": 0}, {"max_samples": 1}, {"max_samples": -1}):
        with pytest.raises(InvalidInputError, match="must be an integer"):
            energy_statistic(a, b, **options)
    a[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match=r"synthetic\[3, 2\]"):
        energy_statistic(a, b)


def test_energy_statistic_is_the_unbiased_estimate() -> None:
    # with every principal component kept, PCA is a rotation and translation: distances are
    # those of the raw data, so the statistic is the formula over pairs, written as loops
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(7, 3)) + 0.3

    def mean_distance(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return float(np.mean([np.linalg.norm(a - b) for a, b in pairs]))

    distinct = itertools.permutations
    want = (
        2 * mean_distance([(a, b) for a in x for b in y])
        - mean_distance(list(distinct(x, 2)))
        - mean_distance(list(distinct(y, 2)))
    )
    assert energy_statistic(x, y, n_components=3) == pytest.approx(want, rel=1e-12)
    # with fewer components than genes: the same formula on the projections onto the first two
    # principal components of the test cells (scikit-learn)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(y)
    px, py = pca.transform(x), pca.transform(y)
    want = (
        2 * mean_distance([(a, b) for a in px for b in py])
        - mean_distance(list(distinct(px, 2)))
        - mean_distance(list(distinct(py, 2)))
    )
    assert energy_statistic(x, y, n_components=2) == pytest.approx(want, rel=1e-9)
    # unbiased: over replicates from one distribution the estimates average 0 (the plug-in
    # estimate, within-set means over all n² pairs, would average about 2 / n · E‖X − X'‖)
    same = [
        energy_statistic(rng.normal(size=(20, 3)), rng.normal(size=(20, 3)), n_components=3)
        for _ in range(300)
    ]
    assert min(same) < 0
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same))


def test_energy_statistic_scales_with_the_data_at_the_ends_of_float64() -> None:
    # E(cX, cY) = c·E(X, Y); near 1e308 the squares overflowed and near 1e-300 they underflowed,
    # which gave NaN and 0 without an error
    rng = np.random.default_rng(4)
    x, y = rng.random((50, 6)), rng.random((40, 6)) + 0.3
    base = energy_statistic(x, y)
    assert base > 0.1
    for c in (2.0**1000, 1e300, 2.0**-1000, 1e-300, 3.0):
        assert energy_statistic(x * c, y * c) == pytest.approx(c * base, rel=1e-12)
    with pytest.raises(InvalidInputError, match="exceeds float64"):
        energy_statistic(x * 1e308, -y * 1e308)


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


class DriftingModel:
    """Independent Bernoulli genes whose probabilities ``p`` a "training step" shifts in place."""

    def __init__(self, p: np.ndarray) -> None:
        self.p = p

    def generate(self, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        features = (rng.random((n_samples, self.p.size)) < self.p).astype(np.uint8)
        return features, features[:, :2].copy()


def drifting_run(monitor: EnergyStatisticMonitor, offsets: list[float]) -> DriftingModel:
    """Train a DriftingModel through ``offsets`` (epoch 1, 2, ...), calling the monitor."""
    truth = np.linspace(0.2, 0.8, 10)
    model = DriftingModel(truth.copy())
    for epoch, offset in enumerate(offsets, start=1):
        model.p[:] = truth + offset  # in place, as training updates parameters
        monitor(model, epoch)
    return model


def stair_split(n_cells: int = 400) -> tuple[np.ndarray, np.ndarray]:
    from omicsembed.simulate import stair_cell_stages

    data = np.asarray(stair_cell_stages(n_cells, n_noise_genes=18, seed=0).X)
    return data[: n_cells * 3 // 4], data[n_cells * 3 // 4 :]


def test_energy_monitor_keeps_a_snapshot_of_the_epoch_closest_to_the_test_data() -> None:
    rng = np.random.default_rng(1)
    test = (rng.random((500, 10)) < np.linspace(0.2, 0.8, 10)).astype(np.uint8)
    monitor = EnergyStatisticMonitor(test, n_synthetic=1000, every=1, seed=3)
    # the model passes the truth at epoch 3 and drifts away after it
    final = drifting_run(monitor, [-0.15, -0.08, 0.0, 0.08, 0.15])
    table = monitor.to_frame()
    assert list(table.columns) == ["epoch", "energy_statistic"]
    assert table["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert monitor.best_epoch == 3 == table["epoch"][table["energy_statistic"].idxmin()]
    assert monitor.best_energy == table["energy_statistic"].min()
    # a copy, not the trained object: later in-place updates do not reach it
    best = monitor.best_model
    assert best is not final and np.allclose(best.p, np.linspace(0.2, 0.8, 10))
    assert not np.allclose(final.p, best.p)
    synthetic, _ = best.generate(1000, seed=3)
    assert energy_statistic(synthetic, test, seed=3) == monitor.best_energy
    figure = monitor.plot()
    (line,) = [ln for ln in figure.axes[0].get_lines() if len(ln.get_xdata()) == 5]
    assert list(line.get_ydata()) == table["energy_statistic"].tolist()


def test_energy_monitor_scores_every_kth_epoch_only() -> None:
    rng = np.random.default_rng(1)
    test = (rng.random((200, 10)) < 0.5).astype(np.uint8)
    monitor = EnergyStatisticMonitor(test, n_synthetic=200, every=2)
    model = drifting_run(monitor, [0.1, 0.05, 0.0, -0.05, -0.1])
    assert monitor.to_frame()["epoch"].tolist() == [2, 4]
    # score() evaluates whatever the epoch, e.g. the trained model after the last epoch
    energy = monitor.score(model, 5)
    assert monitor.to_frame()["epoch"].tolist() == [2, 4, 5]
    assert energy == monitor.records[-1]["energy_statistic"]
    assert energy == energy_statistic(model.generate(200, seed=0)[0], test, seed=0)


def test_energy_monitor_picks_the_dbm_epoch_and_its_parameters() -> None:
    from omicsembed.models import DeepBoltzmannMachine

    train, test = stair_split()
    monitor = EnergyStatisticMonitor(test, n_synthetic=500, seed=2)
    weights: dict[int, np.ndarray] = {}

    def both(model: DeepBoltzmannMachine, epoch: int) -> None:
        weights[epoch] = model.weights_[0].copy()
        monitor(model, epoch)

    model = DeepBoltzmannMachine((20, 5), epochs=12, seed=0, progress=False)
    model.fit(train, monitor=both, monitor_every=3)
    energies = monitor.to_frame()
    assert energies["epoch"].tolist() == [3, 6, 9, 12]
    assert (energies["energy_statistic"] > -0.05).all()
    assert monitor.best_epoch == energies["epoch"][energies["energy_statistic"].idxmin()]
    best = monitor.best_model
    # the parameters of that epoch, in arrays of their own
    np.testing.assert_array_equal(best.weights_[0], weights[monitor.best_epoch])
    assert not np.shares_memory(best.weights_[0], model.weights_[0])
    assert not np.array_equal(weights[3], model.weights_[0])  # training moved on
    synthetic, _ = best.generate(500, seed=2)
    assert energy_statistic(synthetic, test, seed=2) == monitor.best_energy


def test_energy_monitor_on_a_vae_leaves_training_unchanged() -> None:
    import torch

    from omicsembed.models import BernoulliVAE

    train, test = stair_split()
    options = {
        "n_latent": 4,
        "hidden_sizes": (16,),
        "learning_rate": 1e-3,
        "max_epochs": 6,
        "early_stopping_patience": None,
        "seed": 0,
        "progress": False,
    }
    monitor = EnergyStatisticMonitor(test, n_synthetic=500, every=2, seed=1)
    monitored = BernoulliVAE(**options).fit(train, monitor=monitor)
    plain = BernoulliVAE(**options).fit(train)
    for a, b in zip(monitored.network_.parameters(), plain.network_.parameters(), strict=True):
        assert torch.equal(a, b)
    assert monitor.to_frame()["epoch"].tolist() == [2, 4, 6]
    synthetic, _ = monitor.best_model.generate(500, seed=1)
    assert energy_statistic(synthetic, test, seed=1) == monitor.best_energy
    # a network of its own, equal to the final one only if the last epoch was the best
    snapshot = monitor.best_model.network_
    assert snapshot is not monitored.network_
    same = all(
        torch.equal(a, b)
        for a, b in zip(snapshot.parameters(), monitored.network_.parameters(), strict=True)
    )
    assert same == (monitor.best_epoch == 6)
    # the snapshot keeps the losses of its epochs (it had none when taken mid-training)
    best = monitor.best_epoch
    pd.testing.assert_frame_equal(
        monitor.best_model.history_, monitored.history_.iloc[:best].reset_index(drop=True)
    )
    assert monitor.best_model.history_["epoch"].tolist() == list(range(1, best + 1))


def test_energy_monitor_matches_anndata_genes_by_name() -> None:
    from anndata import AnnData

    from omicsembed.models import DeepBoltzmannMachine

    train, test = stair_split()
    genes = [f"g{i}" for i in range(train.shape[1])]
    model = DeepBoltzmannMachine((10,), epochs=2, seed=0, progress=False)
    fitted_on = AnnData(train.astype(np.float32))
    fitted_on.var_names = genes
    model.fit(fitted_on)
    order = np.random.default_rng(0).permutation(len(genes))
    shuffled = AnnData(test[:, order].astype(np.float32))
    shuffled.var_names = [genes[i] for i in order]
    by_name = EnergyStatisticMonitor(shuffled, n_synthetic=300)
    by_position = EnergyStatisticMonitor(test, n_synthetic=300)
    by_name(model, 1)
    by_position(model, 1)
    assert by_name.best_energy == pytest.approx(by_position.best_energy, rel=1e-9)
    missing = EnergyStatisticMonitor(shuffled[:, 1:].copy(), n_synthetic=300)
    with pytest.raises(InvalidInputError, match="1 genes of the model are missing"):
        missing(model, 1)


def test_energy_monitor_rejects_bad_input() -> None:
    train, test = stair_split()
    with pytest.raises(InvalidInputError, match="non-binary"):
        EnergyStatisticMonitor(test * 2.0)
    with pytest.raises(InvalidInputError, match="needs at least 6"):
        EnergyStatisticMonitor(test[:5])
    with pytest.raises(InvalidInputError, match="every must be an integer >= 1"):
        EnergyStatisticMonitor(test, every=0)
    with pytest.raises(InvalidInputError, match="n_synthetic"):
        EnergyStatisticMonitor(test, n_synthetic=1)
    monitor = EnergyStatisticMonitor(test[:, :10])
    for attribute in ("best_epoch", "best_model", "best_energy"):
        with pytest.raises(InvalidInputError, match="no epoch was scored"):
            getattr(monitor, attribute)
    with pytest.raises(InvalidInputError, match="no epoch was scored"):
        monitor.plot()
    assert monitor.to_frame().empty
    # the width is checked against the model at the first call, i.e. when training starts
    from omicsembed.models import DeepBoltzmannMachine

    model = DeepBoltzmannMachine((5,), epochs=2, seed=0, progress=False)
    with pytest.raises(InvalidInputError, match="have 10 genes but the model generates 50"):
        model.fit(train, monitor=monitor)


def test_gene_set_rank_counts_strictly_better_and_worse_sets() -> None:
    from omicsembed.explain import gene_set_rank

    # ties are neither better nor beaten; no index (NaN) is worse than any index
    assert gene_set_rank(0.5, [0.4, 0.5, 0.5, 0.9, np.nan]) == (2, 2)
    assert gene_set_rank(np.nan, [0.4, np.nan]) == (2, 0)
    assert gene_set_rank(0.1, [0.4, 0.9]) == (1, 2)
