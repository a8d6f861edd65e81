"""Factorized embeddings (Trofimov et al. 2020): joint sample and gene embeddings.

Reference: Trofimov A, Cohen JP, Bengio Y, Perreault C, Lemieux S. "Factorized embeddings learns
rich and biologically meaningful embedding spaces using factorized tensor decomposition."
Bioinformatics 36 (Suppl. 1), i417-i426 (2020). §2.1 (model, narrow format, training),
§3.6 (imputation), §3.8 (vector arithmetic in the sample embedding space).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from omicsembed._seeds import TORCH_SEEDS, int_seed
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models._base import FittedState, TorchModel, TrainingSettings
from omicsembed.models._data import dense_matrix, descriptor_codes, match_features
from omicsembed.nn.factorized import FactorizedEmbeddingNetwork
from omicsembed.train.loop import TrainingConfig, train
from omicsembed.train.sampler import NarrowBatch, NarrowFormatSampler

__all__ = ["FactorizedEmbedding", "FactorizedEmbeddingSettings"]


@dataclass
class FactorizedEmbeddingSettings(TrainingSettings):
    """Hyperparameters of :class:`FactorizedEmbedding` (defaults from Trofimov et al. §2.1)."""

    sample_embedding_size: int = 50
    gene_embedding_size: int = 50
    hidden_sizes: tuple[int, ...] = (250, 150, 100, 50, 10)
    descriptor_embedding_size: int = 10
    weight_decay: float = 1e-5
    batch_size: int = 10_000

    def check(self) -> None:
        """Validate (see :meth:`TrainingSettings.check`); also embedding sizes and widths."""
        super().check()
        sizes = {
            "sample_embedding_size": self.sample_embedding_size,
            "gene_embedding_size": self.gene_embedding_size,
            "descriptor_embedding_size": self.descriptor_embedding_size,
        }
        for name, value in sizes.items():
            if value < 1:
                raise InvalidInputError(f"{name} must be ≥ 1, got {value}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise InvalidInputError(
                f"hidden_sizes must be positive widths, got {self.hidden_sizes}"
            )
        if self.max_epochs is None:
            raise InvalidInputError("max_epochs must be an integer ≥ 1")


@dataclass
class FactorizedEmbeddingState(FittedState):
    """Fitted state besides the weights: sample names and the descriptors' levels and codes."""

    sample_names: list[str] = field(default_factory=list)
    descriptor_names: list[str] = field(default_factory=list)
    descriptor_levels: list[list[Any]] = field(default_factory=list)
    descriptor_codes: list[list[int]] | None = None


def _mse_loss(
    network: FactorizedEmbeddingNetwork, device: torch.device
) -> Callable[[NarrowBatch], tuple[torch.Tensor, int]]:
    def loss(batch: NarrowBatch) -> tuple[torch.Tensor, int]:
        batch = batch.to(device)
        predicted = network(batch.samples, batch.genes, batch.descriptors)
        return torch.nn.functional.mse_loss(predicted, batch.values), int(batch.values.shape[0])

    return loss


def _epochs(sampler: NarrowFormatSampler) -> Callable[[int], Iterable[NarrowBatch]]:
    def batches(epoch: int) -> Iterable[NarrowBatch]:
        sampler.set_epoch(epoch)
        return sampler

    return batches


class FactorizedEmbedding(
    TorchModel[FactorizedEmbeddingSettings, FactorizedEmbeddingNetwork, FactorizedEmbeddingState]
):
    """Factorized embeddings of samples and genes, trained on the narrow format.

    Every observed value ``X[i, j]`` is one training example: the embeddings of sample ``i`` and
    gene ``j`` (and of sample ``i``'s extra descriptors, e.g. batch or sex) are concatenated and a
    tanh MLP (250-150-100-50-10 by default) predicts the value, with a mean-squared-error loss and
    Adam. Missing values (NaN) are skipped, so the model trains on observed entries only.
    Minibatches come from the Rust narrow-format sampler
    (:class:`omicsembed.train.sampler.NarrowFormatSampler`), which never materialises the
    samples × genes index table.

    Parameters
    ----------
    sample_embedding_size, gene_embedding_size
        Embedding dimensions k (default 50 each, as for the paper's benchmarks; 2 for plots).
    hidden_sizes
        Widths of the tanh hidden layers (paper: 250, 150, 100, 50, 10).
    descriptor_embedding_size
        Dimension of each extra descriptor embedding.
    learning_rate, weight_decay
        Adam settings (paper: 1e-3 and 1e-5).
    batch_size
        Entries (sample × gene values) per minibatch.
    max_epochs
        Passes over the training entries.
    validation_fraction
        Fraction of observed entries held out (hash-based split, no mask in memory) for the
        validation loss and early stopping; 0 trains on everything and monitors the training loss.
    early_stopping_patience
        Epochs without validation improvement before stopping (None: never stop early).
    checkpoint_every
        Epochs between checkpoints when ``fit(checkpoint_dir=...)`` is given.
    seed
        Seed of the initialisation, the shuffling and the validation split.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    progress
        Show progress bars (None: ``omicsembed.settings.progress_bar``).

    Attributes
    ----------
    sample_embeddings_ : np.ndarray
        float32 (n_samples, sample_embedding_size).
    gene_embeddings_ : np.ndarray
        float32 (n_genes, gene_embedding_size).
    history_ : pandas.DataFrame
        Loss per epoch (columns ``epoch``, ``train_loss``, ``validation_loss``).
    feature_names_, sample_names_ : list of str
        Genes and samples the model was fitted on.

    Notes
    -----
    Trofimov et al. 2020, §2.1 (architecture, narrow format), §3.6 (imputation), §3.8 (vector
    arithmetic). Unlike the original code, :meth:`embed_new_samples` embeds unseen samples with the
    network frozen.

    Examples
    --------
    >>> from omicsembed.datasets import nci60
    >>> from omicsembed.models import FactorizedEmbedding
    >>> adata = nci60()
    >>> model = FactorizedEmbedding(max_epochs=5).fit(adata)  # doctest: +SKIP
    >>> adata.obsm["X_fe"].shape  # doctest: +SKIP
    (64, 50)

    """

    model_name = "FactorizedEmbedding"
    state_class = FactorizedEmbeddingState

    def __init__(
        self,
        *,
        sample_embedding_size: int = 50,
        gene_embedding_size: int = 50,
        hidden_sizes: Sequence[int] = (250, 150, 100, 50, 10),
        descriptor_embedding_size: int = 10,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 10_000,
        max_epochs: int = 100,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = 10,
        checkpoint_every: int = 10,
        seed: int = 0,
        device: str = "auto",
        progress: bool | None = None,
    ) -> None:
        settings = FactorizedEmbeddingSettings(
            sample_embedding_size=int(sample_embedding_size),
            gene_embedding_size=int(gene_embedding_size),
            hidden_sizes=tuple(int(h) for h in hidden_sizes),
            descriptor_embedding_size=int(descriptor_embedding_size),
            learning_rate=float(learning_rate),
            weight_decay=float(weight_decay),
            batch_size=int(batch_size),
            max_epochs=int(max_epochs),
            validation_fraction=float(validation_fraction),
            early_stopping_patience=early_stopping_patience,
            checkpoint_every=int(checkpoint_every),
            seed=int(seed) if isinstance(seed, np.integer) else seed,  # checked below
        )
        super().__init__(settings, device=device, progress=progress)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: AnnData | np.ndarray,
        *,
        layer: str | None = None,
        descriptors: Sequence[str] | np.ndarray | pd.DataFrame | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
    ) -> FactorizedEmbedding:
        """Learn sample and gene embeddings.

        Parameters
        ----------
        data
            AnnData (values from ``.X`` or ``layer``) or an (n_samples, n_genes) array of
            continuous values, e.g. log10(TPM + 1) (:func:`omicsembed.pp.log_transform`).
            NaN marks missing values, which are skipped.
        layer
            AnnData layer to use instead of ``.X``.
        descriptors
            Extra per-sample categorical descriptors (``.obs`` column names, an (n, d) array or a
            DataFrame); each gets its own embedding.
        checkpoint_dir
            Write checkpoints there every ``checkpoint_every`` epochs (and when interrupted).
        resume
            Continue from the checkpoint in ``checkpoint_dir``: the run of the same data
            and settings (only ``max_epochs``, ``early_stopping_patience`` and
            ``checkpoint_every`` may differ).

        Returns
        -------
        FactorizedEmbedding
            ``self``. With AnnData input, also writes ``.obsm["X_fe"]``, ``.varm["fe"]`` and
            ``.uns["fe"]["params"]``.

        Raises
        ------
        InvalidInputError
            Non-numeric or infinite values, no observed entry, bad descriptors, or a checkpoint
            of another run (other data or settings) or that does not fit.

        """
        matrix = dense_matrix(data, layer=layer)
        if np.isnan(matrix).all():
            raise InvalidInputError("every value is missing (NaN); there is nothing to fit")
        codes, names, levels = descriptor_codes(data, descriptors)
        s = self.settings
        torch.manual_seed(s.seed)
        network = FactorizedEmbeddingNetwork(
            matrix.shape[0],
            matrix.shape[1],
            sample_embedding_size=s.sample_embedding_size,
            gene_embedding_size=s.gene_embedding_size,
            hidden_sizes=s.hidden_sizes,
            descriptor_levels=[len(level) for level in levels],
            descriptor_embedding_size=s.descriptor_embedding_size,
        )
        network.set_output_scale(float(np.nanmean(matrix)), float(np.nanstd(matrix)))
        network = network.to(self.device)
        common: dict[str, Any] = {
            "batch_size": s.batch_size,
            "seed": s.seed,
            "descriptors": codes,
            "holdout_fraction": s.validation_fraction,
            "holdout_seed": s.seed,
        }
        if s.validation_fraction > 0:
            train_sampler = NarrowFormatSampler(matrix, side="train", **common)
            validation: Callable[[int], Iterable[NarrowBatch]] | None = _epochs(
                train_sampler.validation()
            )
        else:
            train_sampler = NarrowFormatSampler(matrix, side="all", **common)
            validation = None
        config = s.config(
            int(s.max_epochs or 1),
            checkpoint_dir=checkpoint_dir,
            progress=self.progress,
            description="factorized embeddings",
        )
        state = train(
            network,
            _mse_loss(network, self.device),
            _epochs(train_sampler),
            config,
            validation_batches=validation,
            resume=resume,
            identity=self._run_identity(checkpoint_dir, {"matrix": matrix, "descriptors": codes}),
        )
        self.network_ = network.eval()
        self._state = FactorizedEmbeddingState(
            feature_names=_names(data, axis="var", size=matrix.shape[1]),
            sample_names=_names(data, axis="obs", size=matrix.shape[0]),
            descriptor_names=names,
            descriptor_levels=levels,
            descriptor_codes=codes.tolist() if codes is not None else None,
            history=state.history,
        )
        if isinstance(data, AnnData):
            data.obsm["X_fe"] = self.sample_embeddings_
            data.varm["fe"] = self.gene_embeddings_
            data.uns["fe"] = {"params": self._params()}
        return self

    def fit_transform(self, data: AnnData | np.ndarray, **kwargs: Any) -> np.ndarray:
        """Fit and return the sample embeddings (n_samples, sample_embedding_size)."""
        return self.fit(data, **kwargs).sample_embeddings_

    def transform(self, data: AnnData | np.ndarray, **kwargs: Any) -> np.ndarray:
        """Embed (new) samples with the network frozen; see :meth:`embed_new_samples`."""
        return self.embed_new_samples(data, **kwargs)

    # ------------------------------------------------------------------ fitted state
    @property
    def sample_embeddings_(self) -> np.ndarray:
        """float32 (n_samples, k) learned sample embeddings."""
        network, _ = self._fitted()
        return network.sample_embedding.weight.detach().cpu().numpy().copy()

    @property
    def gene_embeddings_(self) -> np.ndarray:
        """float32 (n_genes, k) learned gene embeddings."""
        network, _ = self._fitted()
        return network.gene_embedding.weight.detach().cpu().numpy().copy()

    @property
    def sample_names_(self) -> list[str]:
        """Samples the model was fitted on, in row order."""
        return list(self._fitted()[1].sample_names)

    def _fitted_descriptors(self) -> torch.Tensor | None:
        codes = self._fitted()[1].descriptor_codes
        if codes is None:
            return None
        return torch.as_tensor(np.asarray(codes, dtype=np.int64), device=self.device)

    def _decode(self, embeddings: torch.Tensor, descriptors: torch.Tensor | None) -> np.ndarray:
        network, _ = self._fitted()
        with torch.no_grad():
            return network.decode_grid(embeddings.to(self.device), descriptors).cpu().numpy()

    # ------------------------------------------------------------------ uses
    def reconstruct(self) -> np.ndarray:
        """Decode every (fitted sample, gene) pair.

        Returns
        -------
        np.ndarray
            float32 (n_samples, n_genes) predicted values, on the scale of the training values.

        """
        network, _ = self._fitted()
        return self._decode(network.sample_embedding.weight, self._fitted_descriptors())

    def impute(self, X: np.ndarray, *, sample_embeddings: np.ndarray | None = None) -> np.ndarray:
        """Fill the missing values (NaN) of ``X`` with the model's predictions (§3.6).

        Parameters
        ----------
        X
            (n, n_genes) values with NaN where missing. Without ``sample_embeddings`` the rows
            must be the fitted samples, in order.
        sample_embeddings
            (n, k) embeddings of the rows of ``X`` (e.g. from :meth:`embed_new_samples`).

        Returns
        -------
        np.ndarray
            float32 copy of ``X`` with NaN replaced; observed values are unchanged.

        Raises
        ------
        ShapeMismatchError
            If ``X`` does not match the fitted genes, or the embeddings / fitted samples.

        """
        network, state = self._fitted()
        values = np.array(match_features(np.asarray(X, dtype=np.float32), state.feature_names))
        if sample_embeddings is None:
            if values.shape[0] != len(state.sample_names):
                raise ShapeMismatchError(
                    f"X has {values.shape[0]} rows but the model was fitted on "
                    f"{len(state.sample_names)} samples; pass sample_embeddings= for new samples"
                )
            predicted = self.reconstruct()
        else:
            embeddings = np.asarray(sample_embeddings, dtype=np.float32)
            if embeddings.shape != (values.shape[0], network.sample_embedding.embedding_dim):
                raise ShapeMismatchError(
                    f"sample_embeddings must have shape ({values.shape[0]}, "
                    f"{network.sample_embedding.embedding_dim}), got {embeddings.shape}"
                )
            if state.descriptor_names:
                raise InvalidInputError(
                    "this model uses descriptors; impute new samples via the fitted rows"
                )
            predicted = self._decode(torch.from_numpy(embeddings), None)
        missing = np.isnan(values)
        values[missing] = predicted[missing]
        return values

    def embed_new_samples(
        self,
        data: AnnData | np.ndarray,
        *,
        layer: str | None = None,
        descriptors: Sequence[str] | np.ndarray | pd.DataFrame | None = None,
        max_epochs: int = 200,
        learning_rate: float | None = None,
        batch_size: int | None = None,
        early_stopping_patience: int = 20,
        seed: int | None = None,
    ) -> np.ndarray:
        """Fit embeddings for unseen samples with the network and gene embeddings frozen.

        Each new sample starts at the fitted embedding whose decoded profile is closest to it
        (mean squared error on its observed genes) and is optimised (Adam, MSE on the observed
        values) while every other parameter stays fixed — the original code of Trofimov et al.
        cannot embed new samples.

        Parameters
        ----------
        data
            (n_new, n_genes) values on the training scale, NaN for missing; AnnData columns are
            matched to the fitted genes by name.
        layer, descriptors
            As in :meth:`fit`; descriptor levels must have been seen at fit time.
        max_epochs, learning_rate, batch_size, early_stopping_patience, seed
            Optimisation settings (defaults: 200 epochs, the fit's learning rate and batch size,
            patience 20 on the training loss, the fit's seed).

        Returns
        -------
        np.ndarray
            float32 (n_new, sample_embedding_size).

        Raises
        ------
        InvalidInputError
            Missing genes, unseen descriptor levels, infinite values, no observed value, or a
            seed that is not an int in [0, 2**63).
        ShapeMismatchError
            Arrays with the wrong number of genes.

        """
        network, state = self._fitted()
        matched = match_features(data, state.feature_names)
        matrix = dense_matrix(matched, layer=layer)
        levels = state.descriptor_levels if state.descriptor_names else None
        if state.descriptor_names and descriptors is None:
            descriptors = state.descriptor_names if isinstance(matched, AnnData) else None
            if descriptors is None:
                raise InvalidInputError(
                    f"this model uses descriptors {state.descriptor_names}; pass descriptors="
                )
        codes, _, _ = descriptor_codes(matched, descriptors, levels)
        s = self.settings
        frozen = copy.deepcopy(network)
        for parameter in frozen.parameters():
            parameter.requires_grad_(False)
        seed = int_seed(s.seed if seed is None else seed, below=TORCH_SEEDS)
        table = torch.nn.Embedding(matrix.shape[0], s.sample_embedding_size).to(self.device)
        with torch.no_grad():
            table.weight.copy_(torch.from_numpy(self._closest_embeddings(matrix, seed)))
        frozen.sample_embedding = table
        sampler = NarrowFormatSampler(
            matrix, batch_size=batch_size or s.batch_size, seed=seed, descriptors=codes
        )
        config = TrainingConfig(
            max_epochs=max_epochs,
            learning_rate=learning_rate or s.learning_rate,
            early_stopping_patience=early_stopping_patience,
            progress=self.progress,
            description="embedding new samples",
        )
        train(
            frozen,
            _mse_loss(frozen, self.device),
            _epochs(sampler),
            config,
            parameters=table.parameters(),
        )
        return table.weight.detach().cpu().numpy().copy()

    def _closest_embeddings(
        self, matrix: np.ndarray, seed: int, *, max_candidates: int = 1000
    ) -> np.ndarray:
        """Start values for new samples: the fitted embedding whose decoding fits them best.

        Compares each new sample (on its observed genes) with the decoded profiles of up to
        ``max_candidates`` fitted samples, by mean squared error, using matrix products
        (Σ o·x² − 2 (o∘x)·dᵀ + o·(d²)ᵀ). Starting there instead of at the centroid avoids
        the poor local minima of optimising through a frozen nonlinear decoder.
        """
        network, state = self._fitted()
        n_fitted = len(state.sample_names)
        rows = np.arange(n_fitted)
        if n_fitted > max_candidates:
            rows = np.sort(np.random.default_rng(seed).choice(n_fitted, max_candidates, False))
        descriptors = self._fitted_descriptors()
        if descriptors is not None:
            descriptors = descriptors[torch.as_tensor(rows, device=descriptors.device)]
        embeddings = network.sample_embedding.weight.detach()[torch.as_tensor(rows)]
        decoded = self._decode(embeddings, descriptors).astype(np.float64)  # (c, m)
        observed = np.isfinite(matrix)
        values = np.where(observed, matrix, 0.0).astype(np.float64)
        squared_error = (
            (values**2).sum(axis=1, keepdims=True)
            - 2.0 * values @ decoded.T
            + observed.astype(np.float64) @ (decoded**2).T
        )
        best = rows[np.argmin(squared_error, axis=1)]
        return self.sample_embeddings_[best]

    def transfer(
        self,
        samples: Sequence[int] | Sequence[str] | np.ndarray,
        *,
        groups: Sequence[Any] | np.ndarray | pd.Series,
        from_group: Any,
        to_group: Any,
    ) -> np.ndarray:
        """Move samples from one group to another by vector arithmetic and decode (§3.8).

        The embedding of each sample is shifted by ``centroid(to_group) − centroid(from_group)``
        (centroids of the fitted sample embeddings of each group), then decoded for all genes.

        Parameters
        ----------
        samples
            Indices or names of fitted samples.
        groups
            Group label of every fitted sample (length n_samples), e.g. tissue or sex.
        from_group, to_group
            Labels present in ``groups``.

        Returns
        -------
        np.ndarray
            float32 (len(samples), n_genes) decoded expression after the shift.

        Raises
        ------
        InvalidInputError
            Unknown samples or group labels, or an empty group.
        ShapeMismatchError
            If ``groups`` does not have one label per fitted sample.

        """
        network, state = self._fitted()
        labels = np.asarray(groups, dtype=object)
        if labels.shape != (len(state.sample_names),):
            raise ShapeMismatchError(
                f"groups must have one label per fitted sample ({len(state.sample_names)}), "
                f"got shape {labels.shape}"
            )
        rows = self._sample_rows(samples)
        embeddings = network.sample_embedding.weight.detach()
        centroids = {}
        for label in (from_group, to_group):
            members = np.flatnonzero(labels == label)
            if members.size == 0:
                raise InvalidInputError(
                    f"group {label!r} has no fitted samples; groups present: "
                    f"{sorted(set(labels.tolist()), key=str)}"
                )
            centroids[label] = embeddings[torch.as_tensor(members)].mean(dim=0)
        shifted = embeddings[torch.as_tensor(rows)] + centroids[to_group] - centroids[from_group]
        descriptors = self._fitted_descriptors()
        if descriptors is not None:
            descriptors = descriptors[torch.as_tensor(rows, device=descriptors.device)]
        return self._decode(shifted, descriptors)

    def _sample_rows(self, samples: Sequence[int] | Sequence[str] | np.ndarray) -> np.ndarray:
        _, state = self._fitted()
        wanted = np.atleast_1d(np.asarray(samples))
        if wanted.dtype.kind in "iu":
            bad = wanted[(wanted < 0) | (wanted >= len(state.sample_names))]
            if bad.size:
                raise InvalidInputError(f"sample indices out of range: {bad[:5].tolist()}")
            return wanted.astype(np.int64)
        lookup = {name: row for row, name in enumerate(state.sample_names)}
        unknown = [name for name in wanted.tolist() if name not in lookup]
        if unknown:
            raise InvalidInputError(f"unknown samples: {unknown[:5]}")
        return np.asarray([lookup[name] for name in wanted.tolist()], dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def _network_sizes(self) -> dict[str, Any]:
        network, _ = self._fitted()
        return {
            "n_samples": network.sample_embedding.num_embeddings,
            "n_genes": network.gene_embedding.num_embeddings,
        }

    def _build_network(
        self, sizes: dict[str, Any], state: FactorizedEmbeddingState
    ) -> FactorizedEmbeddingNetwork:
        s = self.settings
        return FactorizedEmbeddingNetwork(
            sizes["n_samples"],
            sizes["n_genes"],
            sample_embedding_size=s.sample_embedding_size,
            gene_embedding_size=s.gene_embedding_size,
            hidden_sizes=s.hidden_sizes,
            descriptor_levels=[len(level) for level in state.descriptor_levels],
            descriptor_embedding_size=s.descriptor_embedding_size,
        )


def _names(data: AnnData | np.ndarray, *, axis: str, size: int) -> list[str]:
    if isinstance(data, AnnData):
        return [str(name) for name in (data.var_names if axis == "var" else data.obs_names)]
    prefix = "gene" if axis == "var" else "sample"
    return [f"{prefix}_{index}" for index in range(size)]
