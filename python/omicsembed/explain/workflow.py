"""The exploration workflow: synthetic data → log-linear selection → patterns → pattern map.

Hess, Hackenberg & Binder 2020 (Bioinformatics 36(20):5045-5053), §2.5–2.6 and Figs. 3–5. Any
generative model that can produce synthetic binary features together with binary latent units
(deep Boltzmann machines, Bernoulli VAEs, dichotomised count models) plugs in through the
:class:`GenerativeModel` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from omicsembed.evaluate._checks import check_count
from omicsembed.exceptions import InvalidInputError, OmicsEmbedError
from omicsembed.explain.loglinear import (
    LoglinearSelection,
    _as_uint8_codes,
    select_features_loglinear,
)
from omicsembed.explain.patterns import PatternMap, pattern_map, top_patterns

__all__ = ["Explanation", "GenerativeModel", "SelectionMonitor", "explain"]


@runtime_checkable
class GenerativeModel(Protocol):
    """What :func:`explain` needs of a model.

    ``generate(n_samples, seed=...)`` returns ``(features, latent)``: (n_samples, p) synthetic
    binary features and (n_samples, r) binary latent units (e.g. the last hidden layer of a deep
    Boltzmann machine, or a VAE's latent code dichotomised at zero).
    """

    def generate(self, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Draw synthetic binary features and the binary latent units that produced them."""
        ...


@dataclass(frozen=True)
class Explanation:
    """Result of :func:`explain`.

    Attributes
    ----------
    selection
        The stepwise log-linear selection (features, winning latent units, G² per step).
    map
        The top patterns of the selected features with their counts, the Jensen–Shannon
        distances between their latent-configuration distributions and 2-D MDS coordinates.
    feature_names
        Names of all p features.
    n_synthetic
        Number of synthetic samples.

    """

    selection: LoglinearSelection
    map: PatternMap
    feature_names: list[str]
    n_synthetic: int

    @property
    def selected_features(self) -> list[str]:
        """Names of the selected features in the order of selection."""
        return [self.feature_names[i] for i in self.selection.selected]

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: step, feature index, feature name, latent unit, G², p-value."""
        table = self.selection.to_frame()
        table.insert(2, "feature_name", [self.feature_names[i] for i in table["feature"]])
        return table

    def map_frame(self) -> pd.DataFrame:
        """Pattern-map table: MDS coordinates, pattern string and count of each mapped pattern."""
        mapped = self.map
        return pd.DataFrame(
            {
                "mds_1": mapped.coordinates[:, 0],
                "mds_2": mapped.coordinates[:, 1],
                "pattern": ["".join(map(str, p)) for p in mapped.patterns[mapped.index]],
                "count": mapped.counts[mapped.index],
            }
        )

    def plot_map(self, *, ax: Any = None) -> Figure:
        """Pattern map figure (Hess et al. 2020, Fig. 4), see :func:`omicsembed.pl.pattern_map`."""
        from omicsembed import pl

        table = self.map_frame()
        coordinates = table[["mds_1", "mds_2"]].to_numpy()
        return pl.pattern_map(coordinates, table["count"], list(table["pattern"]), ax=ax)

    def pattern_frame(self) -> pd.DataFrame:
        """Top patterns as a table (one column per selected feature, plus ``count``)."""
        table = pd.DataFrame(self.map.patterns, columns=self.selected_features)
        table["count"] = self.map.counts
        return table


def _model_feature_names(model: GenerativeModel) -> list[str] | None:
    """Return the features (genes) ``model`` was fitted on, if it records them."""
    try:
        names = getattr(model, "feature_names_", None)
    except OmicsEmbedError:
        return None
    return [str(name) for name in names] if names is not None else None


def explain(
    model: GenerativeModel,
    n_synthetic: int = 10_000,
    n_select: int = 12,
    *,
    feature_names: Sequence[str] | None = None,
    loglinear_model: Literal["marginal", "conditional"] = "marginal",
    n_patterns: int = 10,
    n_permutations: int = 0,
    seed: int = 0,
) -> Explanation:
    """Explain a generative model by the features that jointly pattern with its latent units.

    Draws ``n_synthetic`` samples (features and latent units) from ``model``, selects
    ``n_select`` features stepwise by log-linear G² (:func:`select_features_loglinear`), takes
    the ``n_patterns`` most frequent patterns of the selected features and maps them by the
    Jensen–Shannon distance of the latent configurations they co-occur with (Hess et al. 2020,
    §2.5, Figs. 3–4).

    Parameters
    ----------
    model
        Any :class:`GenerativeModel` (``DeepBoltzmannMachine``, ``BernoulliVAE``, ...).
    n_synthetic
        Synthetic samples to draw (paper: 10,000).
    n_select
        Features to select (paper: 8 and 12).
    feature_names
        Names of the p features (default: the model's ``feature_names_``, the genes it was
        fitted on, else ``feature_<i>``).
    loglinear_model
        ``"marginal"`` ([U S][X], the 2020 paper) or ``"conditional"`` ([U S][S X], 2022).
    n_patterns
        Patterns kept by :func:`top_patterns` (ties may keep more).
    n_permutations
        Permutations for p-values of the selected features (0: none).
    seed
        Seed of the synthetic data and the permutations.

    Returns
    -------
    Explanation

    Raises
    ------
    InvalidInputError
        If the model does not produce binary (0/1, finite) features and latent units of
        matching length.
    ShapeMismatchError
        If they are not 2-D.

    """
    if not isinstance(model, GenerativeModel):
        raise InvalidInputError(
            f"{type(model).__name__} has no generate(n_samples, seed=...) method; it cannot be "
            "explained"
        )
    features, latent = model.generate(n_synthetic, seed=seed)
    # checked before any cast: 0.7 or NaN from a model must be an error, not a silent 0
    features = _as_uint8_codes(features, "the model's synthetic features", binary=True)
    latent = _as_uint8_codes(latent, "the model's latent units", binary=True)
    if features.shape[0] != latent.shape[0]:
        raise InvalidInputError(
            f"the model gave {features.shape[0]} feature rows but {latent.shape[0]} latent rows"
        )
    names = list(feature_names) if feature_names is not None else _model_feature_names(model)
    if names is None or (feature_names is None and len(names) != features.shape[1]):
        names = [f"feature_{i}" for i in range(features.shape[1])]
    if len(names) != features.shape[1]:
        raise InvalidInputError(f"{len(names)} feature names for {features.shape[1]} features")
    selection = select_features_loglinear(
        features,
        latent,
        n_select,
        model=loglinear_model,
        n_permutations=n_permutations,
        seed=seed,
    )
    chosen = features[:, selection.selected]
    patterns, _ = top_patterns(chosen, n_patterns)
    return Explanation(
        selection=selection,
        map=pattern_map(chosen, latent, patterns),
        feature_names=names,
        n_synthetic=int(features.shape[0]),
    )


@dataclass
class SelectionMonitor:
    """Selection and top patterns every few epochs of training (Hess et al. 2020, Figs. 3–5).

    Call it with the model and the epoch (e.g. from a training callback); every ``every`` epochs
    it runs :func:`explain` on fresh synthetic data and records the selection and the pattern
    map.

    Attributes
    ----------
    every, n_synthetic, n_select, n_patterns, seed, feature_names
        Settings passed to :func:`explain`.
    explanations
        Explanation per monitored epoch.

    """

    every: int = 10
    n_synthetic: int = 2_000
    n_select: int = 12
    n_patterns: int = 10
    seed: int = 0
    feature_names: Sequence[str] | None = None
    explanations: dict[int, Explanation] = field(default_factory=dict)

    def __call__(self, model: GenerativeModel, epoch: int) -> None:
        """Record an explanation when ``epoch`` is a multiple of ``every``."""
        if epoch % self.every == 0:
            self.record(model, epoch)

    def record(self, model: GenerativeModel, epoch: int) -> None:
        """Record the explanation of ``model`` as its state after ``epoch``.

        Whatever :attr:`every` says: e.g. the trained model when training stopped between
        monitored epochs.
        """
        explanation = explain(
            model,
            self.n_synthetic,
            self.n_select,
            feature_names=self.feature_names,
            n_patterns=self.n_patterns,
            seed=self.seed + epoch,
        )
        # in epoch order, whatever the order of the calls
        self.explanations = dict(sorted({**self.explanations, epoch: explanation}.items()))

    def table(self) -> pd.DataFrame:
        """Tidy table of every monitored epoch: epoch, step, feature, latent unit, G²."""
        frames = [e.to_frame().assign(epoch=epoch) for epoch, e in self.explanations.items()]
        if not frames:
            return pd.DataFrame(columns=["epoch", "step", "feature", "latent_unit", "g2"])
        table = pd.concat(frames, ignore_index=True)
        return table[["epoch", *[c for c in table.columns if c != "epoch"]]]

    def pattern_table(self) -> pd.DataFrame:
        """Tidy table of the top patterns of every monitored epoch that occur.

        The pattern maps keep, as the authors, every pattern when fewer than ``n_patterns``
        occur, unobserved ones included (count 0); this table lists the observed ones only.

        Returns
        -------
        pandas.DataFrame
            One row per epoch and observed top pattern: ``epoch``; ``rank`` (1-based, in the
            order of :func:`~omicsembed.explain.top_patterns`: count, most frequent first);
            ``pattern`` (0/1 string over that epoch's selected features, in selection order);
            ``features`` (those features' names, comma-separated: the selection changes with
            the epoch); ``count`` (synthetic cells with exactly that pattern, ≥ 1).

        """
        rows = [
            {
                "epoch": epoch,
                "rank": rank,
                "pattern": "".join(str(int(v)) for v in pattern),
                "features": ",".join(explanation.selected_features),
                "count": int(count),
            }
            for epoch, explanation in self.explanations.items()
            for rank, (pattern, count) in enumerate(
                zip(explanation.map.patterns, explanation.map.counts, strict=True), start=1
            )
            if count > 0
        ]
        columns = ["epoch", "rank", "pattern", "features", "count"]
        return pd.DataFrame(rows, columns=columns)

    def heatmap(self, *, ax: Any = None) -> Figure:
        """Heat map of the selection step of each feature per epoch (blank: not selected)."""
        from omicsembed import pl

        return pl.selection_heatmap(self.table(), ax=ax)

    def pattern_maps(self, *, columns: int = 4, max_panels: int = 24) -> Figure:
        """Pattern map of the monitored epochs, one panel each (Hess et al. 2020, Fig. 4).

        At most ``max_panels`` epochs, evenly spaced over the monitored ones, the first and
        the last included (a long training would give an unreadable figure).

        Raises
        ------
        InvalidInputError
            If no epoch was monitored, or ``columns`` or ``max_panels`` is below 1.

        """
        if not self.explanations:
            raise InvalidInputError("no epoch was monitored yet")
        check_count("columns", columns, 1)
        check_count("max_panels", max_panels, 1)
        epochs = sorted(self.explanations)
        if len(epochs) > max_panels:
            picks = np.unique(np.linspace(0, len(epochs) - 1, max_panels).round().astype(int))
            epochs = [epochs[i] for i in picks]
        from omicsembed import pl

        figure, axes = pl.panel_grid(len(epochs), columns, (4.0, 3.8))
        for ax, epoch in zip(axes, epochs, strict=True):
            self.explanations[epoch].plot_map(ax=ax)
            ax.set_title(f"epoch {epoch}")
        return figure
