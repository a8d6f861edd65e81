"""Bernoulli variational autoencoder for binary (dichotomised) omics data.

Reference: Hess M, Hackenberg M, Binder H. "Exploring generative deep learning for omics data
using log-linear models." Bioinformatics 36(20), 5045-5053 (2020), §2.4 (VAE: tanh encoder and
decoder, sigmoid Bernoulli output, standard normal prior, Adam with learning rate 1e-4, latent
size 5-20) and §2.5 (synthetic data and dichotomised latent units for the log-linear
explanation). The VAE is Kingma & Welling (2014), "Auto-encoding variational Bayes".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from anndata import AnnData

from omicsembed._memory import check_memory
from omicsembed.exceptions import InvalidInputError
from omicsembed.models._base import FittedState, VAEModel, VAESettings
from omicsembed.models._data import (
    RowMatrix,
    Seed,
    binary_matrix,
    feature_names,
    torch_generator,
)
from omicsembed.nn.bernoulli_vae import BernoulliVAENetwork

__all__ = ["BernoulliVAE", "BernoulliVAESettings"]


@dataclass
class BernoulliVAESettings(VAESettings):
    """Hyperparameters of :class:`BernoulliVAE` (defaults after Hess et al. 2020, §2.4)."""

    n_latent: int = 10
    hidden_sizes: tuple[int, ...] = (100,)
    learning_rate: float = 1e-4
    batch_size: int = 32
    max_epochs: int | None = 300
    early_stopping_patience: int | None = 20

    def check(self) -> None:
        """Validate (see :meth:`VAESettings.check`); also the latent size and widths."""
        super().check()
        if self.n_latent < 1:
            raise InvalidInputError(f"n_latent must be ≥ 1, got {self.n_latent}")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise InvalidInputError(
                f"hidden_sizes must be positive widths, got {self.hidden_sizes}"
            )
        if self.max_epochs is None:
            raise InvalidInputError("max_epochs must be an integer ≥ 1")


def _binary_matrix(data: AnnData | RowMatrix, *, layer: str | None, what: str) -> RowMatrix:
    return binary_matrix(data, layer=layer, what=what, model="the Bernoulli VAE")


class BernoulliVAE(VAEModel[BernoulliVAESettings, BernoulliVAENetwork, FittedState]):
    """Variational autoencoder for binary data, with synthetic data for log-linear explanation.

    Encoder and decoder are MLPs with tanh hidden layers; the decoder ends in a sigmoid giving
    Bernoulli means for every feature, the prior is N(0, I) and the posterior a diagonal
    Gaussian. Training maximises the evidence lower bound (ELBO, one reparameterised draw per
    cell and step) with Adam through :func:`omicsembed.train.loop.train` (shuffled cell
    minibatches, validation loss, early stopping with best-weight restoration, checkpoints).
    The decoder's output bias starts at the logits of the feature frequencies.

    Parameters
    ----------
    n_latent
        Latent dimension r (the paper used 5-20; default 10).
    hidden_sizes
        Widths of the encoder's tanh hidden layers; the decoder mirrors them (default one
        layer of 100 units; the paper does not fix the widths).
    learning_rate
        Adam learning rate (paper: 1e-4).
    weight_decay
        Adam L2 weight decay (default 0).
    batch_size
        Cells per minibatch.
    max_epochs
        Passes over the training cells.
    validation_fraction
        Fraction of cells held out (seeded) for the validation loss and early stopping; 0
        trains on all cells and monitors the training loss.
    early_stopping_patience
        Epochs without improvement before stopping (None: never stop early).
    checkpoint_every
        Epochs between checkpoints when ``fit(checkpoint_dir=...)`` is given.
    n_epochs_kl_warmup
        The KL weight rises linearly from 0 to 1 over this many epochs (None: no warm-up, as
        in the paper).
    seed
        Seed of the initialisation, the noise of training, the shuffling and the split.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    progress
        Show a progress bar (None: ``omicsembed.settings.progress_bar``).

    Attributes
    ----------
    network_ : BernoulliVAENetwork
        The trained torch module.
    history_ : pandas.DataFrame
        Loss (−ELBO per cell, nats) per epoch: ``epoch``, ``train_loss``, ``validation_loss``.
    feature_names_ : list of str
        Features the model was fitted on.

    Notes
    -----
    Hess, Hackenberg & Binder (2020), Bioinformatics 36:5045, §2.4-2.5; Kingma & Welling
    (2014). :meth:`generate` gives what :func:`omicsembed.explain.explain` needs: synthetic
    binary features and the dichotomised latent code that produced them.

    Examples
    --------
    >>> from omicsembed.models import BernoulliVAE
    >>> from omicsembed.simulate import stair_cell_stages
    >>> adata = stair_cell_stages(500, seed=0)
    >>> vae = BernoulliVAE(max_epochs=5, progress=False).fit(adata)  # doctest: +SKIP
    >>> features, latent = vae.generate(1000, seed=1)  # doctest: +SKIP

    """

    model_name = "BernoulliVAE"
    chunk_size = 65_536

    def __init__(
        self,
        *,
        n_latent: int = 10,
        hidden_sizes: Sequence[int] = (100,),
        learning_rate: float = 1e-4,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        max_epochs: int = 300,
        validation_fraction: float = 0.1,
        early_stopping_patience: int | None = 20,
        checkpoint_every: int = 10,
        n_epochs_kl_warmup: int | None = None,
        seed: int = 0,
        device: str = "auto",
        progress: bool | None = None,
    ) -> None:
        settings = BernoulliVAESettings(
            n_latent=int(n_latent),
            hidden_sizes=tuple(int(h) for h in hidden_sizes),
            learning_rate=float(learning_rate),
            weight_decay=float(weight_decay),
            batch_size=int(batch_size),
            max_epochs=int(max_epochs),
            validation_fraction=float(validation_fraction),
            early_stopping_patience=early_stopping_patience,
            checkpoint_every=int(checkpoint_every),
            n_epochs_kl_warmup=None if n_epochs_kl_warmup is None else int(n_epochs_kl_warmup),
            seed=int(seed) if isinstance(seed, np.integer) else seed,  # checked below
        )
        super().__init__(settings, device=device, progress=progress)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data: AnnData | RowMatrix,
        *,
        layer: str | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        monitor: Callable[[BernoulliVAE, int], None] | None = None,
    ) -> BernoulliVAE:
        """Train the VAE on binary data.

        Parameters
        ----------
        data
            AnnData (values from ``.X`` or ``layer``, dense or sparse) or an (n_cells,
            n_features) array of 0/1 values (bool, integer or float), e.g. from
            :func:`omicsembed.pp.dichotomize`.
        layer
            AnnData layer to use instead of ``.X``.
        checkpoint_dir
            Write checkpoints there every ``checkpoint_every`` epochs (and when interrupted).
        resume
            Continue from the checkpoint in ``checkpoint_dir``: the run of the same data
            and settings (only ``max_epochs``, ``early_stopping_patience`` and
            ``checkpoint_every`` may differ).
        monitor
            Called as ``monitor(model, epoch)`` after every epoch with the model in its current
            state (it can already ``generate``), e.g. an
            :class:`omicsembed.explain.SelectionMonitor` (Hess et al. 2020, Figs. 3-5).

        Returns
        -------
        BernoulliVAE
            ``self``. With AnnData input, also writes the posterior means to
            ``.obsm["X_bvae"]`` (float32, (n_cells, n_latent)) and the settings to
            ``.uns["bvae"]["params"]``.

        Raises
        ------
        InvalidInputError
            Values other than 0/1 (the message names the first offending feature and lists
            offending columns), missing values, too few cells for the validation split, or a
            checkpoint of another run (other data or settings) or that does not fit.

        """
        matrix = _binary_matrix(data, layer=layer, what="the training data")
        s = self.settings
        train_rows, _ = self._split(matrix.shape[0])
        torch.manual_seed(s.seed)
        network = BernoulliVAENetwork(
            matrix.shape[1], n_latent=s.n_latent, hidden_sizes=s.hidden_sizes
        )
        ones = np.asarray(matrix[train_rows].sum(axis=0, dtype=np.float64)).ravel()
        frequencies = (ones / train_rows.size).astype(np.float32)  # exact for dense and CSR
        network.set_output_bias(torch.from_numpy(frequencies))
        names = feature_names(data, matrix.shape[1])
        self._train_network(
            network.to(self.device),
            matrix,
            max_epochs=int(s.max_epochs or 1),
            description="Bernoulli VAE",
            state=lambda history: FittedState(feature_names=names, history=history),
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            monitor=monitor,
        )
        if isinstance(data, AnnData):
            data.obsm["X_bvae"] = self._posterior(matrix)[0]
            data.uns["bvae"] = {"params": self._params()}
        return self

    def fit_transform(self, data: AnnData | RowMatrix, **kwargs: Any) -> np.ndarray:
        """Fit, then return the posterior means of the cells (n_cells, n_latent) float32."""
        layer = kwargs.get("layer")
        return self.fit(data, **kwargs).transform(data, layer=layer)

    # ------------------------------------------------------------------ fitted state
    def _read(self, data: AnnData | RowMatrix, *, layer: str | None, what: str) -> RowMatrix:
        return _binary_matrix(data, layer=layer, what=what)

    def _posterior(self, matrix: RowMatrix) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and log-variances, each float32 (n_cells, n_latent)."""
        network, _ = self._fitted()
        means, log_vars = [], []
        with torch.no_grad():
            for _, chunk in self._chunks(matrix):
                posterior = network.encode(chunk)
                means.append(posterior.mean.cpu().numpy())
                log_vars.append(posterior.log_variance.cpu().numpy())
        return np.concatenate(means), np.concatenate(log_vars)

    # ------------------------------------------------------------------ uses
    def transform(self, data: AnnData | RowMatrix, *, layer: str | None = None) -> np.ndarray:
        """Posterior means of cells: the latent representation.

        Parameters
        ----------
        data
            Binary cells with the fitted features (AnnData columns are matched by name;
            arrays must have the fitted width).
        layer
            AnnData layer to use instead of ``.X``.

        Returns
        -------
        np.ndarray
            float32 (n_cells, n_latent), the means of q(z | x).

        Raises
        ------
        InvalidInputError
            Not fitted, non-binary or missing values, or AnnData lacking fitted features.
        ShapeMismatchError
            An array whose number of columns differs from the fitted features.

        """
        return self._posterior(self._cells(data, layer, "the cells"))[0]

    def get_latent_representation(
        self, data: AnnData | RowMatrix, *, layer: str | None = None
    ) -> np.ndarray:
        """Alias of :meth:`transform` (scvi-tools naming)."""
        return self.transform(data, layer=layer)

    def elbo(
        self,
        data: AnnData | RowMatrix,
        *,
        layer: str | None = None,
        n_draws: int = 10,
        seed: Seed = None,
    ) -> np.ndarray:
        """Evidence lower bound of every cell: a lower bound of log p(x), in nats.

        ``ELBO(x) = E_q[log p(x | z)] − KL(q(z | x) ‖ N(0, I))``, the expectation estimated
        with ``n_draws`` reparameterised draws per cell (the KL term is exact).

        Parameters
        ----------
        data
            Binary cells with the fitted features.
        layer
            AnnData layer to use instead of ``.X``.
        n_draws
            Monte Carlo draws per cell (≥ 1).
        seed
            Seed or numpy Generator of the draws (None: ``omicsembed.settings.seed``).

        Returns
        -------
        np.ndarray
            float64 (n_cells,), each ≤ 0 (higher is better).

        Raises
        ------
        InvalidInputError
            As :meth:`transform`, or ``n_draws < 1``.
        ShapeMismatchError
            As :meth:`transform`.

        """
        if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 1:
            raise InvalidInputError(f"n_draws must be an integer ≥ 1, got {n_draws!r}")
        network, _ = self._fitted()
        matrix = self._cells(data, layer, "the cells")
        generator = torch_generator(seed)
        total = np.zeros(matrix.shape[0], dtype=np.float64)
        with torch.no_grad():
            for start, chunk in self._chunks(matrix):
                for _ in range(n_draws):
                    out = network.loss(chunk, generator=generator)
                    total[start : start + chunk.shape[0]] += out.elbo.double().cpu().numpy()
        return total / n_draws

    def generate(
        self,
        n_samples: int,
        *,
        seed: Seed = None,
        from_cells: AnnData | RowMatrix | None = None,
        layer: str | None = None,
        dichotomize_latent: Literal["zero", "median"] = "zero",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw synthetic binary cells and the dichotomised latent codes that produced them.

        Each synthetic sample draws z from the prior N(0, I) (or from the posterior q(z | x)
        of a given cell), then every feature from Bernoulli(sigmoid(decoder(z))). The latent
        code is dichotomised for the log-linear explanation (Hess et al. 2020, §2.5): z > 0
        (``"zero"``) or z above the median of its unit over the ``n_samples`` draws
        (``"median"``) gives 1.

        Parameters
        ----------
        n_samples
            Number of synthetic samples (≥ 1).
        seed
            Seed or numpy Generator (None: ``omicsembed.settings.seed``); the same seed gives
            the same samples on any device (the noise is drawn on the CPU).
        from_cells
            Binary cells (AnnData or array with the fitted features): sample z from their
            posteriors instead of the prior. Sample ``i`` uses cell ``i mod n_cells``, so every
            cell contributes equally when ``n_samples`` is a multiple of the number of cells.
        layer
            AnnData layer of ``from_cells`` to use instead of ``.X``.
        dichotomize_latent
            ``"zero"`` (default; the prior's median) or ``"median"`` (empirical median of each
            unit over the draws; ties at the median give 0).

        Returns
        -------
        features : np.ndarray
            uint8 (n_samples, n_features) synthetic 0/1 data.
        latent : np.ndarray
            uint8 (n_samples, n_latent) dichotomised latent codes.

        Raises
        ------
        InvalidInputError
            Not fitted, ``n_samples < 1`` or beyond this machine's memory, an unknown
            ``dichotomize_latent``, a bad seed, or invalid ``from_cells`` (see
            :meth:`transform`).
        ShapeMismatchError
            ``from_cells`` with the wrong number of columns.

        """
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer):
            raise InvalidInputError(f"n_samples must be an integer ≥ 1, got {n_samples!r}")
        if n_samples < 1:
            raise InvalidInputError(f"n_samples must be ≥ 1, got {n_samples}")
        if dichotomize_latent not in ("zero", "median"):
            raise InvalidInputError(
                f"dichotomize_latent must be 'zero' or 'median', got {dichotomize_latent!r}"
            )
        network, _ = self._fitted()
        n_latent = self.settings.n_latent
        check_memory(
            self.synthetic_bytes(n_samples, network.n_features),
            f"{int(n_samples):,} synthetic cells of {network.n_features} genes",
        )
        generator = torch_generator(seed)
        noise = torch.randn((int(n_samples), n_latent), generator=generator)
        if from_cells is None:
            z = noise
        else:
            mean, log_var = self._posterior(self._cells(from_cells, layer, "from_cells"))
            rows = np.arange(int(n_samples)) % mean.shape[0]
            z = (
                torch.from_numpy(mean[rows])
                + torch.exp(0.5 * torch.from_numpy(log_var[rows])) * noise
            )
        features = np.empty((int(n_samples), network.n_features), dtype=np.uint8)
        with torch.no_grad():
            for start in range(0, int(n_samples), self.chunk_size):
                block = z[start : start + self.chunk_size]
                probabilities = network.decode(block.to(self.device)).cpu()
                drawn = torch.bernoulli(probabilities, generator=generator)
                features[start : start + block.shape[0]] = drawn.numpy().astype(np.uint8)
        codes = z.numpy()
        threshold = np.median(codes, axis=0) if dichotomize_latent == "median" else 0.0
        latent = np.ascontiguousarray(codes > threshold, dtype=np.uint8)
        return features, latent

    def synthetic_bytes(self, n_samples: int, n_features: int) -> int:
        """Bytes :meth:`generate` allocates for ``n_samples`` cells of ``n_features`` genes.

        0/1 genes and latent units, float32 codes and their noise, and a median's copy; known
        before fitting, so that a job can refuse a size beyond memory before any training.
        """
        return int(n_samples) * (int(n_features) + 10 * self.settings.n_latent)

    # ------------------------------------------------------------------ persistence
    def _network_sizes(self) -> dict[str, Any]:
        return {"n_features": self._fitted()[0].n_features}

    def _build_network(self, sizes: dict[str, Any], state: FittedState) -> BernoulliVAENetwork:
        if len(state.feature_names) != sizes["n_features"]:
            raise InvalidInputError("the saved feature names do not match n_features")
        return BernoulliVAENetwork(
            sizes["n_features"],
            n_latent=self.settings.n_latent,
            hidden_sizes=self.settings.hidden_sizes,
        )
