"""The exploration workflow: explain() on planted models, monitoring, the stair simulation."""

from __future__ import annotations

import numpy as np
import pytest

from omicsembed.exceptions import InvalidInputError
from omicsembed.explain import GenerativeModel, SelectionMonitor, explain


class PlantedModel:
    """Latent units U0, U1; feature 0 follows U0, feature 1 follows U1, the rest are noise."""

    def __init__(self, n_features: int = 10, flip: float = 0.1) -> None:
        self.n_features = n_features
        self.flip = flip

    def generate(self, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        latent = (rng.random((n_samples, 2)) < 0.5).astype(np.uint8)
        features = (rng.random((n_samples, self.n_features)) < 0.5).astype(np.uint8)
        flips = rng.random((n_samples, 2)) < self.flip
        features[:, :2] = np.where(flips, 1 - latent, latent)
        return features, latent


def test_explain_selects_the_features_that_follow_latent_units() -> None:
    model = PlantedModel()
    assert isinstance(model, GenerativeModel)
    names = [f"g{i}" for i in range(10)]
    explanation = explain(model, 4000, 3, feature_names=names, n_patterns=4, seed=1)
    assert set(explanation.selected_features[:2]) == {"g0", "g1"}
    table = explanation.to_frame()
    assert list(table["feature_name"][:2]) == explanation.selected_features[:2]
    # the winning latent unit of feature 0 is unit 0, of feature 1 unit 1
    winners = dict(zip(table["feature"], table["latent_unit"], strict=True))
    assert winners[0] == 0 and winners[1] == 1
    patterns = explanation.pattern_frame()
    assert patterns["count"].is_monotonic_decreasing
    assert len(patterns) >= 4
    # patterns that differ in the two latent-following features have distant latent distributions
    assert explanation.map.distances.max() > 0.5


def test_explain_rejects_models_without_generate() -> None:
    with pytest.raises(InvalidInputError, match="generate"):
        explain(object(), 10, 1)  # type: ignore[arg-type]


class ProbabilityModel(PlantedModel):
    """Gives its feature probabilities (or a NaN) instead of binary samples: a model bug."""

    def __init__(self, bad: float) -> None:
        super().__init__()
        self.bad = bad

    def generate(self, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        features, latent = super().generate(n_samples, seed=seed)
        features = features.astype(np.float64)
        features[3, 5] = self.bad
        return features, latent


@pytest.mark.parametrize("bad", [0.7, np.nan, -1.0])
def test_explain_rejects_non_binary_model_output_instead_of_casting_it(bad: float) -> None:
    # a cast to uint8 would have made 0.7 and NaN a silent 0
    with pytest.raises(InvalidInputError, match=r"synthetic features\[3, 5\]"):
        explain(ProbabilityModel(bad), 200, 1)


def test_explain_names_features_by_the_genes_the_model_was_fitted_on() -> None:
    import anndata as ad

    from omicsembed.models import DeepBoltzmannMachine

    rng = np.random.default_rng(0)
    genes = [f"Gene{i}" for i in range(12)]
    cells = ad.AnnData((rng.random((200, 12)) < 0.5).astype(np.float32))
    cells.var_names = genes
    model = DeepBoltzmannMachine((6, 3), epochs=1, pretraining_epochs=1, seed=0)
    model.fit(cells)
    explanation = explain(model, 500, 3, seed=0)
    chosen = explanation.selection.selected.tolist()
    assert explanation.selected_features == [genes[i] for i in chosen]
    monitor = SelectionMonitor(every=1, n_synthetic=300, n_select=2)
    monitor(model, 1)
    assert set(monitor.table()["feature_name"]) <= set(genes)
    # names given still win
    letters = list("abcdefghijkl")
    given = explain(model, 500, 3, feature_names=letters, seed=0)
    assert given.selected_features == [letters[i] for i in chosen]


def test_selection_monitor_records_every_n_epochs() -> None:
    monitor = SelectionMonitor(every=2, n_synthetic=1000, n_select=2, n_patterns=3)
    model = PlantedModel()
    for epoch in range(1, 7):
        monitor(model, epoch)
    assert sorted(monitor.explanations) == [2, 4, 6]
    monitor.record(model, 3)  # e.g. a VAE's restored best epoch, between monitored ones
    assert list(monitor.explanations) == [2, 3, 4, 6]  # in epoch order
    del monitor.explanations[3]
    table = monitor.table()
    assert set(table["epoch"]) == {2, 4, 6}
    assert set(table["feature"]) == {0, 1}
    # the top patterns of each epoch, by count, against a count of the synthetic cells
    patterns = monitor.pattern_table()
    assert list(patterns.columns) == ["epoch", "rank", "pattern", "features", "count"]
    for epoch, explanation in monitor.explanations.items():
        rows = patterns[patterns["epoch"] == epoch]
        assert (rows["count"] > 0).all()  # observed patterns only
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1))
        assert (rows["count"].diff().dropna() <= 0).all()
        features, _ = model.generate(1000, seed=monitor.seed + epoch)
        chosen = features[:, explanation.selection.selected]
        for pattern, count in zip(rows["pattern"], rows["count"], strict=True):
            wanted = np.array([int(c) for c in pattern])
            assert count == int(np.all(chosen == wanted, axis=1).sum())
        assert set(rows["features"]) == {",".join(explanation.selected_features)}
    assert monitor.heatmap().axes
    maps = monitor.pattern_maps(columns=2)
    assert [ax.get_title() for ax in maps.axes if ax.get_visible()] == [
        "epoch 2",
        "epoch 4",
        "epoch 6",
    ]
    # a long training: at most max_panels epochs, evenly spaced, first and last included
    for epoch in range(8, 21, 2):
        monitor(model, epoch)
    few = monitor.pattern_maps(max_panels=4)
    titles = [ax.get_title() for ax in few.axes if ax.get_visible()]
    assert titles == ["epoch 2", "epoch 8", "epoch 14", "epoch 20"]
    with pytest.raises(InvalidInputError, match="max_panels"):
        monitor.pattern_maps(max_panels=0)


def test_vae_on_the_stair_simulation_selects_stage_genes_not_noise() -> None:
    from omicsembed.models import BernoulliVAE
    from omicsembed.simulate import stair_cell_stages

    data = stair_cell_stages(1000, n_noise_genes=18, seed=0)
    monitor = SelectionMonitor(every=20, n_synthetic=2000, n_select=6)
    model = BernoulliVAE(
        n_latent=5, hidden_sizes=(32,), learning_rate=1e-3, max_epochs=60, seed=0, progress=False
    ).fit(data, monitor=monitor)
    explanation = explain(model, 5000, 6, seed=0)
    kinds = data.var["kind"].to_numpy()[explanation.selection.selected]
    assert (kinds != "noise").all(), kinds
    # the first gene patterns with a latent unit (G² near 500; about 15 with the synthetic
    # cells' latent codes shuffled, when later steps may still follow S alone)
    assert explanation.selection.g2[0] > 100
    # monitored during training: one selection per 20 epochs, drawn from the model of that epoch
    assert set(monitor.explanations) <= {20, 40, 60} and 20 in monitor.explanations
    assert set(monitor.table()["step"]) == set(range(1, 7))
