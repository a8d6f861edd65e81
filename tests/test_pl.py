"""Plots return Figures, accept ax=, and say what they show."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure

from omicsembed import pl
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.io import save_figure


def _legend_texts(ax) -> list[str]:
    leg = ax.get_legend()
    return [t.get_text() for t in leg.get_texts()] if leg is not None else []


def test_embedding_new_figure_colours_and_legend():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    labels = pd.Categorical(["b", "a", None] * 10, categories=["b", "a", "unused"])
    fig = pl.embedding(z, labels, title="t")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "t"
    assert _legend_texts(ax) == ["missing (10)", "b", "a"]  # category order kept, unused gone
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    offsets = np.concatenate([c.get_offsets() for c in scatters])
    assert offsets.shape == (30, 2)
    # with >2 dims the first two are drawn (default dims=(0, 1))
    assert {tuple(p) for p in np.round(offsets, 9)} == {tuple(p) for p in np.round(z[:, :2], 9)}
    fig2 = pl.embedding(z, np.array(["x", "y", "x"] * 10), dims=(2, 3))
    off2 = np.concatenate([c.get_offsets() for c in fig2.axes[0].collections])
    assert {tuple(p) for p in np.round(off2, 9)} == {tuple(p) for p in np.round(z[:, 2:], 9)}


def test_embedding_draws_into_given_ax_and_accepts_no_labels(tmp_path):
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    z = np.random.default_rng(1).normal(size=(10, 2))
    assert pl.embedding(z, None, ax=ax2) is fig
    assert len(ax2.collections) == 1 and len(ax1.collections) == 0
    assert ax2.get_legend() is None
    save_figure(fig, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000


def test_embedding_many_classes_has_no_legend():
    z = np.random.default_rng(2).normal(size=(100, 2))
    fig = pl.embedding(z, np.arange(100) % 50)
    assert fig.axes[0].get_legend() is None
    assert "50 classes" in fig.axes[0].get_title()


@pytest.mark.parametrize(
    ("z", "labels", "error"),
    [
        (np.zeros((5, 1)), None, InvalidInputError),
        (np.full((5, 2), np.nan), None, InvalidInputError),
        (np.zeros((5, 2)), ["a"] * 4, ShapeMismatchError),
    ],
)
def test_embedding_errors(z, labels, error):
    with pytest.raises(error):
        pl.embedding(z, labels)


@pytest.mark.parametrize(("n", "kind"), [(40, PathCollection), (200, PolyCollection)])
def test_reconstruction_title_has_pearson_r(n, kind):
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 50))
    rec = obs + rng.normal(scale=0.5, size=obs.shape)
    obs[0, :10] = np.nan
    fig = pl.reconstruction(obs, rec, max_points=6000)
    ax = fig.axes[0]
    m = ~np.isnan(obs)
    r = np.corrcoef(obs[m], rec[m])[0, 1]
    assert f"Pearson r = {r:.3f}" in ax.get_title()
    assert f"n = {m.sum():,} values" in ax.get_title()
    assert any(isinstance(c, kind) for c in ax.collections)
    assert "y = x" in _legend_texts(ax)
    if m.sum() > 6000:
        assert "6,000 shown" in ax.get_title()


def test_reconstruction_into_ax_and_errors():
    fig = Figure()
    ax = fig.add_subplot()
    x = np.arange(10.0).reshape(2, 5)
    assert pl.reconstruction(x, 2 * x, ax=ax) is fig
    assert "Pearson r = 1.000" in ax.get_title()
    with pytest.raises(ShapeMismatchError):
        pl.reconstruction(x, x.T)
    with pytest.raises(InvalidInputError, match="reconstructed"):
        pl.reconstruction(x, np.full_like(x, np.nan))
    with pytest.raises(InvalidInputError, match="observed entries"):
        pl.reconstruction(np.full_like(x, np.nan), x)


def test_tau_histogram_counts_and_nan():
    rng = np.random.default_rng(0)
    tau = rng.uniform(size=500)
    tau[:7] = np.nan
    fig = pl.tau_histogram(tau, bins=20)
    ax = fig.axes[0]
    assert "493 genes (7 NaN ignored)" in ax.get_title()
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 20 and sum(heights) == 493
    fig2 = Figure()
    ax2 = fig2.add_subplot()
    assert pl.tau_histogram(tau, ax=ax2) is fig2


def test_tau_histogram_errors():
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        pl.tau_histogram(np.array([0.5, 1.5]))
    with pytest.raises(InvalidInputError, match="1-D"):
        pl.tau_histogram(np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="bins"):
        pl.tau_histogram(np.zeros(3), bins=0)


def test_no_pyplot_and_no_backend_change():
    code = (
        "import sys, matplotlib, numpy as np\n"
        # raw rcParams value: matplotlib.get_backend() itself may import pyplot
        "backend = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
        "from omicsembed import pl\n"
        "pl.embedding(np.zeros((3, 2)) + np.arange(3)[:, None], ['a', 'b', 'a'])\n"
        "pl.tau_histogram(np.array([0.1, np.nan]))\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert dict.__getitem__(matplotlib.rcParams, 'backend') == backend\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_selection_heatmap_and_pattern_map() -> None:
    table = pd.DataFrame({"epoch": [10, 10, 20, 20], "step": [1, 2, 1, 2], "feature": [3, 5, 3, 7]})
    fig = pl.selection_heatmap(table)
    assert isinstance(fig, Figure)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (3, 2)  # features 3, 5, 7 x epochs 10, 20
    assert image.mask.sum() == 2  # 5 not selected at 20, 7 not at 10
    with pytest.raises(InvalidInputError):
        pl.selection_heatmap(table.drop(columns="step"))
    fig = pl.pattern_map(np.array([[0.0, 0.0], [1.0, 0.5]]), [10, 3], ["01", "11"])
    assert isinstance(fig, Figure)
    with pytest.raises(ShapeMismatchError):
        pl.pattern_map(np.zeros((2, 3)), [1, 2])


def test_latent_density_grid_single_pair_and_counts() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 5))
    labels = np.array(["t", "b", "nk", "mono"] * 50)
    fig = pl.latent_density(z, labels)  # default pairs (0, 1), (2, 3)
    assert isinstance(fig, Figure)
    panels = [a for a in fig.axes if a.axison]
    assert [(a.get_xlabel(), a.get_ylabel()) for a in panels] == [("Z_0", "Z_1"), ("Z_2", "Z_3")]
    for panel in panels:
        hexes = [c for c in panel.collections if isinstance(c, PolyCollection)]
        assert len(hexes) == 1 and hexes[0].get_array().sum() == 200  # every cell counted once
        points = [c for c in panel.collections if isinstance(c, PathCollection)]
        assert sum(len(c.get_offsets()) for c in points) == 200
    assert sorted(t.get_text() for t in fig.legends[0].get_texts()) == ["b", "mono", "nk", "t"]
    fig_ax = Figure()
    ax = fig_ax.add_subplot()
    assert pl.latent_density(z, dims=(4, 1), ax=ax) is fig_ax
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Z_4", "Z_1")
    grid = pl.latent_density(z, pairs=[(0, 1), (0, 2), (1, 2), (3, 4)])
    assert sum(a.axison for a in grid.axes) == 4


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"Z": np.zeros((5, 1))}, InvalidInputError),
        ({"Z": np.full((5, 2), np.nan)}, InvalidInputError),
        ({"dims": (0, 0)}, InvalidInputError),
        ({"dims": (0, 9)}, InvalidInputError),
        ({"pairs": []}, InvalidInputError),
        ({"pairs": [(0, 1)], "dims": (0, 1)}, InvalidInputError),
        ({"labels": ["a", "b"]}, ShapeMismatchError),
        ({"gridsize": 1}, InvalidInputError),
    ],
)
def test_latent_density_errors(kwargs, error) -> None:
    args = {"Z": np.random.default_rng(1).normal(size=(10, 3)), **kwargs}
    with pytest.raises(error):
        pl.latent_density(**args)


def test_latent_density_several_pairs_need_a_new_figure() -> None:
    ax = Figure().add_subplot()
    with pytest.raises(InvalidInputError, match="dims"):
        pl.latent_density(np.zeros((4, 4)), pairs=[(0, 1), (2, 3)], ax=ax)


def test_loadings_scatter_names_the_top_genes() -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(scale=0.1, size=(50, 3))
    values[7] = [3.0, 0.0, 0.0]
    values[11] = [0.0, 0.0, -2.5]
    values[20] = [0.0, -2.0, 0.0]  # strong on Z_1 only: not among the top on (Z_0, Z_2)
    genes = [f"gene{i}" for i in range(50)]
    loadings = pd.DataFrame(values, index=genes, columns=["Z_0", "Z_1", "Z_2"])
    fig = pl.loadings_scatter(loadings, dims=(0, "Z_2"), n_top=2)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["gene11", "gene7"]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert offsets.shape == (50, 2)
    # every gene is drawn at its loadings
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(values[:, 0]))
    assert ax.get_xlabel() == "loading on Z_0" and ax.get_ylabel() == "loading on Z_2"
    own = Figure()
    target = own.add_subplot()
    assert pl.loadings_scatter(loadings, n_top=100, ax=target) is own
    assert len(target.texts) == 50


@pytest.mark.parametrize(
    ("loadings", "kwargs"),
    [
        (np.zeros((3, 2)), {}),
        (pd.DataFrame(np.zeros((3, 1))), {}),
        (pd.DataFrame(np.zeros((3, 2))), {"dims": (0, 0)}),
        (pd.DataFrame(np.zeros((3, 2))), {"dims": (0, 5)}),
        (pd.DataFrame(np.zeros((3, 2))), {"dims": (0, "missing")}),
        (pd.DataFrame(np.zeros((3, 2))), {"n_top": -1}),
        (pd.DataFrame([[np.nan, 0.0]]), {}),
        (pd.DataFrame({"a": ["x"], "b": ["y"]}), {}),
    ],
)
def test_loadings_scatter_errors(loadings, kwargs) -> None:
    with pytest.raises(InvalidInputError):
        pl.loadings_scatter(loadings, **kwargs)


def test_gene_set_ranking_marks_the_selected_set_and_its_rank() -> None:
    random = np.array([[0.5, 1.0, 2.0, np.nan], [0.1, 0.2, 0.3, 0.4]])
    fig = pl.gene_set_ranking([0.8, np.nan], random, title="vae, 12 genes, cell type")
    ax = fig.axes[0]
    # rank = 1 + random sets with a strictly lower index; no index is worst of all
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "1\nrank 2/5",
        "2\nrank 5/5\n(no index)",
    ]
    assert ax.get_title() == "vae, 12 genes, cell type"
    # the selected index is drawn where it is
    diamonds = [c for c in ax.collections if len(c.get_offsets()) == 1]
    assert diamonds[0].get_offsets()[0].tolist() == [0.0, 0.8]
    with pytest.raises(ShapeMismatchError, match="with 2 rows"):
        pl.gene_set_ranking([0.8, 0.9], random[:1])
    with pytest.raises(InvalidInputError, match="finite"):
        pl.gene_set_ranking([np.inf], random[:1])
    with pytest.raises(InvalidInputError, match="at least one"):
        pl.gene_set_ranking([0.8], np.empty((1, 0)))


def test_selection_heatmap_of_one_epoch_has_room(tmp_path) -> None:
    # one monitored epoch of three features (explain's default on a short run): the figure
    # was too small for its labels and colour bar, a layout warning (an error in the tests)
    names = ["stage_3_high_gene", "overlap_2_3_gene", "stage_7_high_gene"]
    table = pd.DataFrame(
        {"epoch": [4, 4, 4], "step": [1, 2, 3], "feature": [7, 2, 5], "feature_name": names}
    )
    save_figure(pl.selection_heatmap(table), tmp_path / "one_epoch.png")


def test_panel_grid_hides_the_unused_axes() -> None:
    fig, axes = pl.panel_grid(5, 3, (2.0, 1.5))
    assert len(axes) == 5 and len(fig.axes) == 6
    assert [ax.get_visible() for ax in fig.axes] == [True] * 5 + [False]
    assert tuple(fig.get_size_inches()) == (6.0, 3.0)
    _, single = pl.panel_grid(1, 4, (2.0, 1.5))  # fewer panels than columns: one column
    assert single[0].get_figure().get_size_inches().tolist() == [2.0, 1.5]
    with pytest.raises(InvalidInputError, match="n_panels"):
        pl.panel_grid(0, 3, (2.0, 1.5))
