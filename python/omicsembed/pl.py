"""Plots (matplotlib). Every function takes ``ax=`` and returns the Figure.

Without ``ax`` a new :class:`matplotlib.figure.Figure` is created directly, not through
``pyplot``: no global figure state, no GUI backend and no ``matplotlib.use`` call, so the
functions are safe in scripts, servers and tests alike. Save with ``fig.savefig(...)`` or
:func:`omicsembed.io.save_figure`. In Jupyter the returned Figure displays inline. With ``ax``
the plot is drawn into that Axes (e.g. one panel of ``plt.subplots``) and its Figure is
returned. Nothing here calls ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from omicsembed._seeds import numpy_rng
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

__all__ = [
    "embedding",
    "gene_set_ranking",
    "latent_density",
    "loadings_scatter",
    "panel_grid",
    "pattern_map",
    "reconstruction",
    "selection_heatmap",
    "tau_histogram",
]

_MISSING_COLOR = "#b0b0b0"
_MAX_LEGEND = 40


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    if ax is not None:
        try:
            root: Any = ax.get_figure(root=True)  # matplotlib >= 3.10
        except TypeError:  # pragma: no cover - older matplotlib: .figure is the root
            root = ax.figure
        if not isinstance(root, Figure):
            raise InvalidInputError("ax is not attached to a Figure")
        return root, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def panel_grid(
    n_panels: int, columns: int, panel_size: tuple[float, float]
) -> tuple[Figure, list[Axes]]:
    """Return a Figure of ``n_panels`` Axes in rows of at most ``columns`` (others hidden).

    Parameters
    ----------
    n_panels
        Number of panels (≥ 1).
    columns
        Panels per row at most (≥ 1).
    panel_size
        (width, height) of one panel in inches.

    Returns
    -------
    figure, axes
        The Figure and its ``n_panels`` visible Axes, row by row.

    Raises
    ------
    InvalidInputError
        If ``n_panels`` or ``columns`` is below 1.

    """
    from matplotlib.figure import Figure

    if n_panels < 1 or columns < 1:
        raise InvalidInputError(f"need n_panels ≥ 1 and columns ≥ 1, got {n_panels}, {columns}")
    columns = min(columns, n_panels)
    rows = -(-n_panels // columns)
    figure = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return figure, axes[:n_panels]


def _categories(labels: Any, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Category names (in display order), integer code per sample (-1 = missing), mask."""
    if isinstance(labels, pd.Series):
        labels = labels.array
    if isinstance(labels, pd.Categorical):
        cat = labels
    else:
        arr = np.asarray(labels, dtype=object)
        if arr.ndim != 1:
            raise ShapeMismatchError(f"labels must be 1-D, got shape {arr.shape}")
        missing = pd.isna(arr)
        cat = pd.Categorical([None if m else str(v) for v, m in zip(arr, missing, strict=True)])
    if len(cat) != n:
        raise ShapeMismatchError(f"labels has {len(cat)} entries but Z has {n} rows")
    cat = cat.remove_unused_categories()
    codes = np.asarray(cat.codes, dtype=np.int64)
    return [str(c) for c in cat.categories], codes, codes < 0


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    cmap = colormaps["turbo"]
    return [cmap(v) for v in np.linspace(0.05, 0.95, n)]


def embedding(
    Z: ArrayLike,
    labels: ArrayLike | pd.Categorical | None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    dims: tuple[int, int] = (0, 1),
    point_size: float | None = None,
) -> Figure:
    """Scatter plot of an embedding, one colour per label, with a legend.

    Parameters
    ----------
    Z
        float (n_samples, k >= 2) embedding; columns ``dims`` are plotted (pass a 2-D
        projection such as PCA/UMAP of a larger embedding to see more than two coordinates).
    labels
        (n_samples,) categorical labels (compared as strings; pandas categoricals keep their
        category order), or None for one colour. Missing labels (NaN/None) are drawn in grey as
        "missing", beneath the others. Up to 10 classes use ``tab10``, up to 20 ``tab20``,
        more a sampled ``turbo``; the legend is shown for up to 40 classes.
    ax
        Axes to draw into; a new Figure when None.
    title
        Axes title.
    dims
        The two columns of ``Z`` to plot.
    point_size
        Marker area (points^2); by default it shrinks with the number of samples.

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the plot.

    Raises
    ------
    InvalidInputError
        If ``Z`` is not a finite 2-D array with at least two columns, or ``dims`` is invalid.
    ShapeMismatchError
        If ``labels`` does not have one entry per row of ``Z``.

    """
    z = np.asarray(Z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise InvalidInputError(f"Z must be 2-D with at least 2 columns, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise InvalidInputError("Z contains NaN or infinite values")
    d0, d1 = (int(d) for d in dims)
    if d0 == d1 or not (0 <= d0 < z.shape[1] and 0 <= d1 < z.shape[1]):
        raise InvalidInputError(f"dims must be two different columns of Z (0..{z.shape[1] - 1})")
    n = z.shape[0]
    size = point_size if point_size is not None else float(np.clip(3000 / max(n, 1), 2, 40))

    fig, ax = _new_axes(ax, (7.5, 5.0))
    if labels is None:
        ax.scatter(z[:, d0], z[:, d1], s=size, linewidths=0)
        n_cat = 0
    else:
        names, codes, missing = _categories(labels, n)
        n_cat = len(names)
        if missing.any():
            ax.scatter(
                z[missing, d0],
                z[missing, d1],
                s=size,
                c=_MISSING_COLOR,
                linewidths=0,
                label=f"missing ({int(missing.sum())})",
            )
        for code, (name, color) in enumerate(zip(names, _palette(n_cat), strict=True)):
            sel = codes == code
            ax.scatter(z[sel, d0], z[sel, d1], s=size, color=color, linewidths=0, label=name)
        if n_cat + int(missing.any()) > 0 and n_cat <= _MAX_LEGEND:
            ax.legend(
                loc="center left",
                bbox_to_anchor=(1.01, 0.5),
                frameon=False,
                fontsize="small",
                markerscale=max(1.0, 30 / size) ** 0.5,
                ncols=1 if n_cat <= 20 else 2,
            )
    ax.set_xlabel(f"dim {d0 + 1}")
    ax.set_ylabel(f"dim {d1 + 1}")
    if title is not None:
        ax.set_title(title)
    elif n_cat > _MAX_LEGEND:
        ax.set_title(f"{n_cat} classes (too many for a legend)")
    return fig


def reconstruction(
    observed: ArrayLike,
    reconstructed: ArrayLike,
    *,
    ax: Axes | None = None,
    max_points: int = 50_000,
    seed: int | np.random.Generator = 0,
) -> Figure:
    """Reconstructed against observed values, with the line y = x and Pearson r in the title.

    Pearson r is computed on every entry where ``observed`` is not NaN; at most
    ``max_points`` of those entries (a seeded uniform sample) are drawn, as a scatter for up
    to 5000 points and as a log-count hexbin above.

    Parameters
    ----------
    observed
        float array (any shape, e.g. samples x genes); NaN marks missing entries.
    reconstructed
        float array of the same shape, finite.
    ax
        Axes to draw into; a new Figure when None.
    max_points
        Maximum number of drawn points (>= 1).
    seed
        Seed (int in [0, 2**63) or numpy Generator) of the subsample.

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the plot.

    Raises
    ------
    ShapeMismatchError
        If the shapes differ.
    InvalidInputError
        If ``reconstructed`` has NaN/infinite values, ``observed`` infinite values, fewer than
        2 entries are observed, ``max_points < 1``, or a bad ``seed``.

    """
    obs = np.asarray(observed, dtype=np.float64)
    rec = np.asarray(reconstructed, dtype=np.float64)
    if obs.shape != rec.shape:
        raise ShapeMismatchError(
            f"observed has shape {obs.shape} but reconstructed has shape {rec.shape}"
        )
    if not np.isfinite(rec).all():
        raise InvalidInputError("reconstructed contains NaN or infinite values")
    if np.isinf(obs).any():
        raise InvalidInputError("observed contains infinite values")
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 1:
        raise InvalidInputError(f"max_points must be an integer >= 1, got {max_points!r}")
    rng = numpy_rng(seed)  # checked also when no subsample is drawn
    mask = ~np.isnan(obs)
    x, y = obs[mask], rec[mask]
    if x.size < 2:
        raise InvalidInputError(f"need at least 2 observed entries, got {x.size}")
    if np.ptp(x) > 0 and np.ptp(y) > 0:
        xc, yc = x - x.mean(), y - y.mean()
        r = float(np.dot(xc, yc) / np.sqrt(np.dot(xc, xc) * np.dot(yc, yc)))
        r_text = f"Pearson r = {r:.3f}"
    else:
        r_text = "Pearson r undefined (constant values)"
    if x.size > max_points:
        pick = rng.choice(x.size, size=max_points, replace=False)
        xs, ys = x[pick], y[pick]
    else:
        xs, ys = x, y

    fig, ax = _new_axes(ax, (5.5, 5.0))
    if xs.size > 5000:
        hb = ax.hexbin(xs, ys, gridsize=80, bins="log", mincnt=1, cmap="viridis")
        fig.colorbar(hb, ax=ax, label="values per bin")
    else:
        ax.scatter(xs, ys, s=4, alpha=0.5, linewidths=0)
    lo = float(min(xs.min(), ys.min()))
    hi = float(max(xs.max(), ys.max()))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="y = x")
    ax.set_xlabel("observed")
    ax.set_ylabel("reconstructed")
    shown = "" if xs.size == x.size else f", {xs.size:,} shown"
    ax.set_title(f"{r_text} (n = {x.size:,} values{shown})")
    ax.legend(loc="upper left", frameon=False)
    return fig


def tau_histogram(tau: ArrayLike, *, ax: Axes | None = None, bins: int = 50) -> Figure:
    """Histogram of the tissue-specificity index tau of genes (values in [0, 1]).

    NaN values (genes whose tau is undefined, e.g. not expressed anywhere) are ignored and
    counted in the title.

    Parameters
    ----------
    tau
        (n_genes,) tau values in [0, 1] or NaN.
    ax
        Axes to draw into; a new Figure when None.
    bins
        Number of equal-width bins over [0, 1].

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the plot.

    Raises
    ------
    InvalidInputError
        If ``tau`` is not 1-D, has values outside [0, 1] or infinite values, or ``bins < 1``.

    """
    t = np.asarray(tau, dtype=np.float64)
    if t.ndim != 1:
        raise InvalidInputError(f"tau must be 1-D (one value per gene), got shape {t.shape}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise InvalidInputError(f"bins must be an integer >= 1, got {bins!r}")
    nan = np.isnan(t)
    values = t[~nan]
    tol = 1e-9
    if values.size and (values.min() < -tol or values.max() > 1 + tol):
        raise InvalidInputError(
            f"tau values must lie in [0, 1]; got range [{values.min()}, {values.max()}]"
        )
    values = np.clip(values, 0.0, 1.0)
    fig, ax = _new_axes(ax, (5.5, 4.0))
    ax.hist(values, bins=bins, range=(0.0, 1.0), color="#4c72b0")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("tissue specificity τ")
    ax.set_ylabel("genes")
    ax.set_title(f"τ of {values.size:,} genes ({int(nan.sum()):,} NaN ignored)")
    return fig


def gene_set_ranking(
    selected: ArrayLike,
    random: ArrayLike,
    *,
    title: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Label-transfer Davies–Bouldin index of a selected gene set among random gene sets.

    One column per repetition (training seed): the random gene sets' indices as grey dots,
    the selected set's as a red diamond, and its rank below. Lower is better (tighter
    clusters of the transferred labels; Hess et al. 2020 §2.6, Fig. 6).

    Parameters
    ----------
    selected
        (n_repetitions,) index of the selected genes per repetition (NaN: no transfer gave
        two labels).
    random
        (n_repetitions, n_random) indices of the random gene sets of the same size.
    title
        Axes title (e.g. model, gene-set size and label column).
    ax
        Axes to draw into; a new Figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the plot.

    Raises
    ------
    ShapeMismatchError
        If ``random`` is not 2-D with one row per value of ``selected``.
    InvalidInputError
        If there are no repetitions or no random sets, or an index is infinite.

    """
    chosen = np.asarray(selected, dtype=np.float64).reshape(-1)
    others = np.asarray(random, dtype=np.float64)
    if others.ndim != 2 or others.shape[0] != chosen.size:
        raise ShapeMismatchError(
            f"random must be (n_repetitions, n_random) with {chosen.size} rows, got shape "
            f"{others.shape}"
        )
    if chosen.size == 0 or others.shape[1] == 0:
        raise InvalidInputError("give at least one repetition and one random gene set")
    if np.isinf(chosen).any() or np.isinf(others).any():
        raise InvalidInputError("Davies–Bouldin indices must be finite or NaN")
    from omicsembed.explain.label_transfer import gene_set_rank

    fig, ax = _new_axes(ax, (1.2 + 1.1 * chosen.size, 4.0))
    jitter = np.random.default_rng(0).uniform(-0.2, 0.2, others.shape[1])
    labels = []
    for repetition, (mine, theirs) in enumerate(zip(chosen, others, strict=True)):
        ax.scatter(repetition + jitter, theirs, s=9, color=_MISSING_COLOR, zorder=1)
        ax.scatter([repetition], [mine], s=60, marker="D", color="#c44e52", zorder=2)
        rank, _ = gene_set_rank(mine, theirs)
        missing = "\n(no index)" if np.isnan(mine) else ""
        labels.append(f"{repetition + 1}\nrank {rank}/{theirs.size + 1}{missing}")
    ax.set_xticks(range(chosen.size), labels)
    ax.set_xlim(-0.6, chosen.size - 0.4)
    ax.set_xlabel("repetition")
    ax.set_ylabel("Davies–Bouldin index (lower: better)")
    if title is not None:
        ax.set_title(title)
    return fig


def selection_heatmap(table: pd.DataFrame, *, ax: Axes | None = None) -> Figure:
    """Heat map of log-linear selections over training epochs (Hess et al. 2020, Figs. 3 and 5).

    Parameters
    ----------
    table
        Tidy table with columns ``epoch``, ``step`` (1-based or 0-based order of selection),
        ``feature`` and optionally ``feature_name`` — e.g. ``SelectionMonitor.table()``.
    ax
        Axes to draw into; a new Figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        Rows: features ever selected; columns: epochs; colour: the step at which the feature
        was selected (blank: not selected at that epoch).

    Raises
    ------
    InvalidInputError
        If columns are missing or the table is empty.

    """
    missing = {"epoch", "step", "feature"} - set(table.columns)
    if missing:
        raise InvalidInputError(f"table lacks columns {sorted(missing)}")
    if table.empty:
        raise InvalidInputError("the selection table is empty: no epoch was monitored")
    label = "feature_name" if "feature_name" in table.columns else "feature"
    grid = table.pivot_table(index=label, columns="epoch", values="step", aggfunc="min")
    grid = grid.loc[grid.min(axis=1).sort_values().index]
    # at least room for the labels and the colour bar (one epoch of three features)
    size = (max(3.5, 1.2 + 0.35 * grid.shape[1]), max(3.0, 1.2 + 0.3 * grid.shape[0]))
    fig, ax = _new_axes(ax, size)
    image = ax.imshow(
        np.ma.masked_invalid(grid.to_numpy(dtype=float)), aspect="auto", cmap="viridis_r"
    )
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=90)
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    ax.set_xlabel("epoch")
    ax.set_ylabel("selected feature")
    fig.colorbar(image, ax=ax, label="selection step")
    return fig


def pattern_map(
    coordinates: ArrayLike,
    counts: ArrayLike,
    labels: Sequence[str] | None = None,
    *,
    empty: ArrayLike | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Pattern map: MDS coordinates of patterns, area proportional to frequency (Fig. 4).

    Parameters
    ----------
    coordinates
        (n_patterns, 2) classical-MDS coordinates of the Jensen–Shannon distances.
    counts
        (n_patterns,) pattern frequencies (point area).
    labels
        Pattern strings (e.g. ``"101100"``) written next to the points.
    empty
        (n_patterns,) flags of patterns without samples (drawn as hollow grey markers).
    ax
        Axes to draw into; a new Figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the plot.

    Raises
    ------
    ShapeMismatchError
        If the inputs disagree in length or ``coordinates`` is not (n, 2).

    """
    xy = np.asarray(coordinates, dtype=np.float64)
    sizes = np.asarray(counts, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or sizes.shape != (xy.shape[0],):
        raise ShapeMismatchError(
            f"need (n, 2) coordinates and (n,) counts, got {xy.shape} and {sizes.shape}"
        )
    flags = np.zeros(xy.shape[0], bool) if empty is None else np.asarray(empty, dtype=bool)
    fig, ax = _new_axes(ax, (5.5, 5.0))
    area = 30 + 600 * sizes / max(sizes.max(), 1.0)
    filled = ~flags & np.isfinite(xy).all(axis=1)
    ax.scatter(xy[filled, 0], xy[filled, 1], s=area[filled], alpha=0.6, color="#4c72b0")
    ax.scatter(xy[flags, 0], xy[flags, 1], s=60, facecolors="none", edgecolors=_MISSING_COLOR)
    if labels is not None:
        for (x, y), text in zip(xy, labels, strict=True):
            if np.isfinite([x, y]).all():
                ax.annotate(text, (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.set_title("patterns by Jensen–Shannon distance of latent configurations")
    return fig


def _latent_pairs(
    k: int, pairs: Sequence[tuple[int, int]] | None, dims: tuple[int, int] | None
) -> list[tuple[int, int]]:
    if pairs is not None and dims is not None:
        raise InvalidInputError("give either pairs or dims, not both")
    chosen: list[tuple[int, ...]]
    if dims is not None:
        chosen = [tuple(dims)]
    elif pairs is not None:
        chosen = [tuple(p) for p in pairs]
        if not chosen:
            raise InvalidInputError("pairs is empty; give at least one (i, j) pair of factors")
    else:  # consecutive pairs (0, 1), (2, 3), ... as in Svensson et al. 2020, Fig. 1b
        chosen = [(i, i + 1) for i in range(0, min(k - 1, 12), 2)]
    out: list[tuple[int, int]] = []
    for pair in chosen:
        if len(pair) != 2:
            raise InvalidInputError(f"a factor pair must have two entries, got {pair!r}")
        i, j = (int(v) for v in pair)
        if i == j or not (0 <= i < k and 0 <= j < k):
            raise InvalidInputError(
                f"factor pair {pair!r} must name two different columns of Z (0..{k - 1})"
            )
        out.append((i, j))
    return out


def latent_density(
    Z: ArrayLike,
    labels: ArrayLike | pd.Categorical | None = None,
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    dims: tuple[int, int] | None = None,
    gridsize: int = 40,
    ax: Axes | None = None,
) -> Figure:
    """Density of cells in the plane of two latent factors, overlaid by label.

    The latent space of an LDVAE shown as in Svensson et al. (2020, Fig. 1b): a hexbin of
    the cell density (log-scaled grey) per factor pair, with the cells drawn on top as small
    points coloured by their label.

    Parameters
    ----------
    Z
        float (n_cells, k ≥ 2) latent representation (e.g. :meth:`LDVAE.get_latent_representation`).
    labels
        (n_cells,) categorical labels (e.g. cell types; missing in grey), or None for the
        density alone.
    pairs
        Factor pairs ``[(i, j), ...]`` (0-based columns of Z), one panel each; default the
        consecutive pairs (0, 1), (2, 3), ... (at most 6). Needs a new Figure (``ax=None``)
        unless it holds exactly one pair.
    dims
        One factor pair; shorthand for ``pairs=[dims]``.
    gridsize
        Hexagons across the x axis (≥ 2).
    ax
        Axes to draw one pair into; a new Figure (a grid of panels) when None.

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the panel(s).

    Raises
    ------
    InvalidInputError
        ``Z`` not a finite 2-D array with ≥ 2 columns, invalid pairs / dims (or both given),
        several pairs with ``ax``, or ``gridsize < 2``.
    ShapeMismatchError
        ``labels`` without one entry per row of ``Z``.

    """
    z = np.asarray(Z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2 or z.shape[0] < 1:
        raise InvalidInputError(f"Z must be 2-D with at least 2 columns, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise InvalidInputError("Z contains NaN or infinite values")
    if gridsize < 2:
        raise InvalidInputError(f"gridsize must be ≥ 2, got {gridsize}")
    chosen = _latent_pairs(z.shape[1], pairs, dims)
    if ax is not None and len(chosen) != 1:
        raise InvalidInputError(
            f"ax holds one panel but {len(chosen)} factor pairs were asked for; pass dims=(i, j) "
            "or leave ax=None for a grid"
        )
    categories: tuple[list[str], np.ndarray, np.ndarray] | None = None
    if labels is not None:
        categories = _categories(labels, z.shape[0])
    if ax is not None:
        fig, axes_list = _new_axes(ax, (5.5, 5.0))[0], [ax]
    else:
        from matplotlib.figure import Figure

        n_cols = min(3, len(chosen))
        n_rows = -(-len(chosen) // n_cols)
        fig = Figure(figsize=(4.2 * n_cols + 1.6, 4.0 * n_rows), layout="constrained")
        grid = fig.subplots(n_rows, n_cols, squeeze=False)
        axes_list = list(grid.ravel())
        for extra in axes_list[len(chosen) :]:
            extra.set_axis_off()
    size = float(np.clip(4000 / z.shape[0], 3, 16))
    for panel, (i, j) in zip(axes_list, chosen, strict=False):
        panel.hexbin(z[:, i], z[:, j], gridsize=gridsize, bins="log", cmap="Greys", mincnt=1)
        if categories is not None:
            names, codes, missing = categories
            for code, (name, color) in enumerate(zip(names, _palette(len(names)), strict=True)):
                sel = codes == code
                panel.scatter(
                    z[sel, i], z[sel, j], s=size, color=color, alpha=0.6, linewidths=0, label=name
                )
            if missing.any():
                panel.scatter(
                    z[missing, i],
                    z[missing, j],
                    s=size,
                    color=_MISSING_COLOR,
                    alpha=0.6,
                    linewidths=0,
                    label=f"missing ({int(missing.sum())})",
                )
        panel.set_xlabel(f"Z_{i}")
        panel.set_ylabel(f"Z_{j}")
    if categories is not None and 0 < len(categories[0]) <= _MAX_LEGEND:
        style = {"frameon": False, "fontsize": "small", "markerscale": max(1.0, 30 / size) ** 0.5}
        if ax is not None:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), **style)
        else:  # one legend for the whole grid, outside the panels
            handles, names = axes_list[0].get_legend_handles_labels()
            fig.legend(handles, names, loc="outside right center", **style)
    return fig


def loadings_scatter(
    loadings: pd.DataFrame,
    *,
    dims: tuple[int | str, int | str] = (0, 1),
    n_top: int = 10,
    ax: Axes | None = None,
) -> Figure:
    """Scatter of the genes' loadings on two factors, the strongest genes named.

    Svensson et al. (2020, Fig. 1c): every gene is a point at its loadings on factors ``i``
    and ``j``; the ``n_top`` genes with the largest loading magnitude in this plane,
    √(w_i² + w_j²), are highlighted and annotated with their names.

    Parameters
    ----------
    loadings
        genes × factors table (e.g. :meth:`LDVAE.get_loadings`), index = gene names.
    dims
        The two factors, as column positions (int) or column names (str).
    n_top
        Genes to annotate (≥ 0; all genes when larger than their number).
    ax
        Axes to draw into; a new Figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The Figure holding the plot.

    Raises
    ------
    InvalidInputError
        ``loadings`` not a DataFrame with ≥ 2 numeric, finite columns and ≥ 1 row, invalid
        ``dims``, or ``n_top < 0``.

    """
    if not isinstance(loadings, pd.DataFrame):
        raise InvalidInputError(
            f"loadings must be a pandas DataFrame (genes × factors), got {type(loadings).__name__}"
        )
    if loadings.shape[0] < 1 or loadings.shape[1] < 2:
        raise InvalidInputError(
            f"loadings needs ≥ 1 gene and ≥ 2 factors, got shape {loadings.shape}"
        )
    if isinstance(n_top, bool) or not isinstance(n_top, int | np.integer) or n_top < 0:
        raise InvalidInputError(f"n_top must be an integer ≥ 0, got {n_top!r}")
    columns = list(loadings.columns)
    positions = []
    for d in dims:
        if isinstance(d, str):
            if d not in columns:
                raise InvalidInputError(f"factor {d!r} not a column of loadings: {columns}")
            positions.append(columns.index(d))
        elif isinstance(d, int | np.integer) and not isinstance(d, bool) and 0 <= d < len(columns):
            positions.append(int(d))
        else:
            raise InvalidInputError(
                f"dims entries must be column names or positions 0..{len(columns) - 1}, got {d!r}"
            )
    if len(positions) != 2 or positions[0] == positions[1]:
        raise InvalidInputError(f"dims must name two different factors, got {dims!r}")
    try:
        values = loadings.iloc[:, positions].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"loadings columns {dims!r} are not numeric: {error}") from error
    if not np.isfinite(values).all():
        raise InvalidInputError("loadings contain NaN or infinite values")
    names = [str(g) for g in loadings.index]
    magnitude = np.hypot(values[:, 0], values[:, 1])
    top = np.argsort(-magnitude, kind="stable")[: int(n_top)]
    rest = np.ones(len(names), dtype=bool)
    rest[top] = False
    fig, ax = _new_axes(ax, (5.5, 5.0))
    ax.axhline(0.0, color=_MISSING_COLOR, linewidth=0.8, zorder=0)
    ax.axvline(0.0, color=_MISSING_COLOR, linewidth=0.8, zorder=0)
    ax.scatter(values[rest, 0], values[rest, 1], s=8, color=_MISSING_COLOR, linewidths=0)
    ax.scatter(values[top, 0], values[top, 1], s=16, color="#c44e52", linewidths=0)
    for index in top:
        ax.annotate(
            names[index],
            (values[index, 0], values[index, 1]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel(f"loading on {columns[positions[0]]}")
    ax.set_ylabel(f"loading on {columns[positions[1]]}")
    return fig
