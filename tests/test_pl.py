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
