"""LDVAE: interpretable linear factor model of single-cell counts (scVI with a linear decoder).

Reference: Svensson V, Gayoso A, Yosef N, Pachter L. "Interpretable factor models of single-cell
RNA-seq via variational autoencoders." Bioinformatics 36(11), 3418-3421 (2020). Defaults follow
scvi-tools' ``LinearSCVI`` (n_latent 10, one hidden layer of 128, dropout 0.1, Adam with
learning rate 1e-3 and weight decay 1e-6, minibatches of 128, KL warm-up over 400 epochs,
max_epochs ``min(round(20000 / n_cells · 400), 400)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from safetensors.torch import load_file, save_file
from scipy import sparse

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models._data import (
    Seed,
    feature_names,
    match_features,
    numpy_rng,
    row_batches,
    torch_generator,
)
from omicsembed.models._folder import read_model_folder, write_model_folder
from omicsembed.nn.ldvae import LatentDistribution, LDVAENetwork
from omicsembed.train.loop import TrainingConfig, resolve_device, train

__all__ = ["LDVAE", "FactorVariance", "LDVAESettings"]

_MODEL = "LDVAE"
_CHUNK = 4096  # cells per forward pass when encoding/decoding many cells
_INTEGER_TOLERANCE = 1e-6

Counts: TypeAlias = np.ndarray | sparse.csr_matrix | sparse.csr_array


@dataclass
class LDVAESettings:
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
    validation_fraction: float = 0.1
    early_stopping_patience: int | None = None
    seed: int = 0


@dataclass
class _FittedState:
    feature_names: list[str]
    library_log_mean: float
    library_log_var: float
    history: list[dict[str, float]] = field(default_factory=list)


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


def _locate_sparse(matrix: sparse.csr_matrix | sparse.csr_array, k: int) -> tuple[int, int]:
    row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    return row, int(matrix.indices[k])


def count_matrix(
    data: AnnData | Counts, *, layer: str | None = None, what: str = "the counts"
) -> Counts:
    """Return validated counts as a float32 dense array or CSR matrix (sparse stays sparse).

    Raises
    ------
    InvalidInputError
        Unknown layer, non-numeric, NaN, infinite, negative or non-integer values (beyond
        1e-6; the message names row and column), or an empty or non-2-D matrix.

    """
    names: list[str] | None = None
    if isinstance(data, AnnData):
        if layer is not None and layer not in data.layers:
            raise InvalidInputError(
                f"layer {layer!r} not found; available layers: {sorted(data.layers)}"
            )
        matrix: Any = data.layers[layer] if layer is not None else data.X
        names = [str(name) for name in data.var_names]
        if matrix is None:
            raise InvalidInputError("the AnnData object has no .X; pass layer=")
    else:
        if layer is not None:
            raise InvalidInputError("layer= is only meaningful for AnnData input")
        matrix = data
    result: Counts
    if sparse.issparse(matrix):
        result = sparse.csr_matrix(matrix, dtype=np.float32)
        result.sum_duplicates()
        values = result.data
    else:
        try:
            result = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"{what} must be numeric: {error}") from error
        values = result.reshape(-1)
    if result.ndim != 2 or result.shape[0] == 0 or result.shape[1] == 0:
        raise InvalidInputError(
            f"{what} must be a non-empty 2-D cells × genes matrix, got shape {result.shape}"
        )
    checks: tuple[tuple[Callable[[np.ndarray], np.ndarray], str, str], ...] = (
        (lambda v: ~np.isfinite(v), "NaN or infinite values", "counts must be finite"),
        (lambda v: v < 0, "negative values", "counts must be ≥ 0"),
        (
            lambda v: np.abs(v - np.round(v)) > _INTEGER_TOLERANCE,
            "non-integer values",
            "LDVAE models raw counts, not normalised or log-transformed values (use the raw "
            "counts layer, e.g. layer='counts')",
        ),
    )
    for check, label, advice in checks:
        bad = check(values)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            if isinstance(result, np.ndarray):
                row, column = divmod(k, result.shape[1])
            else:
                row, column = _locate_sparse(result, k)
            gene = f"{names[column]!r} (column {column})" if names else f"column {column}"
            raise InvalidInputError(
                f"{what} have {int(bad.sum())} {label}, first {values[k]!r} at row {row}, gene "
                f"{gene}; {advice}"
            )
    return result


def _rows(matrix: Counts, rows: np.ndarray) -> np.ndarray:
    block = matrix[rows]
    if sparse.issparse(block):
        return np.asarray(block.toarray(), dtype=np.float32)
    return np.asarray(block, dtype=np.float32)


class LDVAE:
    """Linearly decoded VAE (LDVAE) for single-cell counts: interpretable gene loadings.

    scVI's generative model with a linear decoder (Svensson et al. 2020): ε ~ N(0, I), latent
    z = ε (``"normal"``) or z = softmax(ε) (``"ln"``, logistic normal); library size
    l ~ LogNormal(μ_l, σ²_l) with μ_l, σ²_l the mean and variance of the log library sizes of
    the training cells (or l = the observed total); ``px_scale = softmax(BN(W z))``; counts
    x_g ~ NB(mean l · px_scale_g, inverse dispersion θ_g). The encoder is one hidden layer
    (batch norm, ReLU, dropout) on log1p(x). Training maximises the ELBO with KL warm-up of
    the latent term through :func:`omicsembed.train.loop.train` (shuffled minibatches of
    cells read row by row from dense or CSR matrices, validation −ELBO with full KL weight,
    optional early stopping, best-weight restoration).

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

    Raises
    ------
    InvalidInputError
        Invalid settings.

    Examples
    --------
    >>> model = LDVAE(n_latent=5, max_epochs=50, progress=False).fit(adata)  # doctest: +SKIP
    >>> loadings = model.get_loadings()  # genes × factors  # doctest: +SKIP

    """

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
        seed: int = 0,
        device: str = "auto",
        progress: bool | None = None,
    ) -> None:
        self.settings = LDVAESettings(
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
            seed=int(seed),
        )
        self._check_settings()
        self.device = resolve_device(device)
        self.progress = progress
        self.network_: LDVAENetwork | None = None
        self._state: _FittedState | None = None

    def _check_settings(self) -> None:
        s = self.settings
        for name, value in {
            "n_latent": s.n_latent,
            "n_hidden": s.n_hidden,
            "batch_size": s.batch_size,
        }.items():
            if value < 1:
                raise InvalidInputError(f"{name} must be ≥ 1, got {value}")
        if s.batch_size < 2:
            raise InvalidInputError("batch_size must be ≥ 2 (batch norm needs two cells)")
        if not 0.0 <= s.dropout_rate < 1.0:
            raise InvalidInputError(f"dropout_rate must be in [0, 1), got {s.dropout_rate}")
        if s.latent_distribution not in ("normal", "ln"):
            raise InvalidInputError(
                f"latent_distribution must be 'normal' or 'ln', got {s.latent_distribution!r}"
            )
        if not 0.0 <= s.validation_fraction < 1.0:
            raise InvalidInputError(
                f"validation_fraction must be in [0, 1), got {s.validation_fraction}"
            )
        if s.n_epochs_kl_warmup is not None and s.n_epochs_kl_warmup < 0:
            raise InvalidInputError(f"n_epochs_kl_warmup must be ≥ 0, got {s.n_epochs_kl_warmup}")
        if s.weight_decay < 0:
            raise InvalidInputError(f"weight_decay must be ≥ 0, got {s.weight_decay}")
        TrainingConfig(
            max_epochs=1 if s.max_epochs is None else s.max_epochs,
            learning_rate=s.learning_rate,
            early_stopping_patience=s.early_stopping_patience,
        )

    # ------------------------------------------------------------------ fitting
    def _split(self, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
        fraction = self.settings.validation_fraction
        if fraction == 0:
            return np.arange(n_cells), np.arange(0)
        n_validation = max(2, round(fraction * n_cells))
        if n_validation > n_cells - 2:
            raise InvalidInputError(
                f"{n_cells} cells are too few to hold out validation_fraction={fraction}; "
                "use validation_fraction=0"
            )
        order = np.random.default_rng([self.settings.seed, 1]).permutation(n_cells)
        return np.sort(order[n_validation:]), np.sort(order[:n_validation])

    def kl_weight(self, epoch: int) -> float:
        """KL warm-up weight of the latent term at 0-based ``epoch``: min(1, epoch / warm-up)."""
        warmup = self.settings.n_epochs_kl_warmup
        if not warmup:
            return 1.0
        return min(1.0, epoch / warmup)

    def fit(
        self,
        data: AnnData | Counts,
        *,
        layer: str | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
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
        checkpoint_dir
            Write checkpoints there every 10 epochs (and when interrupted).
        resume
            Continue from the checkpoint in ``checkpoint_dir``.

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
            too few cells, or a checkpoint that does not fit.

        """
        matrix = count_matrix(data, layer=layer, what="the training counts")
        s = self.settings
        n_cells, n_genes = matrix.shape
        if n_cells < 4:
            raise InvalidInputError(f"LDVAE needs at least 4 cells, got {n_cells}")
        train_rows, validation_rows = self._split(n_cells)
        totals = np.asarray(matrix[train_rows].sum(axis=1), dtype=np.float64).ravel()
        log_totals = np.log(totals[totals > 0]) if (totals > 0).any() else np.zeros(1)
        library_mean = float(log_totals.mean())
        library_var = max(float(log_totals.var()), 1e-4)
        max_epochs = s.max_epochs
        if max_epochs is None:
            max_epochs = max(1, min(round(20000 / n_cells * 400), 400))
        torch.manual_seed(s.seed)
        network = LDVAENetwork(
            n_genes,
            n_latent=s.n_latent,
            n_hidden=s.n_hidden,
            dropout_rate=s.dropout_rate,
            latent_distribution=s.latent_distribution,  # type: ignore[arg-type]
            use_batch_norm=s.use_batch_norm,
            use_observed_library=s.use_observed_library,
            library_log_mean=library_mean,
            library_log_var=library_var,
        ).to(self.device)
        validation_noise = torch.Generator(device=self.device)
        current = {"kl_weight": 0.0}

        def loss(rows: np.ndarray) -> tuple[torch.Tensor, int]:
            batch = torch.from_numpy(_rows(matrix, rows)).to(self.device)
            if network.training:
                terms = network.loss(batch, kl_weight=current["kl_weight"])
            else:
                terms = network.loss(batch, kl_weight=1.0, generator=validation_noise)
            return terms.total.mean(), int(rows.size)

        def train_batches(epoch: int) -> Iterable[np.ndarray]:
            current["kl_weight"] = self.kl_weight(epoch)
            return row_batches(
                train_rows,
                s.batch_size,
                seed=s.seed,
                epoch=epoch,
                shuffle=True,
                fold_single_last=True,
            )

        def validation_batches(epoch: int) -> Iterable[np.ndarray]:
            validation_noise.manual_seed(s.seed + 1)
            return row_batches(
                validation_rows,
                s.batch_size,
                seed=s.seed,
                epoch=0,
                shuffle=False,
                fold_single_last=True,
            )

        config = TrainingConfig(
            max_epochs=max_epochs,
            learning_rate=s.learning_rate,
            weight_decay=s.weight_decay,
            early_stopping_patience=s.early_stopping_patience,
            checkpoint_dir=checkpoint_dir,
            progress=self.progress,
            description="LDVAE",
        )
        state = train(
            network,
            loss,
            train_batches,
            config,
            validation_batches=validation_batches if validation_rows.size else None,
            resume=resume,
        )
        self.network_ = network.eval()
        self._state = _FittedState(
            feature_names=feature_names(data, n_genes, "gene"),
            library_log_mean=library_mean,
            library_log_var=library_var,
            history=state.history,
        )
        if isinstance(data, AnnData):
            data.obsm["X_ldvae"] = self._latent(matrix, mc_samples=5000, seed=s.seed)
            data.varm["ldvae_loadings"] = self.get_loadings().to_numpy(dtype=np.float32)
            data.uns["ldvae"] = {"params": self._params()}
        return self

    # ------------------------------------------------------------------ fitted state
    def _fitted(self) -> tuple[LDVAENetwork, _FittedState]:
        if self.network_ is None or self._state is None:
            raise InvalidInputError("this LDVAE is not fitted; call fit() first")
        return self.network_, self._state

    @property
    def history_(self) -> pd.DataFrame:
        """Loss per epoch (``epoch``, ``train_loss``, ``validation_loss``; −ELBO in nats)."""
        return pd.DataFrame(self._fitted()[1].history)

    @property
    def feature_names_(self) -> list[str]:
        """Genes the model was fitted on, in column order."""
        return list(self._fitted()[1].feature_names)

    def _cells(self, data: AnnData | Counts, layer: str | None) -> Counts:
        _, state = self._fitted()
        if isinstance(data, AnnData):
            data = match_features(data, state.feature_names)  # type: ignore[assignment]
        elif len(np.shape(data)) != 2 or np.shape(data)[1] != len(state.feature_names):
            raise ShapeMismatchError(
                f"expected {len(state.feature_names)} genes (columns), got shape {np.shape(data)}"
            )
        return count_matrix(data, layer=layer, what="the cells")

    def _chunks(self, matrix: Counts, size: int = _CHUNK) -> Iterable[tuple[int, torch.Tensor]]:
        for start in range(0, matrix.shape[0], size):
            rows = np.arange(start, min(start + size, matrix.shape[0]))
            yield start, torch.from_numpy(_rows(matrix, rows)).to(self.device)

    def _latent(self, matrix: Counts, *, mc_samples: int, seed: Seed) -> np.ndarray:
        network, _ = self._fitted()
        out = np.empty((matrix.shape[0], network.n_latent), dtype=np.float32)
        generator = torch_generator(seed)
        size = _CHUNK
        if network.latent_distribution == "ln":
            size = max(1, min(_CHUNK, 2**24 // (mc_samples * network.n_latent)))
        with torch.no_grad():
            for start, chunk in self._chunks(matrix, size):
                mean, var = network.encode(chunk)
                if network.latent_distribution == "ln":
                    noise = network._noise(mean, generator, mc_samples)
                    mean = torch.softmax(mean + var.sqrt() * noise, dim=-1).mean(dim=0)
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
    ) -> np.ndarray:
        """Return the expected expression ``library_size · softmax(BN(W z))`` per cell.

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

        Returns
        -------
        np.ndarray
            float32 (n_cells, n_genes), ≥ 0.

        Raises
        ------
        InvalidInputError
            As :meth:`get_latent_representation`, or a non-positive ``library_size`` or
            ``n_samples``.

        """
        if not library_size > 0:
            raise InvalidInputError(f"library_size must be > 0, got {library_size}")
        if n_samples is not None and n_samples < 1:
            raise InvalidInputError(f"n_samples must be ≥ 1 or None, got {n_samples}")
        network, _ = self._fitted()
        matrix = self._cells(data, layer)
        generator = torch_generator(seed)
        out = np.empty(matrix.shape, dtype=np.float32)
        with torch.no_grad():
            for start, chunk in self._chunks(matrix):
                mean, var = network.encode(chunk)
                if n_samples is None:
                    scale = network.px_scale(network.transform_latent(mean))
                else:
                    scale = torch.zeros_like(chunk)
                    for _ in range(n_samples):
                        eps = mean + var.sqrt() * network._noise(mean, generator)
                        scale += network.px_scale(network.transform_latent(eps))
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

        Returns
        -------
        np.ndarray
            float64 (n_cells,), nats (lower is better).

        Raises
        ------
        InvalidInputError
            As :meth:`get_latent_representation`, or ``n_samples < 1``.

        """
        if n_samples < 1:
            raise InvalidInputError(f"n_samples must be ≥ 1, got {n_samples}")
        network, _ = self._fitted()
        matrix = self._cells(data, layer)
        generator = torch_generator(seed)
        out = np.zeros(matrix.shape[0], dtype=np.float64)
        with torch.no_grad():
            for start, chunk in self._chunks(matrix):
                for _ in range(n_samples):
                    terms = network.loss(chunk, generator=generator)
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
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw dichotomised synthetic cells and the dichotomised latent codes behind them.

        Makes LDVAE a :class:`omicsembed.explain.GenerativeModel` for the log-linear
        explanation of Hess, Hackenberg & Binder (2020, §2.5). Each sample draws ε ~ N(0, I)
        from the prior, z = ε (``"normal"``) or z = softmax(ε) (``"ln"``), a library size l
        from the prior log l ~ N(μ_l, σ²_l) fitted to the training data (clamped at e^30)
        or the given ``library_size``, and counts x_g ~ NB(mean l · softmax(BN(W z))_g,
        inverse dispersion θ_g) (Svensson et al. 2020, §2). The synthetic counts are then
        dichotomised per gene at their ``quantile`` (``numpy.quantile`` over the draws; a
        count above the threshold gives 1), and the latent code at 0 for ``"normal"`` (the
        prior median) or at the per-unit median over the draws for ``"ln"`` (values above
        give 1).

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
            outside [0, 1], or a bad seed.

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
        rng = numpy_rng(seed)
        n = int(n_samples)
        epsilon = rng.standard_normal((n, network.n_latent)).astype(np.float32)
        if library_size is None:
            log_library = rng.normal(state.library_log_mean, np.sqrt(state.library_log_var), size=n)
            library = np.exp(np.minimum(log_library, 30.0))
        else:
            library = np.full(n, float(library_size))
        theta = network.theta.detach().cpu().numpy().astype(np.float64)
        counts = np.empty((n, network.n_genes), dtype=np.float64)
        codes = np.empty((n, network.n_latent), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, _CHUNK):
                stop = min(start + _CHUNK, n)
                z = network.transform_latent(torch.from_numpy(epsilon[start:stop]).to(self.device))
                scale = network.px_scale(z).double().cpu().numpy()
                mean = np.maximum(library[start:stop, None] * scale, 1e-12)
                counts[start:stop] = rng.negative_binomial(theta, theta / (theta + mean))
                codes[start:stop] = z.cpu().numpy()
        thresholds = np.quantile(counts, quantile, axis=0)
        features = np.ascontiguousarray(counts > thresholds, dtype=np.uint8)
        cut = np.median(codes, axis=0) if network.latent_distribution == "ln" else 0.0
        latent = np.ascontiguousarray(codes > cut, dtype=np.uint8)
        return features, latent

    # ------------------------------------------------------------------ persistence
    def _params(self) -> dict[str, Any]:
        return asdict(self.settings)

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to ``folder`` (safetensors weights + JSON settings).

        Returns
        -------
        Path
            The folder.

        Raises
        ------
        InvalidInputError
            If the model is not fitted.

        """
        network, state = self._fitted()
        tensors = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        meta = {"settings": self._params(), "n_genes": network.n_genes, "state": asdict(state)}
        return write_model_folder(folder, _MODEL, meta, lambda target: save_file(tensors, target))

    @classmethod
    def load(
        cls, folder: str | Path, *, device: str = "auto", progress: bool | None = None
    ) -> LDVAE:
        """Restore a model written by :meth:`save` (weights bit for bit).

        Raises
        ------
        InvalidInputError
            If the folder does not hold a saved LDVAE or its files do not match.

        """
        weights, meta = read_model_folder(folder, _MODEL)
        model = cls(**meta["settings"], device=device, progress=progress)
        state = _FittedState(**meta["state"])
        if len(state.feature_names) != meta["n_genes"]:
            raise InvalidInputError(f"{folder}: gene names do not match n_genes")
        s = model.settings
        network = LDVAENetwork(
            meta["n_genes"],
            n_latent=s.n_latent,
            n_hidden=s.n_hidden,
            dropout_rate=s.dropout_rate,
            latent_distribution=s.latent_distribution,  # type: ignore[arg-type]
            use_batch_norm=s.use_batch_norm,
            use_observed_library=s.use_observed_library,
            library_log_mean=state.library_log_mean,
            library_log_var=state.library_log_var,
        )
        try:
            network.load_state_dict(load_file(weights))
        except RuntimeError as error:
            raise InvalidInputError(
                f"{weights} does not match the settings saved beside it: {error}"
            ) from error
        model.network_ = network.to(model.device).eval()
        model._state = state
        return model
