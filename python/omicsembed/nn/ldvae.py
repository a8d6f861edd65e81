"""Linearly decoded variational autoencoder for counts (LDVAE), pure torch.

Reference: Svensson V, Gayoso A, Yosef N, Pachter L. "Interpretable factor models of single-cell
RNA-seq via variational autoencoders." Bioinformatics 36(11), 3418-3421 (2020), §2 (the scVI
generative model of Lopez et al. 2018, *Nature Methods* 15:1053, with its neural decoder
replaced by a linear one). Layer choices follow scvi-tools' ``LDVAE`` module (``LinearSCVI``):
batch-norm momentum 0.01 and eps 1e-3, posterior variances ``exp(·) + 1e-4``, inverse
dispersion ``exp(px_r)`` with ``px_r ~ N(0, 1)`` at initialisation, and the batch covariate
one-hot encoded into the linear decoder's input (``LinearDecoderSCVI``) with a library-size
prior per batch.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from omicsembed.nn.vae import (
    DiagonalGaussian,
    Inference,
    NegativeBinomialLikelihood,
    VariationalAutoencoder,
)

__all__ = ["LDVAENetwork", "LatentDistribution", "log_nb_positive"]

LatentDistribution = Literal["normal", "ln"]

_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3
_VAR_EPS = 1e-4
_MAX_LOG_LIBRARY = 30.0


def log_nb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Log-density of the negative binomial with mean ``mu`` and inverse dispersion ``theta``.

    Elementwise ``log NB(x; μ, θ)`` (variance μ + μ²/θ) with ``eps`` guarding the logarithms,
    as scvi-tools' ``log_nb_positive``; see
    :class:`omicsembed.nn.vae.NegativeBinomialLikelihood`.

    Parameters
    ----------
    x
        Counts (≥ 0), any shape.
    mu
        Means (> 0), broadcastable to ``x``.
    theta
        Inverse dispersions (> 0), broadcastable to ``x``.
    eps
        Guard added inside the logarithms.

    Returns
    -------
    torch.Tensor
        Elementwise log-probabilities (≤ 0), shape of the broadcast.

    """
    return NegativeBinomialLikelihood(mu, theta, eps).log_prob(x)


def _hidden(n_in: int, n_hidden: int, dropout_rate: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.BatchNorm1d(n_hidden, momentum=_BN_MOMENTUM, eps=_BN_EPS),
        nn.ReLU(),
        nn.Dropout(dropout_rate),
    )


class LDVAENetwork(VariationalAutoencoder):
    """scVI's negative-binomial VAE with a linear decoder (LDVAE).

    Generative model (Svensson et al. 2020, §2): ε ~ N(0, I), z = ε (``"normal"``) or
    z = softmax(ε) (``"ln"``, logistic normal); log l ~ N(μ_l[b], σ²_l[b]) with μ_l, σ²_l the
    mean and variance of the log library sizes of the data in batch b;
    ``px_scale = softmax(BN(W [z, onehot(b)]))`` with W (n_genes × (n_latent + n_batch)) without
    bias (the one-hot only when ``n_batch > 1``) and BN a batch norm over genes (optional);
    x_g ~ NB(mean l · px_scale_g, inverse dispersion θ_g = exp(px_r_g)).

    Inference: log1p(x) → Linear(n_hidden) → BatchNorm → ReLU → Dropout → linear heads for
    the mean and log-variance of q(ε | x); a second encoder of the same shape gives
    q(log l | x) unless the observed library size is used. The encoders do not see the batch
    (scvi-tools' default ``encode_covariates=False``).

    Parameters
    ----------
    n_genes
        Number of genes (≥ 1).
    n_latent
        Latent dimension (≥ 1).
    n_hidden
        Width of the encoders' hidden layer.
    dropout_rate
        Dropout of the encoders' hidden layer, in [0, 1).
    latent_distribution
        ``"normal"`` or ``"ln"`` (logistic normal).
    use_batch_norm
        Batch norm on the decoded parameters (the encoders always use batch norm).
    use_observed_library
        Use log Σ_g x_g (clamped at ≥ 1 count) as log l instead of inferring it.
    n_batch
        Number of batches (≥ 1); with more than one, ``batch_index`` is required.
    library_log_mean, library_log_var
        Prior mean and variance of log l, one value or one per batch (ignored with the
        observed library). The bias of the library encoder's mean head starts at their mean,
        and drawn log library sizes are clamped at 30 so that early steps cannot overflow.

    Raises
    ------
    ValueError
        Non-positive sizes, a dropout outside [0, 1), an unknown latent distribution, prior
        sizes that do not match ``n_batch``, or a non-positive prior variance.

    """

    library_log_mean: torch.Tensor
    library_log_var: torch.Tensor

    def __init__(
        self,
        n_genes: int,
        *,
        n_latent: int = 10,
        n_hidden: int = 128,
        dropout_rate: float = 0.1,
        latent_distribution: LatentDistribution = "normal",
        use_batch_norm: bool = True,
        use_observed_library: bool = False,
        n_batch: int = 1,
        library_log_mean: float | list[float] = 0.0,
        library_log_var: float | list[float] = 1.0,
    ) -> None:
        super().__init__()
        if min(n_genes, n_latent, n_hidden, n_batch) < 1:
            raise ValueError("n_genes, n_latent, n_hidden and n_batch must be ≥ 1")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        if latent_distribution not in ("normal", "ln"):
            raise ValueError(
                f"latent_distribution must be 'normal' or 'ln', got {latent_distribution!r}"
            )
        prior_mean = torch.as_tensor(library_log_mean, dtype=torch.float32).reshape(-1)
        prior_var = torch.as_tensor(library_log_var, dtype=torch.float32).reshape(-1)
        if prior_mean.numel() == 1:
            prior_mean = prior_mean.expand(n_batch).clone()
        if prior_var.numel() == 1:
            prior_var = prior_var.expand(n_batch).clone()
        if prior_mean.numel() != n_batch or prior_var.numel() != n_batch:
            raise ValueError(f"give one library prior or one per batch ({n_batch})")
        if not bool((prior_var > 0).all()):
            raise ValueError(f"library_log_var must be > 0, got {prior_var.tolist()}")
        self.n_genes = self.n_features = int(n_genes)
        self.n_latent = int(n_latent)
        self.n_hidden = int(n_hidden)
        self.n_batch = int(n_batch)
        self.dropout_rate = float(dropout_rate)
        self.latent_distribution: LatentDistribution = latent_distribution
        self.use_batch_norm = bool(use_batch_norm)
        self.use_observed_library = bool(use_observed_library)
        self.z_encoder = _hidden(self.n_genes, self.n_hidden, self.dropout_rate)
        self.z_mean = nn.Linear(self.n_hidden, self.n_latent)
        self.z_log_var = nn.Linear(self.n_hidden, self.n_latent)
        self.l_encoder: nn.Sequential | None = None
        self.l_mean: nn.Linear | None = None
        self.l_log_var: nn.Linear | None = None
        if not self.use_observed_library:
            self.l_encoder = _hidden(self.n_genes, self.n_hidden, self.dropout_rate)
            self.l_mean = nn.Linear(self.n_hidden, 1)
            self.l_log_var = nn.Linear(self.n_hidden, 1)
            with torch.no_grad():  # start q(log l | x) at the prior mean (stabilises early steps)
                self.l_mean.bias.fill_(float(prior_mean.mean()))
        self.n_covariates = self.n_batch if self.n_batch > 1 else 0
        self.decoder = nn.Linear(self.n_latent + self.n_covariates, self.n_genes, bias=False)
        self.decoder_bn: nn.BatchNorm1d | None = (
            nn.BatchNorm1d(self.n_genes, momentum=_BN_MOMENTUM, eps=_BN_EPS)
            if self.use_batch_norm
            else None
        )
        self.px_r = nn.Parameter(torch.randn(self.n_genes))
        self.register_buffer("library_log_mean", prior_mean)
        self.register_buffer("library_log_var", prior_var)

    # ------------------------------------------------------------------ pieces
    def _batch(self, like: torch.Tensor, batch_index: torch.Tensor | None) -> torch.Tensor:
        """(batch,) int64 batch codes (zeros for a single-batch model)."""
        if batch_index is None:
            if self.n_batch > 1:
                raise ValueError(f"this model has {self.n_batch} batches: give batch_index")
            return torch.zeros(like.shape[0], dtype=torch.long, device=like.device)
        return batch_index.reshape(-1).to(device=like.device, dtype=torch.long)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Return q(ε | x), (batch, n_latent), from counts x (variances ``exp(·) + 1e-4``)."""
        hidden = self.z_encoder(torch.log1p(x))
        return DiagonalGaussian(self.z_mean(hidden), torch.exp(self.z_log_var(hidden)) + _VAR_EPS)

    def transform_latent(self, epsilon: torch.Tensor) -> torch.Tensor:
        """Map the Gaussian ε to z: identity (``"normal"``) or softmax (``"ln"``)."""
        if self.latent_distribution == "ln":
            return torch.softmax(epsilon, dim=-1)
        return epsilon

    def inference(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> Inference:
        """Encode counts x (batch, n_genes) and draw z and log l (reparameterised).

        ``extras`` holds ``"library"`` (q(log l | x), None with the observed library) and
        ``"log_library"`` ((batch, 1) the log library size given to the decoder).
        """
        posterior = self.encode(x)
        z = self.transform_latent(posterior.rsample(generator))
        if self.l_encoder is None or self.l_mean is None or self.l_log_var is None:
            log_library = torch.log(x.sum(dim=1, keepdim=True).clamp(min=1.0))
            return Inference(posterior, z, {"library": None, "log_library": log_library})
        hidden = self.l_encoder(torch.log1p(x))
        library = DiagonalGaussian(
            self.l_mean(hidden), torch.exp(self.l_log_var(hidden)) + _VAR_EPS
        )
        # guard against exp overflow while the encoder is far off (e^30 ≈ 1e13 counts)
        log_library = library.rsample(generator).clamp(max=_MAX_LOG_LIBRARY)
        return Inference(posterior, z, {"library": library, "log_library": log_library})

    def decoded(self, z: torch.Tensor, batch_index: torch.Tensor | None = None) -> torch.Tensor:
        """``BN(W [z, onehot(batch)])``: the gene logits (batch, n_genes) before the softmax."""
        if self.n_covariates:
            onehot = nn.functional.one_hot(self._batch(z, batch_index), self.n_batch)
            z = torch.cat([z, onehot.to(z.dtype)], dim=-1)
        raw = self.decoder(z)
        return self.decoder_bn(raw) if self.decoder_bn is not None else raw

    def px_scale(self, z: torch.Tensor, batch_index: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised expression ``softmax(BN(W [z, b]))`` (batch, n_genes), rows sum to 1."""
        return torch.softmax(self.decoded(z, batch_index), dim=-1)

    @property
    def theta(self) -> torch.Tensor:
        """Inverse dispersion per gene, ``exp(px_r)`` (n_genes,), > 0."""
        return torch.exp(self.px_r)

    def generative(
        self,
        z: torch.Tensor,
        *,
        inference: Inference | None = None,
        batch_index: torch.Tensor | None = None,
        log_library: torch.Tensor | None = None,
    ) -> NegativeBinomialLikelihood:
        """Return p(x | z, l): NB with mean ``l · px_scale`` and inverse dispersion θ.

        The log library size is ``log_library`` ((batch, 1)) when given, else the draw in
        ``inference.extras["log_library"]``.

        Raises
        ------
        ValueError
            Without a log library size.

        """
        if log_library is None:
            drawn = inference.extras.get("log_library") if inference is not None else None
            if not isinstance(drawn, torch.Tensor):
                raise ValueError("give log_library or an inference with a library draw")
            log_library = drawn
        mu = torch.exp(log_library) * self.px_scale(z, batch_index)
        return NegativeBinomialLikelihood(mu, self.theta)

    def extra_loss_terms(
        self, inference: Inference, *, batch_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``kl_library``: KL(q(log l | x) ‖ N(μ_l[b], σ²_l[b])); 0 with the observed library."""
        library = inference.extras.get("library")
        if not isinstance(library, DiagonalGaussian):
            return {"kl_library": torch.zeros_like(inference.posterior.mean[:, 0])}
        batch = self._batch(inference.z, batch_index)
        prior_mean = self.library_log_mean[batch][:, None]
        prior_var = self.library_log_var[batch][:, None]
        return {"kl_library": library.kl(prior_mean, prior_var)}

    def loadings(self) -> torch.Tensor:
        """Return the decoder weights scaled by the batch norm, ``diag(γ/√(running_var + eps)) W``.

        Returns the (n_genes, n_latent) matrix mapping z to the gene logits up to a per-gene
        offset (the batch columns dropped), comparable to scvi-tools'
        ``LinearSCVI.get_loadings``.
        """
        weight = self.decoder.weight[:, : self.n_latent]
        bn = self.decoder_bn
        if bn is None or bn.running_var is None:
            return weight.detach().clone()
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        return (scale[:, None] * weight).detach()

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return (
            f"n_genes={self.n_genes}, n_latent={self.n_latent}, n_hidden={self.n_hidden}, "
            f"n_batch={self.n_batch}, latent_distribution={self.latent_distribution!r}, "
            f"use_batch_norm={self.use_batch_norm}, "
            f"use_observed_library={self.use_observed_library}"
        )
