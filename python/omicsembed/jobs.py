"""The user jobs behind the command line.

Each job takes data, runs a method end to end and fills one result folder (tables as Parquet +
CSV, PNG figures, ``summary.json``).

- :func:`tissue_specificity_job` — Tau index and tissue-specific Wasserstein distance per gene
  (Trofimov et al. 2020, §3.2).
- :func:`factorized_embedding_job` — factorized embeddings, reconstruction quality and a
  k-nearest-neighbour benchmark of the sample embedding against PCA of the same dimension
  (Trofimov et al. 2020, §2.1, §3).
- :func:`demo` — both jobs on the embedded NCI60 data.
- :func:`ldvae_job` — LDVAE factors, loadings, variance explained and held-out
  reconstruction error of counts (Svensson et al. 2020).
- :func:`explain_job` — train a deep Boltzmann machine or Bernoulli VAE on dichotomised data and
  explain it with log-linear models (Hess, Hackenberg & Binder 2020).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from numpy.typing import NDArray

from omicsembed import evaluate, pl, pp, stats
from omicsembed._core import __version__
from omicsembed._memory import check_memory
from omicsembed._seeds import SKLEARN_SEEDS, TORCH_SEEDS, int_seed
from omicsembed.evaluate._checks import check_count
from omicsembed.exceptions import InvalidInputError
from omicsembed.io import ResultFolder
from omicsembed.models import FactorizedEmbedding

if TYPE_CHECKING:
    from omicsembed.models import LDVAE
from omicsembed.models._data import check_unique_genes, dense_matrix

__all__ = [
    "DemoSettings",
    "ExplainSettings",
    "demo",
    "explain_job",
    "factorized_embedding_job",
    "ldvae_job",
    "tissue_specificity_job",
]


def _labelled(adata: AnnData, groupby: str) -> AnnData:
    if groupby not in adata.obs.columns:
        raise InvalidInputError(
            f"column {groupby!r} not in the sample annotations; available: "
            f"{list(adata.obs.columns)}"
        )
    keep = adata.obs[groupby].notna().to_numpy()
    if not keep.any():
        raise InvalidInputError(f"column {groupby!r} has no non-missing labels")
    return adata[keep].copy() if not keep.all() else adata


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    return {
        "omicsembed": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def tissue_specificity_job(
    adata: AnnData,
    out: ResultFolder,
    *,
    groupby: str,
    layer: str | None = None,
    unlog_base: float | None = None,
    percentile: float = 65.0,
) -> dict[str, Any]:
    """Tau index and tissue-specific Wasserstein distance of every gene; writes the results.

    Parameters
    ----------
    adata
        Samples × genes; samples with a missing ``groupby`` label are left out.
    out
        Result folder; receives ``tissue_specificity`` (one row per gene: tau, top group,
        largest Wasserstein distance), ``tissue_wasserstein`` (genes × groups),
        ``specific_genes`` (genes above the ``percentile``-th Wasserstein percentile within each
        group) and ``tau_histogram.png``.
    groupby
        ``.obs`` column with the tissue / cancer type of each sample.
    layer
        Use this layer instead of ``.X``.
    unlog_base
        When the values are logarithms (e.g. log2 ratios) give the base: Tau, which needs
        non-negative expression, is then computed on ``unlog_base ** x``. The Wasserstein
        distances always use the values as given.
    percentile
        Within-group percentile of the Wasserstein distance above which a gene counts as
        specific to that group (the paper uses 65).

    Returns
    -------
    dict
        Headline figures (numbers of genes, NaN Tau, specific genes per group).

    Raises
    ------
    InvalidInputError
        Missing column, negative values for Tau without ``unlog_base``, an ``unlog_base`` that
        is not a finite number above 1, ``base ** x`` beyond float64, or bad groups.

    """
    if unlog_base is not None and not (np.isfinite(unlog_base) and unlog_base > 1):
        raise InvalidInputError(
            f"unlog_base must be the base of the logarithms (a finite number > 1), got {unlog_base}"
        )
    adata = _labelled(adata, groupby)
    matrix = dense_matrix(adata, layer=layer)
    groups = adata.obs[groupby].to_numpy()
    if unlog_base is None:
        expression = matrix
    else:
        with np.errstate(over="ignore"):
            expression = np.power(unlog_base, matrix, dtype=np.float64)
        if np.isinf(expression).any():
            raise InvalidInputError(
                f"{unlog_base} ** x exceeds float64 for the largest values "
                f"({np.nanmax(matrix):.4g}); are the values logarithms in this base?"
            )
    tau = stats.tau_index(expression, groups)
    wasserstein = stats.tissue_wasserstein(matrix, groups)
    genes = adata.var_names.astype(str)
    distances = wasserstein.to_frame(gene_names=list(genes))
    specific = wasserstein.specific_genes(percentile)
    table = pd.DataFrame(
        {
            "gene": genes,
            "tau": tau,
            "top_group": wasserstein.top_group().astype(str),
            "max_wasserstein": wasserstein.distances.max(axis=1),
        }
    )
    rows, columns = np.nonzero(specific)
    specific_table = pd.DataFrame(
        {
            "group": np.asarray(wasserstein.groups, dtype=str)[columns],
            "gene": genes[rows],
            "wasserstein": wasserstein.distances[rows, columns],
        }
    ).sort_values(["group", "wasserstein"], ascending=[True, False])
    out.write_table(table, "tissue_specificity")
    out.write_table(distances.reset_index(names="gene"), "tissue_wasserstein")
    out.write_table(specific_table, "specific_genes")
    out.save_figure(pl.tau_histogram(tau), "tau_histogram")
    return {
        "n_genes": len(genes),
        "n_groups": len(wasserstein.groups),
        "tau_nan": int(np.isnan(tau).sum()),
        "tau_median": float(np.nanmedian(tau)),
        "tau_above_0.8": int(np.sum(tau > 0.8)),
        "specific_percentile": percentile,
        "specific_genes_per_group": {
            str(g): int(n) for g, n in zip(wasserstein.groups, specific.sum(axis=0), strict=True)
        },
        "settings": {
            "groupby": groupby,
            "layer": layer,
            "unlog_base": unlog_base,
            "percentile": percentile,
        },
        "versions": _versions(),
    }


def _embedding_figure(fe: np.ndarray, pca: np.ndarray, labels: np.ndarray, k: int) -> Figure:
    figure = Figure(figsize=(12, 5), layout="constrained")
    left, right = figure.subplots(1, 2)
    projected = evaluate.pca_embedding(fe, 2) if fe.shape[1] > 2 else fe
    pl.embedding(projected, labels, ax=left, title=f"Factorized embedding (k={k}; first 2 PCs)")
    pl.embedding(pca[:, :2], labels, ax=right, title="PCA of the expression (PC1, PC2)")
    return figure


def factorized_embedding_job(
    adata: AnnData,
    out: ResultFolder,
    *,
    groupby: str | None = None,
    layer: str | None = None,
    model: FactorizedEmbedding | None = None,
    n_neighbors: int = 5,
    n_repeats: int = 20,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Fit factorized embeddings, measure reconstruction, benchmark against PCA; write results.

    Parameters
    ----------
    adata
        Samples × genes of continuous values (e.g. log10(TPM+1)); NaN marks missing values.
    out
        Result folder; receives ``sample_embeddings``, ``gene_embeddings``, ``history``,
        ``reconstruction_per_sample``, ``knn_scores`` (when ``groupby`` is given), figures
        ``sample_embedding.png``, ``reconstruction.png``, ``training.png`` and the model in
        ``model/``.
    groupby
        ``.obs`` column with sample labels for the kNN benchmark (80/20 stratified splits,
        ``n_repeats`` times); samples without a label are left out of the benchmark only.
    layer
        Use this layer instead of ``.X``.
    model
        An unfitted :class:`FactorizedEmbedding` with the settings to use (default settings
        when None).
    n_neighbors, n_repeats, seed
        kNN benchmark settings.
    checkpoint_dir, resume
        Checkpoint folder of the training and whether to resume from it.

    Returns
    -------
    dict
        Headline metrics: mean per-sample Pearson r of the reconstruction, distance
        preservation, kNN accuracy (mean ± sd) of the embedding and of PCA with the same
        number of dimensions.

    """
    # the seed also seeds scikit-learn (PCA, kNN splits) after training: checked first
    int_seed(seed, below=SKLEARN_SEEDS)
    model = model or FactorizedEmbedding(seed=seed)
    matrix = dense_matrix(adata, layer=layer)
    started = time.perf_counter()
    model.fit(adata, layer=layer, checkpoint_dir=checkpoint_dir, resume=resume)
    fit_seconds = time.perf_counter() - started
    embeddings = model.sample_embeddings_
    k = embeddings.shape[1]
    reconstructed = model.reconstruct()
    per_sample = evaluate.per_sample_pearson(matrix, reconstructed)
    samples = adata.obs_names.astype(str)
    labels = adata.obs[groupby].to_numpy() if groupby is not None else None
    sample_table = pd.DataFrame(embeddings, columns=[f"fe_{i + 1}" for i in range(k)])
    sample_table.insert(0, "sample", samples)
    if labels is not None and groupby is not None:
        sample_table.insert(1, groupby, pd.Series(labels).astype("string"))
    gene_table = pd.DataFrame(
        model.gene_embeddings_,
        columns=[f"fe_{i + 1}" for i in range(model.gene_embeddings_.shape[1])],
    )
    gene_table.insert(0, "gene", adata.var_names.astype(str))
    out.write_table(sample_table, "sample_embeddings")
    out.write_table(gene_table, "gene_embeddings")
    out.write_table(model.history_, "history")
    out.write_table(
        pd.DataFrame({"sample": samples, "pearson_r": per_sample}), "reconstruction_per_sample"
    )
    model.save(out.file("model"))

    observed = np.isfinite(matrix)
    metrics: dict[str, Any] = {
        "fit_seconds": round(fit_seconds, 2),
        "epochs": len(model.history_),
        "final_train_loss": float(model.history_["train_loss"].iloc[-1]),
        "reconstruction_pearson_all_entries": float(
            np.corrcoef(matrix[observed], reconstructed[observed])[0, 1]
        ),
        "reconstruction_pearson_per_sample_mean": float(np.nanmean(per_sample)),
        "seed": seed,
        "settings": {**model.settings.__dict__, "layer": layer, "n_neighbors": n_neighbors},
        "versions": _versions(),
    }
    if "validation_loss" in model.history_:
        metrics["best_validation_loss"] = float(model.history_["validation_loss"].min())
    complete = bool(observed.all())
    n_components = min(k, matrix.shape[0] - 1, matrix.shape[1])
    pca = evaluate.pca_embedding(matrix, n_components, seed) if complete else None
    if pca is not None:
        metrics["distance_preservation"] = {
            "factorized_embedding": evaluate.distance_preservation(matrix, embeddings, seed=seed),
            f"pca_{n_components}": evaluate.distance_preservation(matrix, pca, seed=seed),
        }
    if labels is not None and pca is not None:
        scores = {
            "factorized_embedding": evaluate.knn_classification(
                embeddings, labels, n_neighbors=n_neighbors, n_repeats=n_repeats, seed=seed
            ),
            f"pca_{n_components}": evaluate.knn_classification(
                pca, labels, n_neighbors=n_neighbors, n_repeats=n_repeats, seed=seed
            ),
        }
        out.write_table(
            pd.DataFrame(
                [
                    {"method": name, "split": split, "accuracy": accuracy}
                    for name, score in scores.items()
                    for split, accuracy in enumerate(score.accuracies)
                ]
            ),
            "knn_scores",
        )
        metrics["knn_accuracy"] = {
            name: {"mean": score.mean, "sd": score.sd} for name, score in scores.items()
        }
        metrics["knn_chance"] = scores["factorized_embedding"].chance
        out.save_figure(_embedding_figure(embeddings, pca, labels, k), "sample_embedding")
    out.save_figure(pl.reconstruction(matrix, reconstructed), "reconstruction")
    out.save_figure(_history_figure(model.history_), "training")
    return metrics


def _history_figure(history: pd.DataFrame) -> Figure:
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.subplots()
    for column in ("train_loss", "validation_loss"):
        if column in history:
            axes.plot(history["epoch"], history[column], label=column.replace("_", " "))
    axes.set_xlabel("epoch")
    axes.set_ylabel("mean squared error")
    axes.set_yscale("log")
    axes.legend()
    return figure


@dataclass(frozen=True)
class DemoSettings:
    """Settings of :func:`demo`; ``quick`` trades accuracy for a run of well under a minute."""

    quick: bool = False
    seed: int = 0
    max_epochs: int | None = None

    @property
    def n_genes(self) -> int:
        """Most variable genes used for the embedding (all 2000 shipped, 500 when quick)."""
        return 500 if self.quick else 2000

    @property
    def epochs(self) -> int:
        """Training epochs (an upper bound: early stopping on held-out entries)."""
        if self.max_epochs is not None:
            return self.max_epochs
        return 40 if self.quick else 200

    #: Adam learning rate. NCI60 has only ~126,000 entries, i.e. 13 minibatches per epoch, so
    #: the paper's 1e-3 (tuned for TCGA, ~10^4 times more entries per epoch) barely moves the
    #: sample embeddings in a few hundred epochs; 1e-2 converges in tens of epochs.
    learning_rate: float = 1e-2

    @property
    def n_repeats(self) -> int:
        """Random 80/20 splits of the kNN benchmark."""
        return 10 if self.quick else 50


def demo(
    out: str | Path | ResultFolder,
    settings: DemoSettings | None = None,
    *,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the main job on the embedded NCI60 data (64 cell lines, 9 cancer types).

    Tissue specificity (Tau on linear-scale ratios ``2**x``, Wasserstein distances on the log2
    ratios) of all 2000 shipped genes per cancer type, then factorized embeddings of the cell
    lines benchmarked with 5-nearest-neighbour classification of cancer type against PCA of the
    same dimension. Writes everything into ``out`` (a folder path or a
    :class:`~omicsembed.io.ResultFolder`) and returns the summary.
    """
    from omicsembed.datasets import nci60

    settings = settings or DemoSettings()
    started = time.perf_counter()
    folder = out if isinstance(out, ResultFolder) else ResultFolder(out)
    adata = _labelled(nci60(), "cancer_type")
    tissue = tissue_specificity_job(adata, folder, groupby="cancer_type", unlog_base=2.0)
    subset = adata[:, np.sort(pp.highly_variable(adata, settings.n_genes))].copy()
    model = FactorizedEmbedding(
        max_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        seed=settings.seed,
        progress=progress,
    )
    embedding = factorized_embedding_job(
        subset,
        folder,
        groupby="cancer_type",
        model=model,
        n_repeats=settings.n_repeats,
        seed=settings.seed,
    )
    summary = {
        "job": "demo",
        "dataset": "NCI60 (ISLP 0.6.0): 63 labelled cell lines x 2000 genes, 9 cancer types",
        "settings": {
            "quick": settings.quick,
            "seed": settings.seed,
            "genes_for_embedding": settings.n_genes,
            "model": model.settings.__dict__,
        },
        "tissue_specificity": tissue,
        "factorized_embedding": embedding,
        "versions": _versions(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    folder.write_json(summary, "summary")
    return summary


@dataclass(frozen=True)
class ExplainSettings:
    """Settings of :func:`explain_job` (defaults from Hess et al. 2020).

    Attributes
    ----------
    models
        Generative models to train and explain: ``"vae"`` (Bernoulli VAE) and/or ``"dbm"``.
    n_select
        Gene-set sizes (the stepwise selection is run once for the largest; smaller sets are
        its first steps).
    quantile
        Dichotomisation quantile per gene.
    size_factors
        Divide each cell by its size factor before the dichotomisation (DESeq2's
        ``poscounts`` median of ratios, :func:`omicsembed.pp.size_factors`, which works on
        sparse single-cell counts). None: when the data are integer counts (not for data that
        are already normalised, such as tasic2016).
    test_fraction
        Share of cells held out (the paper: 36.8 %).
    n_synthetic, n_random, n_transfer_seeds
        Synthetic cells, random gene sets and label-transfer seeds of the ranking.
    epochs
        Training epochs of both models (None: each model's default).
    dbm_epochs
        The DBM's epochs, overriding ``epochs`` (e.g. 100 for the Tasic protocol of
        ``tests/test_explain_tasic.py``).
    vae_learning_rate
        Adam learning rate of the VAE (None: 1e-4, the paper's §2.4; 1e-3 reaches the same
        optimum in about 150 instead of over 1,000 epochs on the Tasic data).
    n_initializations
        Models trained per kind and repetition (seeds ``first, first + 1, ...``); the best by
        energy statistic is explained.
    n_repetitions
        Independent repetitions of training, selection and label transfer, each with its own
        model seeds (``first = seed + repetition · n_initializations``) and the same random
        gene sets and label-transfer seeds: a single run's rank among random gene sets moves
        a lot with the training seed, so the report gives the median over repetitions
        (Hess et al. 2020 §2.6 report one run; 3 repetitions by default).
    energy_every
        As in the paper, every this many epochs the synthetic cells of each model are scored
        against the held-out cells by the energy statistic
        (:class:`~omicsembed.explain.EnergyStatisticMonitor`, 2,000 cells drawn with ``seed``
        for every model); the best epoch of the best initialisation is explained. A model
        trained for fewer epochs is scored once, trained.
    monitor_every
        Explain the model every this many epochs during training (and at its last), for the
        selection, top patterns and pattern maps over epochs of the first repetition (the
        paper's Fig. 3–5; None: no monitoring).
    gibbs_schedule
        Layer order in the Gibbs sweeps of the DBM's fine-tuning particles (see
        :class:`~omicsembed.models.DeepBoltzmannMachine`): ``"blocked"`` (exact Gibbs) or
        ``"synchronous"`` (exactly BoltzmannMachines.jl, the authors' training).
    seed
        Seed of the split, the models and the selections.

    """

    models: tuple[str, ...] = ("vae",)
    n_select: tuple[int, ...] = (8, 12)
    quantile: float = 0.5
    size_factors: bool | None = None
    test_fraction: float = 0.368
    n_synthetic: int = 10_000
    n_random: int = 100
    n_transfer_seeds: int = 10
    epochs: int | None = None
    dbm_epochs: int | None = None
    vae_learning_rate: float | None = None
    n_initializations: int = 1
    n_repetitions: int = 3
    energy_every: int = 10
    monitor_every: int | None = 10
    gibbs_schedule: Literal["blocked", "synchronous"] = "blocked"
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the settings, so that a bad one fails before any training.

        Raises
        ------
        InvalidInputError
            No models or gene-set sizes, a model or gene-set size given twice, an unknown
            Gibbs schedule, a count below 1 (``n_synthetic`` below 2), a quantile outside
            [0, 1) (at 1 every gene would be 0), a test fraction outside (0, 1), or a seed that
            is not an int in [0, 2**32).

        """
        if len(self.models) == 0:
            raise InvalidInputError("give at least one model ('vae' or 'dbm')")
        if len(self.n_select) == 0:
            raise InvalidInputError("give at least one gene-set size (n_select)")
        named: tuple[tuple[str, list[str]], ...] = (
            ("model", [str(m) for m in self.models]),
            ("n_select", [str(k) for k in self.n_select]),
        )
        for name, values in named:
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise InvalidInputError(
                    f"{name} {', '.join(repeated)} is given more than once; give each once"
                )
        if self.gibbs_schedule not in ("blocked", "synchronous"):
            raise InvalidInputError(
                f"gibbs_schedule must be 'blocked' or 'synchronous', got {self.gibbs_schedule!r}"
            )
        # a setting of a model that is not trained would be silently ignored
        for name, model in (("dbm_epochs", "dbm"), ("vae_learning_rate", "vae")):
            if getattr(self, name) is not None and model not in self.models:
                raise InvalidInputError(f"{name} is given but no {model!r} model is trained")
        counts = {f"n_select {k}": k for k in self.n_select}
        counts |= {
            "n_random": self.n_random,
            "n_transfer_seeds": self.n_transfer_seeds,
            "n_initializations": self.n_initializations,
            "n_repetitions": self.n_repetitions,
            "energy_every": self.energy_every,
            "epochs": 1 if self.epochs is None else self.epochs,
            "dbm_epochs": 1 if self.dbm_epochs is None else self.dbm_epochs,
            "monitor_every": 1 if self.monitor_every is None else self.monitor_every,
        }
        for name, value in counts.items():
            check_count(name, value, 1)
        check_count("n_synthetic", self.n_synthetic, 2)  # the energy statistic needs two cells
        if not 0.0 <= self.quantile < 1.0:
            raise InvalidInputError(
                f"quantile must be in [0, 1), got {self.quantile} (at 1 every gene would be 0)"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise InvalidInputError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        # the seed also seeds scikit-learn (NMF, PCA of the energy statistic): its range
        int_seed(self.seed, below=SKLEARN_SEEDS)


def _generative_model(
    kind: str, settings: ExplainSettings, seed: int, progress: bool | None
) -> Any:
    options: dict[str, Any] = {"seed": seed, "progress": progress}
    epochs = settings.epochs
    if kind == "vae":
        from omicsembed.models import BernoulliVAE

        if epochs is not None:
            options["max_epochs"] = epochs
        if settings.vae_learning_rate is not None:
            options["learning_rate"] = settings.vae_learning_rate
        return BernoulliVAE(**options)
    if kind == "dbm":
        from omicsembed.models import DeepBoltzmannMachine

        if settings.dbm_epochs is not None:
            epochs = settings.dbm_epochs
        if epochs is not None:
            options["epochs"] = epochs
        return DeepBoltzmannMachine(gibbs_schedule=settings.gibbs_schedule, **options)
    raise InvalidInputError(f"models must be 'vae' or 'dbm', got {kind!r}")


def _explain_expression(
    adata: AnnData, layer: str | None, size_factors: bool | None
) -> tuple[NDArray[np.float64], bool]:
    """Return the matrix :func:`explain_job` dichotomises and whether size factors divided it.

    ``size_factors=None`` divides integer counts (integers, some above 1) by DESeq2's
    ``poscounts`` size factors and leaves normalised or binary data as they are.
    """
    expression = np.asarray(dense_matrix(adata, layer=layer), dtype=np.float64)
    if size_factors is None:
        size_factors = bool(
            expression.size and np.all(expression == np.round(expression)) and expression.max() > 1
        )
    if size_factors:
        expression = pp.normalize_size_factors(expression, method="poscounts")
    return expression, size_factors


def _ranking_figure(rankings: dict[tuple[str, int, str], list[Any]]) -> Figure:
    """One panel per (method, gene-set size, label column): :func:`pl.gene_set_ranking`."""
    # the models first, NMF (the baseline) last; as many panels a row as fit 20 inches
    panels = sorted(rankings.items(), key=lambda item: item[0][0] == "nmf")
    width = 1.6 + 1.1 * max(len(runs) for runs in rankings.values())
    figure, axes = pl.panel_grid(len(panels), min(4, max(1, int(20 // width))), (width, 4.2))
    for ax, ((method, size, column), runs) in zip(axes, panels, strict=True):
        pl.gene_set_ranking(
            [r.selected_index for r in runs],
            np.stack([r.random_indices for r in runs]),
            title=f"{method}, {size} genes, {column}",
            ax=ax,
        )
    return figure


def _epoch_of_weights(model: Any) -> int:
    """Return the epoch whose parameters a freshly trained DBM or Bernoulli VAE holds.

    A DBM keeps its last epoch's. The VAE's training restores its best epoch's weights: the
    first with the lowest validation loss (training loss without a validation split).
    """
    history = model.history_  # the VAE's losses per epoch; a DBM's monitor records
    if isinstance(history, pd.DataFrame) and len(history):
        losses = history.get("validation_loss")
        if losses is None or losses.isna().all():
            losses = history["train_loss"]
        return int(history["epoch"].iloc[int(np.nanargmin(losses.to_numpy(float)))])
    return int(model.epochs)


@dataclass
class _Initializations:
    """What :func:`_train_initializations` gives :func:`explain_job`."""

    seed: int
    model: Any
    monitor: Any
    rows: list[dict[str, Any]]
    curves: list[pd.DataFrame]


def _train_initializations(
    kind: str,
    settings: ExplainSettings,
    train_cells: AnnData,
    test_data: NDArray[Any],
    *,
    first_seed: int,
    monitor: bool,
    progress: bool | None,
) -> _Initializations:
    """Train ``settings.n_initializations`` models of ``kind`` (seeds ``first_seed, ...``).

    Each is scored by the energy statistic against the held-out cells every
    ``settings.energy_every`` epochs (once, trained, if it trains for fewer) and, with
    ``monitor``, explained every ``settings.monitor_every`` epochs and at its last one.
    Returns the seed, best-epoch snapshot and monitor of the initialisation with the lowest
    energy statistic, one row per initialisation and the energy curves.
    """
    from omicsembed.explain import EnergyStatisticMonitor, SelectionMonitor

    candidates = []
    rows: list[dict[str, Any]] = []
    curves: list[pd.DataFrame] = []
    for index in range(settings.n_initializations):
        seed = first_seed + index
        selections = None
        if settings.monitor_every and monitor:
            selections = SelectionMonitor(
                every=settings.monitor_every,
                n_synthetic=min(settings.n_synthetic, 2_000),
                n_select=max(settings.n_select),
                seed=seed,
                feature_names=list(train_cells.var_names),
            )
        energy = EnergyStatisticMonitor(
            test_data,
            every=settings.energy_every,
            n_synthetic=min(settings.n_synthetic, 2_000),
            seed=settings.seed,
        )
        monitors = [m for m in (energy, selections) if m is not None]

        def each(model: Any, epoch: int, monitors: list[Any] = monitors) -> None:
            for m in monitors:
                m(model, epoch)

        model = _generative_model(kind, settings, seed, progress)
        model.fit(train_cells, monitor=each)
        trained = _epoch_of_weights(model)
        if not energy.records:
            energy.score(model, trained)
        if selections is not None and trained not in selections.explanations:
            # the selection of the trained model too, when training ended between monitored
            # epochs (or before the first one), under the epoch its parameters come from
            selections.record(model, trained)
        rows.append(
            {
                "model": kind,
                "seed": seed,
                "best_epoch": energy.best_epoch,
                "energy_statistic": energy.best_energy,
            }
        )
        curves.append(energy.to_frame().assign(seed=seed))
        candidates.append((energy.best_energy, seed, energy.best_model, selections))
    _, seed, model, selections = min(candidates, key=lambda c: c[0])
    return _Initializations(seed, model, selections, rows, curves)


def explain_job(
    adata: AnnData,
    out: ResultFolder,
    *,
    label_columns: tuple[str, ...] = (),
    layer: str | None = None,
    settings: ExplainSettings | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train generative models on dichotomised data and explain them with log-linear models.

    Hess, Hackenberg & Binder 2020: genes are dichotomised at a quantile, a share of the cells
    is held out (36.8 % as in the paper), deep Boltzmann machines and/or Bernoulli VAEs are
    trained on the rest (the epoch and initialisation whose synthetic cells are closest to the
    held-out cells by the energy statistic are kept), synthetic cells are drawn, genes are selected
    stepwise by log-linear G², and the selections are judged by label transfer
    (Davies–Bouldin index against random gene sets of the same size, §2.6) with NMF gene
    selection as a baseline.

    Parameters
    ----------
    adata
        Cells × genes expression (non-negative scale; integer counts are divided by size
        factors, see :class:`ExplainSettings`, then every gene is dichotomised here).
    out
        Result folder. Per model and repetition: ``<model>_selection`` (repetition, seed,
        step, feature, latent unit, G²), ``<model>_energy_over_epochs`` (epoch, energy
        statistic, repetition, seed), ``initializations`` (best epoch and energy statistic per
        trained model), ``label_transfer`` (per model / NMF, gene-set size and label column;
        ``label_transfer.png``: every selection's index among the random sets'),
        ``gene_overlap`` (selected genes shared between models); over the repetitions:
        ``label_transfer_over_repetitions`` (median, best and worst rank, median number of
        random sets beaten); for the first repetition: ``<model>_patterns``,
        ``<model>_pattern_map`` (+ PNG), ``model/<model>`` (the explained model at its best
        epoch; ``load`` it with its class) and, when monitored (every initialisation of the
        first repetition is; the chosen one's are written),
        ``<model>_selection_over_epochs`` (+ heat-map PNG), ``<model>_patterns_over_epochs``
        (the observed top patterns per epoch) and ``<model>_pattern_maps_over_epochs.png``.
    label_columns
        ``.obs`` columns with labels for the label transfer (e.g. ``cell_type``, ``class``).
    layer
        Use this layer instead of ``.X``.
    settings
        :class:`ExplainSettings`.
    progress
        Progress bars.

    Returns
    -------
    dict
        Headline results (selected genes per model, overlap, energy statistics, ranks).

    Raises
    ------
    InvalidInputError
        Unknown models, Gibbs schedule or label columns, label columns with fewer than two
        labels or missing labels among the training cells, gene-set sizes above the number of
        genes or of genes that vary once dichotomised, synthetic cells, epochs or random gene
        sets beyond this machine's memory (all before any training), or data the models
        reject.

    """
    from omicsembed.explain import explain, nmf_gene_selection, rank_against_random_gene_sets
    from omicsembed.explain.label_transfer import check_ranking_memory

    settings = settings or ExplainSettings()
    # the models check their names and settings as they are built: all of them before any
    # training, so that no model is trained in vain
    models = [
        _generative_model(kind, settings, settings.seed, progress) for kind in settings.models
    ]
    for column in label_columns:
        if column not in adata.obs.columns:
            raise InvalidInputError(
                f"label column {column!r} not in .obs; available: {list(adata.obs.columns)}"
            )
    check_unique_genes(adata.var_names)
    if max(settings.n_select) > adata.n_vars:
        raise InvalidInputError(
            f"cannot select {max(settings.n_select)} genes: the data have {adata.n_vars}"
        )
    expression, normalise = _explain_expression(adata, layer, settings.size_factors)
    binary = np.asarray(pp.dichotomize(expression, quantile=settings.quantile))
    order = np.random.default_rng(settings.seed).permutation(binary.shape[0])
    n_test = round(settings.test_fraction * binary.shape[0])
    test_rows, train_rows = np.sort(order[:n_test]), np.sort(order[n_test:])
    varying = np.ptp(binary[train_rows], axis=0) > 0
    if varying.sum() < max(settings.n_select):
        raise InvalidInputError(
            f"only {int(varying.sum())} of {binary.shape[1]} genes vary among the training cells "
            f"once dichotomised (quantile {settings.quantile}); {max(settings.n_select)} are to "
            "be selected: constant genes carry no pattern"
        )
    # the largest arrays, sized before any training: each model's synthetic cells and the
    # label transfer's scores of the random gene sets
    for model in models:
        check_memory(
            model.synthetic_bytes(settings.n_synthetic, binary.shape[1]),
            f"{int(settings.n_synthetic):,} synthetic cells of {binary.shape[1]} genes",
        )
    if label_columns:
        check_ranking_memory(settings.n_random)
    # the labels of the training cells are transferred: checked there, before any training
    for column in label_columns:
        labels = adata.obs[column].iloc[train_rows]
        if labels.isna().any():
            missing = list(labels.index[labels.isna()][:5])
            raise InvalidInputError(
                f"label column {column!r} has no label for training cells {missing}; give "
                "every cell a label or leave the column out"
            )
        if labels.nunique() < 2:
            raise InvalidInputError(
                f"label column {column!r} has fewer than two distinct labels among the "
                f"{len(labels)} training cells; the label transfer's Davies–Bouldin index "
                "needs at least two"
            )
    train_data, test_data = binary[train_rows], binary[test_rows]
    genes = [str(g) for g in adata.var_names]
    # the models keep the genes' names (saved with them)
    train_cells = AnnData(train_data.astype(np.float32), var=pd.DataFrame(index=genes))
    largest = max(settings.n_select)

    # every ranking by (method, gene-set size, label column), for the figure
    rankings: dict[tuple[str, int, str], list[Any]] = {}

    def ranking_rows(method: str, gene_sets: dict[int, np.ndarray], synthetic: np.ndarray) -> list:
        rows = []
        for size, gene_set in gene_sets.items():
            for column in label_columns:
                ranking = rank_against_random_gene_sets(
                    train_data,
                    adata.obs[column].to_numpy()[train_rows],
                    synthetic,
                    gene_set,
                    n_random=settings.n_random,
                    n_transfer_seeds=settings.n_transfer_seeds,
                    seed=settings.seed,
                )
                rows.append(
                    {"method": method, "n_select": size, "labels": column, **ranking.to_dict()}
                )
                rankings.setdefault((method, size, column), []).append(ranking)
        return rows

    label_rows: list[dict[str, Any]] = []
    initializations: list[dict[str, Any]] = []
    curves: dict[str, list[pd.DataFrame]] = {kind: [] for kind in settings.models}
    selections: dict[str, list[pd.DataFrame]] = {kind: [] for kind in settings.models}
    selected: dict[str, list[str]] = {}
    overlap: list[dict[str, Any]] = []
    # NMF selects from the data (once), and is ranked with each repetition's synthetic cells
    nmf = {
        k: nmf_gene_selection(train_data, k, seed=settings.seed)
        for k in (settings.n_select if label_columns else ())
    }
    for repetition in range(settings.n_repetitions):
        chosen_genes: dict[str, list[str]] = {}
        for kind in settings.models:
            trained = _train_initializations(
                kind,
                settings,
                train_cells,
                test_data,
                first_seed=settings.seed + repetition * settings.n_initializations,
                monitor=repetition == 0,
                progress=progress,
            )
            seed, model, monitor = trained.seed, trained.model, trained.monitor
            initializations += [{"repetition": repetition, **row} for row in trained.rows]
            curves[kind] += [curve.assign(repetition=repetition) for curve in trained.curves]
            synthetic, _ = model.generate(settings.n_synthetic, seed=seed)
            explanation = explain(
                model, settings.n_synthetic, largest, feature_names=genes, seed=seed
            )
            chosen_genes[kind] = explanation.selected_features
            frame = explanation.to_frame()
            frame.insert(0, "seed", seed)
            frame.insert(0, "repetition", repetition)
            selections[kind].append(frame)
            if repetition == 0:
                selected[kind] = explanation.selected_features
                model.save(out.file("model") / kind)
                out.write_table(explanation.pattern_frame(), f"{kind}_patterns")
                out.write_table(explanation.map_frame(), f"{kind}_pattern_map")
                out.save_figure(explanation.plot_map(), f"{kind}_pattern_map")
                if monitor is not None and monitor.explanations:
                    out.write_table(monitor.table(), f"{kind}_selection_over_epochs")
                    out.write_table(monitor.pattern_table(), f"{kind}_patterns_over_epochs")
                    out.save_figure(monitor.heatmap(), f"{kind}_selection_over_epochs")
                    out.save_figure(monitor.pattern_maps(), f"{kind}_pattern_maps_over_epochs")
            chosen = np.asarray(explanation.selection.selected, dtype=np.int64)
            rows = ranking_rows(kind, {k: chosen[:k] for k in settings.n_select}, synthetic)
            if kind == settings.models[0]:
                rows += ranking_rows("nmf", nmf, synthetic)
            label_rows += [{"repetition": repetition, "seed": seed, **row} for row in rows]
        overlap += [
            {
                "repetition": repetition,
                "model_a": a,
                "model_b": b,
                "n_select": k,
                "shared": len(set(chosen_genes[a][:k]) & set(chosen_genes[b][:k])),
            }
            for i, a in enumerate(settings.models)
            for b in settings.models[i + 1 :]
            for k in settings.n_select
        ]
    for kind in settings.models:
        out.write_table(pd.concat(curves[kind], ignore_index=True), f"{kind}_energy_over_epochs")
        out.write_table(pd.concat(selections[kind], ignore_index=True), f"{kind}_selection")
    out.write_table(pd.DataFrame(initializations), "initializations")
    over_repetitions: list[dict[str, Any]] = []
    if label_rows:
        table = pd.DataFrame(label_rows)
        out.write_table(table, "label_transfer")
        summary = (
            table.groupby(["method", "n_select", "labels"], sort=False)
            .agg(
                repetitions=("rank", "size"),
                median_rank=("rank", "median"),
                best_rank=("rank", "min"),
                worst_rank=("rank", "max"),
                median_beaten=("beaten", "median"),
                n_random=("n_random", "first"),
                median_selected_index=("selected_index", "median"),
            )
            .reset_index()
        )
        out.write_table(summary, "label_transfer_over_repetitions")
        out.save_figure(_ranking_figure(rankings), "label_transfer")
        over_repetitions = summary.to_dict(orient="records")
    if overlap:
        out.write_table(pd.DataFrame(overlap), "gene_overlap")
    return {
        "models": list(settings.models),
        "n_train": int(train_rows.size),
        "n_test": int(test_rows.size),
        "size_factors": normalise,
        "selected_genes": selected,
        "gene_overlap": overlap,
        "initializations": initializations,
        "label_transfer": label_rows,
        "label_transfer_over_repetitions": over_repetitions,
        "settings": settings.__dict__,
        "versions": _versions(),
    }


def ldvae_job(
    adata: AnnData,
    out: ResultFolder,
    *,
    groupby: str | None = None,
    layer: str | None = None,
    batch_key: str | None = None,
    model: LDVAE | None = None,
    seed: int = 0,
    heldout_fraction: float = 0.1,
) -> dict[str, Any]:
    """Fit an LDVAE to counts, measure held-out reconstruction, write factors and loadings.

    Svensson, Gayoso, Yosef & Pachter (2020): a share of the cells (10 %, seeded) is held
    out, the LDVAE is trained on the rest, and the held-out cells' negative log-likelihood
    −log p(x | z, l) is the reconstruction error. The latent representation of all cells,
    the gene loadings and the factors' variance explained (ordering of factors, §3) are
    written with the paper's Fig. 1 plots.

    Parameters
    ----------
    adata
        Cells × genes of raw counts (non-negative integers in ``.X`` or ``layer``).
    out
        Result folder; receives ``latent`` (cell, label, Z_0 …), ``loadings`` (gene, Z_0 …),
        ``factor_variance`` (factor, variance, variance_explained, rank), ``history``,
        ``heldout_reconstruction`` (cell, negative log-likelihood), figures
        ``latent_density.png`` and ``loadings.png`` (the two factors with the largest
        variance), and the model in ``model/``.
    groupby
        ``.obs`` column with cell labels for the plots and the latent table (optional).
    layer
        Use this layer instead of ``.X``.
    batch_key
        ``.obs`` column of technical batches (one-hot into the decoder, library prior per
        batch); the latent table then has a ``batch`` column.
    model
        An unfitted :class:`omicsembed.models.LDVAE` with the settings to use (default
        settings and ``seed`` when None).
    seed
        Seed of the held-out split (and of the default model and Monte-Carlo draws).
    heldout_fraction
        Share of cells held out for the reconstruction error, in (0, 0.5].

    Returns
    -------
    dict
        Headline metrics: fit seconds, epochs, final losses, held-out NLL per cell (mean and
        per gene), variance explained per factor in decreasing order.

    Raises
    ------
    InvalidInputError
        Unknown ``groupby`` or ``batch_key`` column, fewer than 10 cells, a bad
        ``heldout_fraction``, a seed that is not an int in [0, 2**63), or counts or batches the
        model rejects (negative, non-integer, missing labels, ...).

    """
    from omicsembed.models import LDVAE

    for column in (groupby, batch_key):
        if column is not None and column not in adata.obs.columns:
            raise InvalidInputError(
                f"column {column!r} not in the cell annotations; available: "
                f"{list(adata.obs.columns)}"
            )
    if not 0.0 < heldout_fraction <= 0.5:
        raise InvalidInputError(f"heldout_fraction must be in (0, 0.5], got {heldout_fraction}")
    n_cells = adata.n_obs
    if n_cells < 10:
        raise InvalidInputError(f"the LDVAE job needs at least 10 cells, got {n_cells}")
    int_seed(seed, below=TORCH_SEEDS)
    model = model or LDVAE(seed=seed)
    order = np.random.default_rng([seed, 10]).permutation(n_cells)
    n_heldout = max(1, round(heldout_fraction * n_cells))
    heldout, training = np.sort(order[:n_heldout]), np.sort(order[n_heldout:])
    started = time.perf_counter()
    model.fit(adata[training].copy(), layer=layer, batch_key=batch_key)
    fit_seconds = time.perf_counter() - started
    nll = model.reconstruction_error(adata[heldout], layer=layer, seed=seed)
    latent = model.get_latent_representation(adata, layer=layer, seed=seed)
    variance = model.factor_variance(adata, layer=layer, seed=seed)
    loadings = model.get_loadings()
    factors = list(loadings.columns)
    cells = adata.obs_names.astype(str)
    labels = adata.obs[groupby].to_numpy() if groupby is not None else None

    latent_table = pd.DataFrame(latent, columns=factors)
    latent_table.insert(0, "cell", cells)
    if labels is not None and groupby is not None:
        latent_table.insert(1, groupby, pd.Series(labels).astype("string"))
    if batch_key is not None and batch_key != groupby:
        batches = adata.obs[batch_key].to_numpy()
        latent_table.insert(
            latent_table.shape[1] - len(factors), "batch", pd.Series(batches).astype("string")
        )
    loadings_table = loadings.reset_index(names="gene")
    rank = np.empty(len(factors), dtype=np.int64)
    rank[variance.order] = np.arange(1, len(factors) + 1)
    variance_table = pd.DataFrame(
        {
            "factor": factors,
            "variance": np.diag(variance.covariance.to_numpy()),
            "variance_explained": variance.variance_explained,
            "rank": rank,
        }
    )
    out.write_table(latent_table, "latent")
    out.write_table(loadings_table, "loadings")
    out.write_table(variance_table, "factor_variance")
    out.write_table(model.history_, "history")
    out.write_table(
        pd.DataFrame({"cell": cells[heldout], "negative_log_likelihood": nll}),
        "heldout_reconstruction",
    )
    model.save(out.file("model"))
    top = (int(variance.order[0]), int(variance.order[1])) if len(factors) > 1 else None
    if top is not None:
        out.save_figure(pl.latent_density(latent, labels), "latent_density")
        out.save_figure(pl.loadings_scatter(loadings, dims=top), "loadings")

    history = model.history_
    metrics: dict[str, Any] = {
        "n_cells": int(n_cells),
        "n_genes": int(adata.n_vars),
        "n_train": int(training.size),
        "n_heldout": int(heldout.size),
        "n_latent": len(factors),
        "batches": model.batch_categories_,
        "fit_seconds": round(fit_seconds, 2),
        "epochs": len(history),
        "final_train_loss": float(history["train_loss"].iloc[-1]),
        "heldout_reconstruction_error": float(np.mean(nll)),
        "heldout_reconstruction_error_per_gene": float(np.mean(nll) / adata.n_vars),
        "variance_explained": {
            factors[i]: round(float(variance.variance_explained[i]), 4) for i in variance.order
        },
        "settings": model.settings.__dict__,
        "versions": _versions(),
    }
    if "validation_loss" in history:
        metrics["best_validation_loss"] = float(history["validation_loss"].min())
    return metrics
