"""LDVAE: interpretable linear factor model of single-cell counts (scVI with a linear decoder).

Reference: Svensson V, Gayoso A, Yosef N, Pachter L. "Interpretable factor models of single-cell
RNA-seq via variational autoencoders." Bioinformatics 36(11), 3418-3421 (2020). Defaults follow
scvi-tools' ``LinearSCVI`` (n_latent 10, one hidden layer of 128, dropout 0.1, Adam with
learning rate 1e-3 and weight decay 1e-6, minibatches of 128, KL warm-up over 400 epochs,
max_epochs ``min(round(20000 / n_cells · 400), 400)``), including the optional batch
covariate one-hot encoded into the linear decoder with a library-size prior per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from omicsembed._seeds import numpy_rng
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models._base import FittedState, VAEModel, VAESettings
from omicsembed.models._data import (
    RowMatrix,
    Seed,
    count_matrix,
    feature_names,
    torch_generator,
)
from omicsembed.nn.ldvae import LatentDistribution, LDVAENetwork

__all__ = ["LDVAE", "FactorVariance", "LDVAESettings"]

Counts: TypeAlias = RowMatrix


@dataclass
class LDVAESettings(VAESettings):
    """Hyperparameters of :class:`LDVAE` (defaults of scvi-tools' ``LinearSCVI``)."""

    n_latent: int = 10
    n_hidden: int = 128
    dropout_rate: float = 0.1
    latent_distribution: str = "normal"
    use_batch_norm: bool = True
    use_observed_library: bool = False
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    batch_size: int = 128
    max_epochs: int | None = None
    n_epochs_kl_warmup: int | None = 400
    early_stopping_patience: int | None = None

    def check(self) -> None:
        """Validate (see :meth:`VAESettings.check`); also sizes, dropout and latent choice."""
        super().check()
        for name, value in {"n_latent": self.n_latent, "n_hidden": self.n_hidden}.items():
            if value < 1:
                raise InvalidInputError(f"{name} must be ≥ 1, got {value}")
        if self.batch_size < 2:
            raise InvalidInputError("batch_size must be ≥ 2 (batch norm needs two cells)")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise InvalidInputError(f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        if self.latent_distribution not in ("normal", "ln"):
            raise InvalidInputError(
                f"latent_distribution must be 'normal' or 'ln', got {self.latent_distribution!r}"
            )


@dataclass
class LDVAEState(FittedState):
    """Fitted state of :class:`LDVAE` besides the weights.

    Attributes
    ----------
    library_log_mean, library_log_var
        Prior mean and variance of the log library size, one per batch.
    batch_key
        The ``.obs`` column the batches came from (None: given as an array, or no batches).
    batch_categories
        Batch names in code order (empty: a single batch).
    batch_frequencies
        Fraction of training cells per batch (for drawing synthetic cells).

    """

    library_log_mean: list[float] = field(default_factory=lambda: [0.0])
    library_log_var: list[float] = field(default_factory=lambda: [1.0])
    batch_key: str | None = None
    batch_categories: list[str] = field(default_factory=list)
    batch_frequencies: list[float] = field(default_factory=lambda: [1.0])


@dataclass
class FactorVariance:
    """Variance of the latent factors over cells (see :meth:`LDVAE.factor_variance`).

    Attributes
    ----------
    covariance : pandas.DataFrame
        (n_latent, n_latent) covariance of the latent representations, factors as labels.
    variance_explained : np.ndarray
        float64 (n_latent,), each factor's variance over the total variance (sums to 1).
    order : np.ndarray
        int64 (n_latent,), factor indices by decreasing variance.
    eigenvalues : np.ndarray
        float64 (n_latent,), eigenvalues of the covariance, decreasing.
    eigenvectors : np.ndarray
        float64 (n_latent, n_latent), column i is the principal axis of ``eigenvalues[i]``.
    axis_variance_explained : np.ndarray
        float64 (n_latent,), ``eigenvalues / eigenvalues.sum()``.

    """

    covariance: pd.DataFrame
    variance_explained: np.ndarray
    order: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    axis_variance_explained: np.ndarray


class LDVAE(VAEModel[LDVAESettings, LDVAENetwork, LDVAEState]):
    """Linearly decoded VAE (LDVAE) for single-cell counts: interpretable gene loadings.

    scVI's generative model with a linear decoder (Svensson et al. 2020): ε ~ N(0, I), latent
    z = ε (``"normal"``) or z = softmax(ε) (``"ln"``, logistic normal); library size
    l ~ LogNormal(μ_l, σ²_l) with μ_l, σ²_l the mean and variance of the log library sizes of
    the cells (per batch), or l = the observed total; ``px_scale = softmax(BN(W [z, b]))``
    with b the one-hot batch (when there are batches); counts x_g ~ NB(mean l · px_scale_g,
    inverse dispersion θ_g). The encoder is one hidden layer (batch norm, ReLU, dropout) on
    log1p(x). Training maximises the ELBO with KL warm-up of the latent term through
    :func:`omicsembed.train.loop.train` (shuffled minibatches of cells read row by row from
    dense or CSR matrices, validation −ELBO with full KL weight, optional early stopping,
    best-weight restoration, checkpoints and resume).

    Parameters
    ----------
    n_latent
        Number of factors (default 10).
    n_hidden
        Width of the encoder hidden layer (default 128).
    dropout_rate
        Encoder dropout, in [0, 1) (default 0.1).
    latent_distribution
        ``"normal"`` or ``"ln"``.
    use_batch_norm
        Batch norm on the decoded parameters ``W z`` (default True, as LinearSCVI).
    use_observed_library
        Use the observed total counts as library size instead of inferring it.
    learning_rate, weight_decay
        Adam settings (1e-3, 1e-6).
    batch_size
        Cells per minibatch (128).
    max_epochs
        Passes over the training cells; None: ``min(round(20000 / n_cells · 400), 400)``.
    n_epochs_kl_warmup
        The KL weight of the latent term rises linearly from 0 at epoch 0 to 1 at this epoch
        (None or 0: no warm-up).
    validation_fraction
        Fraction of cells held out (seeded) for the validation loss; 0 monitors the training
        loss.
    early_stopping_patience
        Epochs without improvement of the monitored loss before stopping (None: off).
    checkpoint_every
        Epochs between checkpoints when ``fit(checkpoint_dir=...)`` is given.
    seed
        Seed of initialisation, training noise, shuffling and split.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    progress
        Show a progress bar (None: ``omicsembed.settings.progress_bar``).

    Attributes
    ----------
    network_ : LDVAENetwork
        The trained torch module.
    history_ : pandas.DataFrame
        −ELBO per cell per epoch (``train_loss`` with the warm-up weight, ``validation_loss``
        with full weight).
    batch_categories_ : list of str
        Batches the model was fitted on (empty: one batch).

    Raises
    ------
    InvalidInputError
        Invalid settings.

    Examples
    --------
    >>> model = LDVAE(n_latent=5, max_epochs=50, progress=False).fit(adata)  # doctest: +SKIP
    >>> loadings = model.get_loadings()  # genes × factors  # doctest: +SKIP
    >>> LDVAE().fit(adata, batch_key="batch")  # doctest: +SKIP

    """

    model_name = "LDVAE"
    state_class = LDVAEState
    uses_batch_norm = True

    def __init__(
        self,
        *,
        n_latent: int = 10,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        latent_distribution: LatentDistribution = "normal",
        use_batch_norm: bool = True,
        use_observed_library: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        batch_size: int = 128,
        max_epochs: int | None = None,
        n_epochs_kl_warmup: int | None = 400,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = None,
        checkpoint_every: int = 10,
        seed: int = 0,
        device: str = "auto",
        progress: bool | None = None,
    ) -> None:
        settings = LDVAESettings(
            n_latent=int(n_latent),
            n_hidden=int(n_hidden),
            dropout_rate=float(dropout_rate),
            latent_distribution=str(latent_distribution),
            use_batch_norm=bool(use_batch_norm),
            use_observed_library=bool(use_observed_library),
            learning_rate=float(learning_rate),
            weight_decay=float(weight_decay),
            batch_size=int(batch_size),
            max_epochs=None if max_epochs is None else int(max_epochs),
            n_epochs_kl_warmup=None if n_epochs_kl_warmup is None else int(n_epochs_kl_warmup),
            validation_fraction=float(validation_fraction),
            early_stopping_patience=early_stopping_patience,
            checkpoint_every=int(checkpoint_every),
            seed=int(seed) if isinstance(seed, np.integer) else seed,  # checked below
        )
        super().__init__(settings, device=device, progress=progress)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: AnnData | Counts,
        *,
        layer: str | None = None,
        batch_key: str | None = None,
        batch: Sequence[Any] | np.ndarray | pd.Series | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        monitor: Callable[[LDVAE, int], None] | None = None,
    ) -> LDVAE:
        """Train on raw counts.

        Parameters
        ----------
        data
            AnnData (counts from ``.X`` or ``layer``) or an (n_cells, n_genes) array / scipy
            sparse matrix of non-negative integer counts (any numeric dtype; sparse input is
            kept sparse and densified one minibatch at a time).
        layer
            AnnData layer holding the counts.
        batch_key
            ``.obs`` column with the batch of every cell (technical covariate one-hot encoded
            into the decoder, library prior per batch).
        batch
            The batch of every cell as an array (instead of ``batch_key``; any hashable
            labels).
        checkpoint_dir
            Write checkpoints there every ``checkpoint_every`` epochs (and when interrupted).
        resume
            Continue from the checkpoint in ``checkpoint_dir``: the run of the same data
            and settings (only ``max_epochs``, ``early_stopping_patience`` and
            ``checkpoint_every`` may differ).
        monitor
            Called as ``monitor(model, epoch)`` after every epoch, the model usable (e.g. an
            :class:`omicsembed.explain.SelectionMonitor`).

        Returns
        -------
        LDVAE
            ``self``. AnnData input also receives ``.obsm["X_ldvae"]`` (float32 (n_cells,
            n_latent) latent representation), ``.varm["ldvae_loadings"]`` (float32 (n_genes,
            n_latent)) and ``.uns["ldvae"]["params"]``.

        Raises
        ------
        InvalidInputError
            Negative, non-integer, NaN or infinite counts (the message names row and gene),
            too few cells, an unknown ``batch_key``, missing batch labels, or a checkpoint
            of another run (other data or settings) or that does not fit.
        ShapeMismatchError
            ``batch`` with a length other than the number of cells.

        """
        matrix = count_matrix(data, layer=layer, what="the training counts")
        s = self.settings
        n_cells, n_genes = matrix.shape
        if n_cells < 4:
            raise InvalidInputError(f"LDVAE needs at least 4 cells, got {n_cells}")
        labels = _batch_labels(data, batch_key, batch, n_cells)
        if labels is None:
            categories: list[str] = []
            codes = np.zeros(n_cells, dtype=np.int64)
        else:
            unique, codes = np.unique(labels, return_inverse=True)
            categories = [str(c) for c in unique]
        n_batch = max(1, len(categories))
        totals = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
        means, variances = [], []
        for code in range(n_batch):
            in_batch = totals[(codes == code) & (totals > 0)]
            log_totals = np.log(in_batch) if in_batch.size else np.zeros(1)
            means.append(float(log_totals.mean()))
            variances.append(max(float(log_totals.var()), 1e-4))
        frequencies = (np.bincount(codes, minlength=n_batch) / n_cells).tolist()
        names = feature_names(data, n_genes, "gene")

        def state(history: list[dict[str, float]]) -> LDVAEState:
            return LDVAEState(
                feature_names=names,
                history=history,
                library_log_mean=means,
                library_log_var=variances,
                batch_key=batch_key if batch is None else None,
                batch_categories=categories,
                batch_frequencies=frequencies,
            )

        max_epochs = s.max_epochs
        if max_epochs is None:
            max_epochs = max(1, min(round(20000 / n_cells * 400), 400))
        torch.manual_seed(s.seed)
        network = self._build_network({"n_genes": n_genes}, state([]))
        self._train_network(
            network.to(self.device),
            matrix,
            max_epochs=max_epochs,
            description="LDVAE",
            batch_codes=codes if categories else None,
            state=state,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            monitor=monitor,
        )
        if isinstance(data, AnnData):
            data.obsm["X_ldvae"] = self._latent(matrix, mc_samples=5000, seed=s.seed)
            data.varm["ldvae_loadings"] = self.get_loadings().to_numpy(dtype=np.float32)
            data.uns["ldvae"] = {"params": self._params()}
        return self

    # ------------------------------------------------------------------ fitted state
    @property
    def batch_categories_(self) -> list[str]:
        """Batches the model was fitted on, in code order (empty: a single batch)."""
        return list(self._fitted()[1].batch_categories)

    def _read(self, data: AnnData | Counts, *, layer: str | None, what: str) -> Counts:
        return count_matrix(data, layer=layer, what=what)

    def _batch_codes(
        self,
        data: AnnData | Counts | None,
        n_cells: int,
        batch: Sequence[Any] | np.ndarray | pd.Series | None,
        transform_batch: Any | None,
    ) -> np.ndarray | None:
        """Batch codes of new cells: ``transform_batch`` for all, ``batch``, or ``.obs``."""
        _, state = self._fitted()
        categories = state.batch_categories
        if not categories:
            if batch is not None or transform_batch is not None:
                raise InvalidInputError("this LDVAE was fitted without batches")
            return None
        if transform_batch is not None:
            return np.full(n_cells, self._batch_code(transform_batch), dtype=np.int64)
        key = state.batch_key if batch is None else None
        if batch is None and (key is None or not isinstance(data, AnnData)):
            raise InvalidInputError(
                f"this LDVAE was fitted with batches {categories}: give batch= (one label per "
                "cell) or transform_batch= (one label for all cells)"
            )
        labels = _batch_labels(data, key, batch, n_cells)
        if labels is None:
            raise InvalidInputError("give batch= for the cells")
        return np.asarray([self._batch_code(label) for label in labels], dtype=np.int64)

    def _batch_code(self, label: Any) -> int:
        categories = self._fitted()[1].batch_categories
        try:
            return categories.index(str(label))
        except ValueError:
            raise InvalidInputError(
                f"unknown batch {label!r}; the model was fitted on batches {categories}"
            ) from None

    def _latent(self, matrix: Counts, *, mc_samples: int, seed: Seed) -> np.ndarray:
        network, _ = self._fitted()
        out = np.empty((matrix.shape[0], network.n_latent), dtype=np.float32)
        generator = torch_generator(seed)
        size = self.chunk_size
        if network.latent_distribution == "ln":
            size = max(1, min(size, 2**24 // (mc_samples * network.n_latent)))
        with torch.no_grad():
            for start, chunk in self._chunks(matrix, size):
                posterior = network.encode(chunk)
                mean = posterior.mean
                if network.latent_distribution == "ln":
                    mean = network.transform_latent(posterior.rsample(generator, mc_samples))
                    mean = mean.mean(dim=0)
                out[start : start + chunk.shape[0]] = mean.cpu().numpy()
        return out

    # ------------------------------------------------------------------ uses
    def get_latent_representation(
        self,
        data: AnnData | Counts,
        *,
        layer: str | None = None,
        mc_samples: int = 5000,
        seed: Seed = None,
    ) -> np.ndarray:
        """Posterior mean of z for every cell.

        For ``"normal"`` the mean of q(ε | x); for ``"ln"`` the mean of softmax(ε) estimated
        with ``mc_samples`` draws (as scvi-tools).

        Parameters
        ----------
        data
            Counts with the fitted genes (AnnData columns matched by name).
        layer
            AnnData layer holding the counts.
        mc_samples
            Monte-Carlo draws for ``"ln"`` (≥ 1).
        seed
            Seed of the draws (None: ``omicsembed.settings.seed``).

        Returns
        -------
        np.ndarray
            float32 (n_cells, n_latent).

        Raises
        ------
        InvalidInputError
            Not fitted, invalid counts, genes missing, or ``mc_samples < 1``.
        ShapeMismatchError
            An array with the wrong number of columns.

        """
        if mc_samples < 1:
            raise InvalidInputError(f"mc_samples must be ≥ 1, got {mc_samples}")
        return self._latent(self._cells(data, layer), mc_samples=mc_samples, seed=seed)

    def transform(self, data: AnnData | Counts, *, layer: str | None = None) -> np.ndarray:
        """Alias of :meth:`get_latent_representation`."""
        return self.get_latent_representation(data, layer=layer)

    def get_loadings(self) -> pd.DataFrame:
        """Gene loadings: decoder weights scaled by the batch norm, ``γ/√(running_var + eps)·W``.

        Returns
        -------
        pandas.DataFrame
            float32 (n_genes, n_latent), index = genes, columns ``Z_0 … Z_{k-1}`` (the
            layout of scvi-tools' ``LinearSCVI.get_loadings``).

        Raises
        ------
        InvalidInputError
            If the model is not fitted.

        """
        network, state = self._fitted()
        values = network.loadings().cpu().numpy().astype(np.float32)
        columns = [f"Z_{k}" for k in range(network.n_latent)]
        return pd.DataFrame(values, index=pd.Index(state.feature_names), columns=columns)

    def get_normalized_expression(
        self,
        data: AnnData | Counts,
        *,
        layer: str | None = None,
        library_size: float = 1.0,
        n_samples: int | None = None,
        seed: Seed = None,
        batch: Sequence[Any] | np.ndarray | pd.Series | None = None,
        transform_batch: Any | None = None,
    ) -> np.ndarray:
        """Return the expected expression ``library_size · softmax(BN(W [z, b]))`` per cell.

        Parameters
        ----------
        data
            Counts with the fitted genes.
        layer
            AnnData layer holding the counts.
        library_size
            Scale (> 0); 1 gives frequencies that sum to 1 per cell.
        n_samples
            None decodes the posterior mean of ε (transformed for ``"ln"``); an int averages
            over that many posterior draws.
        seed
            Seed of the draws.
        batch
            Batch labels of the cells (models fitted with batches; AnnData may instead hold
            them in the fitted ``batch_key`` column).
        transform_batch
            Decode every cell as if from this batch (batch-corrected expression).

        Returns
        -------
        np.ndarray
            float32 (n_cells, n_genes), ≥ 0.

        Raises
        ------
        InvalidInputError
            As :meth:`get_latent_representation`, a non-positive ``library_size`` or
            ``n_samples``, missing or unknown batches.

        """
        if not library_size > 0:
            raise InvalidInputError(f"library_size must be > 0, got {library_size}")
        if n_samples is not None and n_samples < 1:
            raise InvalidInputError(f"n_samples must be ≥ 1 or None, got {n_samples}")
        network, _ = self._fitted()
        matrix = self._cells(data, layer)
        codes = self._batch_codes(data, matrix.shape[0], batch, transform_batch)
        generator = torch_generator(seed)
        out = np.empty(matrix.shape, dtype=np.float32)
        with torch.no_grad():
            for start, chunk in self._chunks(matrix):
                batch_index = _code_tensor(codes, start, chunk.shape[0], self.device)
                posterior = network.encode(chunk)
                if n_samples is None:
                    scale = network.px_scale(network.transform_latent(posterior.mean), batch_index)
                else:
                    scale = torch.zeros_like(chunk)
                    for _ in range(n_samples):
                        z = network.transform_latent(posterior.rsample(generator))
                        scale += network.px_scale(z, batch_index)
                    scale /= n_samples
                out[start : start + chunk.shape[0]] = (library_size * scale).cpu().numpy()
        return out

    def reconstruction_error(
        self,
        data: AnnData | Counts,
        *,
        layer: str | None = None,
        n_samples: int = 1,
        seed: Seed = None,
        batch: Sequence[Any] | np.ndarray | pd.Series | None = None,
    ) -> np.ndarray:
        """Negative log-likelihood −log p(x | z, l) per cell, z and l drawn from the posterior.

        Parameters
        ----------
        data
            Counts with the fitted genes (e.g. held-out cells).
        layer
            AnnData layer holding the counts.
        n_samples
            Posterior draws averaged per cell (≥ 1).
        seed
            Seed of the draws.
        batch
            Batch labels of the cells (models fitted with batches; AnnData may instead hold
            them in the fitted ``batch_key`` column).

        Returns
        -------
        np.ndarray
            float64 (n_cells,), nats (lower is better).

        Raises
        ------
        InvalidInputError
            As :meth:`get_latent_representation`, ``n_samples < 1``, missing or unknown
            batches.

        """
        if n_samples < 1:
            raise InvalidInputError(f"n_samples must be ≥ 1, got {n_samples}")
        network, _ = self._fitted()
        matrix = self._cells(data, layer)
        codes = self._batch_codes(data, matrix.shape[0], batch, None)
        generator = torch_generator(seed)
        out = np.zeros(matrix.shape[0], dtype=np.float64)
        with torch.no_grad():
            for start, chunk in self._chunks(matrix):
                batch_index = _code_tensor(codes, start, chunk.shape[0], self.device)
                for _ in range(n_samples):
                    terms = network.loss(chunk, generator=generator, batch_index=batch_index)
                    out[start : start + chunk.shape[0]] += (
                        terms.reconstruction.double().cpu().numpy()
                    )
        return out / n_samples

    def factor_variance(
        self, data: AnnData | Counts, *, layer: str | None = None, seed: Seed = None
    ) -> FactorVariance:
        """Variance explained by the factors: latent covariance and its eigen-decomposition.

        The covariance of the latent representations over cells is eigen-decomposed; factors
        are ordered by their variance, and the principal axes by their eigenvalues (Svensson
        et al. 2020, ordering of factors by variance explained).

        Parameters
        ----------
        data
            Counts with the fitted genes.
        layer
            AnnData layer holding the counts.
        seed
            Seed of the Monte-Carlo means for ``"ln"``.

        Returns
        -------
        FactorVariance
            Covariance, per-factor fractions, order, eigenvalues and eigenvectors.

        Raises
        ------
        InvalidInputError
            As :meth:`get_latent_representation`, or fewer than 2 cells.

        """
        latent = self.get_latent_representation(data, layer=layer, seed=seed).astype(np.float64)
        if latent.shape[0] < 2:
            raise InvalidInputError("factor_variance needs at least 2 cells")
        covariance = np.atleast_2d(np.cov(latent, rowvar=False))
        variances = np.diag(covariance)
        total = float(variances.sum())
        fractions = variances / total if total > 0 else np.zeros_like(variances)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        descending = np.argsort(eigenvalues)[::-1]
        eigenvalues = np.clip(eigenvalues[descending], 0.0, None)
        eigenvectors = eigenvectors[:, descending]
        names = [f"Z_{k}" for k in range(latent.shape[1])]
        eigen_total = float(eigenvalues.sum())
        return FactorVariance(
            covariance=pd.DataFrame(covariance, index=names, columns=names),
            variance_explained=fractions,
            order=np.argsort(-variances, kind="stable").astype(np.int64),
            eigenvalues=eigenvalues,
            eigenvectors=eigenvectors,
            axis_variance_explained=(
                eigenvalues / eigen_total if eigen_total > 0 else np.zeros_like(eigenvalues)
            ),
        )

    def factor_order(
        self, data: AnnData | Counts, *, layer: str | None = None, seed: Seed = None
    ) -> np.ndarray:
        """Factor indices by decreasing variance over the cells (see :meth:`factor_variance`).

        Returns
        -------
        np.ndarray
            int64 (n_latent,).

        Raises
        ------
        InvalidInputError
            As :meth:`factor_variance`.

        """
        return self.factor_variance(data, layer=layer, seed=seed).order

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        n_samples: int,
        *,
        seed: Seed = None,
        library_size: float | None = None,
        quantile: float = 0.5,
        batch: Any | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw dichotomised synthetic cells and the dichotomised latent codes behind them.

        Makes LDVAE a :class:`omicsembed.explain.GenerativeModel` for the log-linear
        explanation of Hess, Hackenberg & Binder (2020, §2.5). Each sample draws ε ~ N(0, I)
        from the prior, z = ε (``"normal"``) or z = softmax(ε) (``"ln"``), a batch b (the
        given one, or drawn with the training frequencies), a library size l from the prior
        log l ~ N(μ_l[b], σ²_l[b]) fitted to the data (clamped at e^30) or the given
        ``library_size``, and counts x_g ~ NB(mean l · softmax(BN(W [z, b]))_g, inverse
        dispersion θ_g) (Svensson et al. 2020, §2). The synthetic counts (kept as int32, 4
        bytes per entry, until the thresholds are known) are then dichotomised per gene at
        their ``quantile`` (``numpy.quantile`` over the draws; a count above the threshold
        gives 1), and the latent code at 0 for ``"normal"`` (the prior median) or at the
        per-unit median over the draws for ``"ln"`` (values above give 1).

        Parameters
        ----------
        n_samples
            Number of synthetic cells (≥ 1).
        seed
            Seed or numpy Generator (None: ``omicsembed.settings.seed``); the draws are made
            on the CPU with numpy, so a seed gives the same samples on any device.
        library_size
            Fixed library size l (> 0) instead of draws from the library prior.
        quantile
            Dichotomisation quantile per gene, in [0, 1] (default the median).
        batch
            Generate every cell in this batch (models fitted with batches); None draws the
            batch of each cell with the training frequencies.

        Returns
        -------
        features : np.ndarray
            uint8 (n_samples, n_genes) 0/1 dichotomised synthetic counts.
        latent : np.ndarray
            uint8 (n_samples, n_latent) 0/1 dichotomised latent codes.

        Raises
        ------
        InvalidInputError
            Not fitted, ``n_samples < 1``, a non-positive ``library_size``, a ``quantile``
            outside [0, 1], an unknown batch, or a bad seed.

        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
            raise InvalidInputError(f"n_samples must be an integer ≥ 1, got {n_samples!r}")
        if n_samples < 1:
            raise InvalidInputError(f"n_samples must be ≥ 1, got {n_samples}")
        if library_size is not None and not (np.isfinite(library_size) and library_size > 0):
            raise InvalidInputError(f"library_size must be a finite number > 0, got {library_size}")
        if not 0.0 <= quantile <= 1.0:
            raise InvalidInputError(f"quantile must be in [0, 1], got {quantile}")
        network, state = self._fitted()
        n = int(n_samples)
        codes = None if batch is None else self._batch_codes(None, n, None, batch)
        rng = numpy_rng(seed)
        epsilon = rng.standard_normal((n, network.n_latent)).astype(np.float32)
        if codes is None:
            codes = rng.choice(network.n_batch, size=n, p=state.batch_frequencies)
        if library_size is None:
            prior_mean = np.asarray(state.library_log_mean)[codes]
            prior_sd = np.sqrt(np.asarray(state.library_log_var))[codes]
            library = np.exp(np.minimum(rng.normal(prior_mean, prior_sd), 30.0))
        else:
            library = np.full(n, float(library_size))
        theta = network.theta.detach().cpu().numpy().astype(np.float64)
        counts = np.empty((n, network.n_genes), dtype=np.int32)
        z_values = np.empty((n, network.n_latent), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, self.chunk_size):
                stop = min(start + self.chunk_size, n)
                z = network.transform_latent(torch.from_numpy(epsilon[start:stop]).to(self.device))
                batch_index = _code_tensor(codes, start, stop - start, self.device)
                scale = network.px_scale(z, batch_index).double().cpu().numpy()
                mean = np.maximum(library[start:stop, None] * scale, 1e-12)
                drawn = rng.negative_binomial(theta, theta / (theta + mean))
                counts[start:stop] = np.minimum(drawn, np.iinfo(np.int32).max)
                z_values[start:stop] = z.cpu().numpy()
        thresholds = np.quantile(counts, quantile, axis=0)
        features = np.ascontiguousarray(counts > thresholds, dtype=np.uint8)
        cut = np.median(z_values, axis=0) if network.latent_distribution == "ln" else 0.0
        latent = np.ascontiguousarray(z_values > cut, dtype=np.uint8)
        return features, latent

    # ------------------------------------------------------------------ persistence
    def _network_sizes(self) -> dict[str, Any]:
        return {"n_genes": self._fitted()[0].n_genes}

    def _build_network(self, sizes: dict[str, Any], state: LDVAEState) -> LDVAENetwork:
        if len(state.feature_names) != sizes["n_genes"]:
            raise InvalidInputError("the saved gene names do not match n_genes")
        s = self.settings
        return LDVAENetwork(
            sizes["n_genes"],
            n_latent=s.n_latent,
            n_hidden=s.n_hidden,
            dropout_rate=s.dropout_rate,
            latent_distribution=s.latent_distribution,  # type: ignore[arg-type]
            use_batch_norm=s.use_batch_norm,
            use_observed_library=s.use_observed_library,
            n_batch=max(1, len(state.batch_categories)),
            library_log_mean=state.library_log_mean,
            library_log_var=state.library_log_var,
        )


def _code_tensor(
    codes: np.ndarray | None, start: int, size: int, device: torch.device
) -> torch.Tensor | None:
    """Batch codes of rows ``start:start+size`` as an int64 tensor (None without batches)."""
    if codes is None:
        return None
    return torch.from_numpy(codes[start : start + size]).to(device)


def _batch_labels(
    data: AnnData | Counts | None,
    batch_key: str | None,
    batch: Sequence[Any] | np.ndarray | pd.Series | None,
    n_cells: int,
) -> np.ndarray | None:
    """Batch labels of the cells as strings, from ``batch`` or ``data.obs[batch_key]``.

    Raises
    ------
    InvalidInputError
        Both or an unknown key, a key without AnnData, or missing labels.
    ShapeMismatchError
        ``batch`` with a length other than ``n_cells``.

    """
    if batch_key is not None and batch is not None:
        raise InvalidInputError("give batch_key= or batch=, not both")
    if batch_key is not None:
        if not isinstance(data, AnnData):
            raise InvalidInputError("batch_key= needs AnnData input; pass batch= for arrays")
        if batch_key not in data.obs:
            raise InvalidInputError(
                f"batch_key {batch_key!r} is not a column of .obs; columns: {list(data.obs)}"
            )
        values = pd.Series(data.obs[batch_key])
    elif batch is not None:
        values = pd.Series(np.asarray(batch, dtype=object).ravel())
        if len(values) != n_cells:
            raise ShapeMismatchError(f"batch has {len(values)} labels for {n_cells} cells")
    else:
        return None
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        cell = f" (cell {str(data.obs_names[row])!r})" if isinstance(data, AnnData) else ""
        raise InvalidInputError(
            f"{int(missing.sum())} cells have no batch label, first at row {row}{cell}; fill or "
            "drop them"
        )
    return values.astype(str).to_numpy()
