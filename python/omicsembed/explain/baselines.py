"""Baselines and model choice for the log-linear exploration of generative models.

Hess, Hackenberg & Binder 2020 (Bioinformatics 36(20):5045-5053):

- :func:`nmf_gene_selection` — genes chosen by non-negative matrix factorisation (Kullback–Leibler
  loss, multiplicative updates) as the ones with the largest loading, the comparison for the
  log-linear selection.
- :func:`energy_statistic` — the Cramér / energy two-sample statistic between synthetic and test
  data on their first principal components, used to choose training epochs and initialisations
  (the smaller, the closer the synthetic data are to unseen data).
- :class:`EnergyStatisticMonitor` — that choice during training: a ``monitor(model, epoch)``
  callback that scores the synthetic cells of each evaluated epoch against held-out cells and
  keeps a copy of the best model.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.distance import cdist
from sklearn.decomposition import NMF, PCA

from omicsembed._seeds import SKLEARN_SEEDS, seed_int
from omicsembed.evaluate._checks import check_count
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from omicsembed.explain.workflow import GenerativeModel

__all__ = ["EnergyStatisticMonitor", "energy_statistic", "nmf_gene_selection"]


def nmf_gene_selection(
    X: ArrayLike,
    n_select: int,
    *,
    n_components: int = 10,
    max_iter: int = 500,
    seed: int = 0,
) -> NDArray[np.int64]:
    """Select genes by their maximal NMF loading.

    Fits ``X ≈ W H`` (scikit-learn :class:`~sklearn.decomposition.NMF`,
    ``beta_loss="kullback-leibler"``, ``solver="mu"``) and ranks genes by their largest loading
    over the components, ``max_k H[k, j]``.

    Parameters
    ----------
    X
        (n, p) non-negative data, e.g. dichotomised expression.
    n_select
        Number of genes to return (1 ≤ n_select ≤ p).
    n_components
        Number of NMF components (at most ``min(n, p)``, which the ``nndsvda`` initialisation
        needs: more are reduced to that).
    max_iter
        Iteration cap of the multiplicative updates.
    seed
        Seed of the initialisation (int in [0, 2**32) or a numpy Generator).

    Returns
    -------
    np.ndarray
        int64 (n_select,) gene indices, largest loading first.

    Raises
    ------
    InvalidInputError
        Negative or non-finite values, no cells, ``n_select`` out of range, ``n_components``
        or ``max_iter`` below 1, or a bad seed.

    """
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2:
        raise ShapeMismatchError(f"X must be 2-D (cells × genes), got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise InvalidInputError("X has no cells")
    if not np.isfinite(matrix).all() or (matrix < 0).any():
        raise InvalidInputError("NMF needs finite, non-negative values")
    n_select = check_count("n_select", n_select, 1)
    if n_select > matrix.shape[1]:
        raise InvalidInputError(f"n_select must be in [1, {matrix.shape[1]}], got {n_select}")
    n_components = min(check_count("n_components", n_components, 1), min(matrix.shape))
    max_iter = check_count("max_iter", max_iter, 1)
    model = NMF(
        n_components=n_components,
        beta_loss="kullback-leibler",
        solver="mu",
        init="nndsvda",
        max_iter=max_iter,
        random_state=seed_int(seed, below=SKLEARN_SEEDS),
    )
    model.fit(matrix)
    loading = model.components_.max(axis=0)
    return np.argsort(-loading, kind="stable")[:n_select].astype(np.int64)


def energy_statistic(
    synthetic: ArrayLike,
    test: ArrayLike,
    *,
    n_components: int = 5,
    max_samples: int = 2000,
    seed: int = 0,
) -> float:
    """Energy (Cramér) two-sample statistic on the first principal components.

    ``E = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖`` (Székely & Rizzo 2004) between synthetic cells X
    and test cells Y, both projected on the first ``n_components`` principal components of the
    test data. E ≥ 0 and is 0 only for equal distributions. The estimate averages the
    within-set distances over pairs of distinct cells (the unbiased estimate, not the plug-in
    one), so it is unbiased for E and can be slightly negative when the distributions are equal.

    Parameters
    ----------
    synthetic, test
        (N, p) and (n, p) data on the same genes.
    n_components
        Principal components used (the paper uses 5).
    max_samples
        Each set is subsampled (without replacement, seeded) to at most this many cells, which
        keeps the pairwise distances affordable.
    seed
        Seed of the subsampling and of the principal components' ``random_state``: an int in
        [0, 2**32) or a numpy Generator.

    Returns
    -------
    float
        The estimate of E (unbiased; near 0, possibly below, for equal distributions).

    Raises
    ------
    ShapeMismatchError
        If the data are not 2-D on the same genes.
    InvalidInputError
        If a set has fewer than two cells, there are no genes, a value is NaN or infinite,
        ``n_components < 1``, ``max_samples < 2``, a bad ``seed``, or the statistic itself
        exceeds float64 (data near 1e308).

    """
    x = np.asarray(synthetic, dtype=np.float64)
    y = np.asarray(test, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ShapeMismatchError(f"need 2-D data on the same genes, got {x.shape} and {y.shape}")
    if min(x.shape[0], y.shape[0]) < 2:
        raise InvalidInputError("each data set needs at least two cells")
    if x.shape[1] == 0:
        raise InvalidInputError("the data have no genes (columns)")
    check_count("n_components", n_components, 1)
    check_count("max_samples", max_samples, 2)
    for values, name in ((x, "synthetic"), (y, "test")):
        if not np.isfinite(values).all():
            row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(values)))
            raise InvalidInputError(f"{name}[{row}, {col}] = {values[row, col]}; need finite data")
    seed = seed_int(seed, below=SKLEARN_SEEDS)
    rng = np.random.default_rng(seed)
    x = x[rng.permutation(x.shape[0])[:max_samples]]
    y = y[rng.permutation(y.shape[0])[:max_samples]]
    # E(cX, cY) = c·E(X, Y): computed on the data scaled by a power of two (exact) to at most 1
    # in absolute value, so that the squares in the principal components and the distances
    # neither overflow (values near 1e308) nor underflow (near 1e-300)
    largest = max(float(np.abs(x).max()), float(np.abs(y).max()))
    exponent = int(np.frexp(largest)[1]) if largest > 0 else 0
    x, y = np.ldexp(x, -exponent), np.ldexp(y, -exponent)
    pca = PCA(n_components=min(n_components, y.shape[0], y.shape[1]), random_state=seed).fit(y)
    x, y = pca.transform(x), pca.transform(y)
    between = cdist(x, y).mean()
    within_x = cdist(x, x).sum() / (x.shape[0] * (x.shape[0] - 1))
    within_y = cdist(y, y).sum() / (y.shape[0] * (y.shape[0] - 1))
    with np.errstate(over="ignore"):
        value = float(np.ldexp(2.0 * between - within_x - within_y, exponent))
    if not np.isfinite(value):
        raise InvalidInputError(
            f"the energy statistic of data up to {largest:.3g} in absolute value exceeds float64; "
            "rescale the data"
        )
    return value


class EnergyStatisticMonitor:
    """Choose the training epoch whose synthetic cells are closest to held-out cells.

    Hess, Hackenberg & Binder (2020) pick epochs and initialisations of their generative models
    by the energy statistic between synthetic and test data on the first 5 principal components
    (:func:`energy_statistic`; Székely & Rizzo 2004). Pass an instance as ``fit(...,
    monitor=...)`` of any model with ``generate(n_samples, *, seed) -> (features, latent)``
    (:class:`~omicsembed.models.DeepBoltzmannMachine` with ``monitor_every``,
    :class:`~omicsembed.models.BernoulliVAE`, which calls it after every epoch). Every
    ``every``-th epoch it draws ``n_synthetic`` cells with the same ``seed`` (so epochs differ
    only by the model, not by the sampling noise), records the statistic against the test
    cells and keeps a deep copy of the model when it is the lowest so far. Explain
    :attr:`best_model` afterwards; the fitted model itself holds the last epoch.

    Parameters
    ----------
    test
        (n, p) held-out binary cells (AnnData: ``.X`` or ``layer``, dense or sparse; or an
        array of 0/1 values) on the model's genes. AnnData columns are matched to the model's
        ``feature_names_`` by name when they share names; otherwise (arrays, or a model fitted
        on an array) the columns must be in the model's order.
    layer
        AnnData layer to read instead of ``.X``.
    n_synthetic
        Synthetic cells drawn per evaluation (≥ 2; the statistic subsamples at most 2,000).
    every
        Evaluate only when ``epoch`` is a multiple of this (e.g. 10 for a model that calls the
        monitor after every epoch).
    n_components
        Principal components of the test data used (the paper: 5); the test set needs more
        cells than this.
    seed
        Seed of the synthetic cells and of the statistic's subsampling, the same every epoch
        (int in [0, 2**32)).

    Attributes
    ----------
    records : list of dict
        One ``{"epoch": int, "energy_statistic": float}`` per evaluation, in call order.

    Raises
    ------
    InvalidInputError
        Test data that are not binary (the message names the first offending cell and gene),
        have missing values or too few cells (≤ ``n_components``), or bad settings.

    Notes
    -----
    One monitor scores one training run. To choose among initialisations, give each run its
    own monitor and compare :attr:`best_energy`. Snapshots are ``copy.deepcopy`` of the model
    as the monitor sees it: a snapshot of a :class:`~omicsembed.models.BernoulliVAE` holds
    the ``history_`` up to its epoch.

    Examples
    --------
    >>> from omicsembed.explain import EnergyStatisticMonitor, explain
    >>> from omicsembed.models import DeepBoltzmannMachine
    >>> monitor = EnergyStatisticMonitor(test_cells)  # doctest: +SKIP
    >>> DeepBoltzmannMachine(epochs=100).fit(train_cells, monitor=monitor, monitor_every=10)
    ... # doctest: +SKIP
    >>> explanation = explain(monitor.best_model, 10_000, 12)  # doctest: +SKIP

    """

    def __init__(
        self,
        test: AnnData | ArrayLike,
        *,
        layer: str | None = None,
        n_synthetic: int = 2_000,
        every: int = 1,
        n_components: int = 5,
        seed: int = 0,
    ) -> None:
        from omicsembed.models._data import binary_matrix

        n_synthetic = check_count("n_synthetic", n_synthetic, 2)
        every = check_count("every", every, 1)
        n_components = check_count("n_components", n_components, 1)
        matrix: Any = binary_matrix(
            test, layer=layer, what="the test data", model="the energy statistic"
        )
        if matrix.shape[0] <= n_components:
            raise InvalidInputError(
                f"the test data have {matrix.shape[0]} cells; the energy statistic on "
                f"{n_components} principal components needs at least {n_components + 1}"
            )
        self.test = np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)
        self.test_feature_names: list[str] | None = (
            [str(name) for name in test.var_names] if hasattr(test, "var_names") else None
        )
        self.n_synthetic = n_synthetic
        self.every = every
        self.n_components = n_components
        self.seed = seed_int(seed, below=SKLEARN_SEEDS)
        self.records: list[dict[str, Any]] = []
        self._best_model: Any = None
        self._checked = False

    def _match_genes(self, model: GenerativeModel, n_features: int) -> None:
        """Check (once) that the test cells have the model's genes, reordering AnnData columns."""
        fitted: list[str] = []
        if self.test_feature_names is not None:
            try:
                fitted = [str(name) for name in getattr(model, "feature_names_", None) or []]
            except InvalidInputError:  # not fitted: no feature names
                fitted = []
        position = {name: i for i, name in enumerate(self.test_feature_names or [])}
        missing = [name for name in fitted if name not in position]
        if fitted and len(missing) < len(fitted):  # shared names: match by name
            if missing:
                raise InvalidInputError(
                    f"{len(missing)} genes of the model are missing from the test data, e.g. "
                    f"{missing[:5]}; give held-out cells on the genes the model was fitted on"
                )
            self.test = self.test[:, [position[name] for name in fitted]]
        if self.test.shape[1] != n_features:
            raise InvalidInputError(
                f"the test data have {self.test.shape[1]} genes but the model generates "
                f"{n_features}; give held-out cells on the genes the model was fitted on"
            )
        self._checked = True

    def __call__(self, model: GenerativeModel, epoch: int) -> None:
        """Score ``model`` after ``epoch`` when ``epoch`` is a multiple of :attr:`every`.

        Raises
        ------
        InvalidInputError
            At the first evaluation, if the test data lack the model's genes.

        """
        if epoch % self.every == 0:
            self.score(model, epoch)

    def score(self, model: GenerativeModel, epoch: int) -> float:
        """Score ``model`` as the state after ``epoch`` whatever :attr:`every` says.

        For instance the trained model when training stopped before the first evaluated epoch.

        Returns
        -------
        float
            The energy statistic (see :func:`energy_statistic`; near 0, possibly below, when
            the synthetic cells match the held-out ones) of ``n_synthetic`` cells drawn with
            :attr:`seed`.

        Raises
        ------
        InvalidInputError
            At the first evaluation, if the test data lack the model's genes.

        """
        synthetic, _ = model.generate(self.n_synthetic, seed=self.seed)
        synthetic = np.asarray(synthetic)
        if not self._checked:
            self._match_genes(model, synthetic.shape[1])
        energy = energy_statistic(
            synthetic, self.test, n_components=self.n_components, seed=self.seed
        )
        if not self.records or energy < self.best_energy:
            self._best_model = copy.deepcopy(model)
        self.records.append({"epoch": int(epoch), "energy_statistic": energy})
        return energy

    def _require_records(self) -> None:
        if not self.records:
            raise InvalidInputError(
                "no epoch was scored yet: pass the monitor to fit(..., monitor=...) and train "
                f"for at least every={self.every} epochs"
            )

    @property
    def best_energy(self) -> float:
        """Lowest energy statistic recorded (the first epoch that reached it wins ties)."""
        self._require_records()
        return float(min(r["energy_statistic"] for r in self.records))

    @property
    def best_epoch(self) -> int:
        """Epoch with the lowest energy statistic (the earliest one on ties)."""
        self._require_records()
        energies = [r["energy_statistic"] for r in self.records]
        return int(self.records[int(np.argmin(energies))]["epoch"])

    @property
    def best_model(self) -> Any:
        """Deep copy of the model at :attr:`best_epoch`, unaffected by later training."""
        self._require_records()
        return self._best_model

    def to_frame(self) -> pd.DataFrame:
        """Tidy table of the evaluations: ``epoch`` (int), ``energy_statistic`` (float)."""
        return pd.DataFrame(self.records, columns=["epoch", "energy_statistic"])

    def plot(self, *, ax: Axes | None = None) -> Figure:
        """Energy statistic against epoch, the best epoch marked.

        Parameters
        ----------
        ax
            Axes to draw into; a new Figure when None.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        InvalidInputError
            If no epoch was scored yet.

        """
        from omicsembed.pl import _new_axes

        self._require_records()
        table = self.to_frame()
        fig, ax = _new_axes(ax, (4.5, 3.2))
        ax.plot(table["epoch"], table["energy_statistic"], marker="o", color="#4c72b0")
        ax.axvline(self.best_epoch, color="#c44e52", linestyle="--", label="best epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel("energy statistic (test vs synthetic)")
        ax.legend(frameon=False)
        return fig
