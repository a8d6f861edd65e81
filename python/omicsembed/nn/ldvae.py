"""Linearly decoded variational autoencoder for counts (LDVAE), pure torch.

Reference: Svensson V, Gayoso A, Yosef N, Pachter L. "Interpretable factor models of single-cell
RNA-seq via variational autoencoders." Bioinformatics 36(11), 3418-3421 (2020), §2 (the scVI
generative model of Lopez et al. 2018, *Nature Methods* 15:1053, with its neural decoder
replaced by a linear one). Layer choices follow scvi-tools' ``LDVAE`` module (``LinearSCVI``):
batch-norm momentum 0.01 and eps 1e-3, posterior variances ``exp(·) + 1e-4``, inverse
dispersion ``exp(px_r)`` with ``px_r ~ N(0, 1)`` at initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = ["LDVAEInference", "LDVAELoss", "LDVAENetwork", "LatentDistribution", "log_nb_positive"]

LatentDistribution = Literal["normal", "ln"]

_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3
_VAR_EPS = 1e-4
_MAX_LOG_LIBRARY = 30.0


def log_nb_positive(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Log-density of the negative binomial with mean ``mu`` and inverse dispersion ``theta``.

    ``log NB(x; μ, θ) = θ log(θ/(θ+μ)) + x log(μ/(θ+μ)) + lgamma(x+θ) − lgamma(θ) −
    lgamma(x+1)`` (variance μ + μ²/θ), elementwise, with ``eps`` guarding the logarithms (as
    scvi-tools' ``log_nb_positive``).

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
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1.0)
    )


@dataclass
class LDVAEInference:
    """Posterior quantities of one batch (first dimension = cells).

    Attributes
    ----------
    qz_mean, qz_var
        (batch, n_latent) mean and variance of the Gaussian q(ε | x).
    z
        (batch, n_latent) one reparameterised draw: ε for ``"normal"``, ``softmax(ε)`` for
        ``"ln"``.
    ql_mean, ql_var
        (batch, 1) mean and variance of q(log l | x); ``None`` with the observed library.
    log_library
        (batch, 1) log library size used by the decoder (a draw, or the observed log total).

    """

    qz_mean: torch.Tensor
    qz_var: torch.Tensor
    z: torch.Tensor
    ql_mean: torch.Tensor | None
    ql_var: torch.Tensor | None
    log_library: torch.Tensor


@dataclass
class LDVAELoss:
    """Terms of the negative ELBO per cell (each (batch,), in nats).

    Attributes
    ----------
    reconstruction
        −log p(x | z, l) summed over genes (≥ 0 up to the eps guard).
    kl_z
        KL(q(ε | x) ‖ N(0, I)) (on the untransformed normal for ``"ln"``), ≥ 0.
    kl_l
        KL(q(log l | x) ‖ N(μ_l, σ²_l)) with the data-derived prior; 0 with the observed library.
    total
        ``reconstruction + kl_weight · kl_z + kl_l`` (the KL warm-up weights only kl_z, as in
        scvi-tools).

    """

    reconstruction: torch.Tensor
    kl_z: torch.Tensor
    kl_l: torch.Tensor
    total: torch.Tensor


def _hidden(n_in: int, n_hidden: int, dropout_rate: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.BatchNorm1d(n_hidden, momentum=_BN_MOMENTUM, eps=_BN_EPS),
        nn.ReLU(),
        nn.Dropout(dropout_rate),
    )


def _normal_kl(
    mean: torch.Tensor, var: torch.Tensor, prior_mean: torch.Tensor, prior_var: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean, var) ‖ N(prior_mean, prior_var)) elementwise."""
    return 0.5 * (torch.log(prior_var / var) + (var + (mean - prior_mean) ** 2) / prior_var - 1.0)


class LDVAENetwork(nn.Module):
    """scVI's negative-binomial VAE with a linear decoder (LDVAE), single batch.

    Generative model (Svensson et al. 2020, §2): ε ~ N(0, I), z = ε (``"normal"``) or
    z = softmax(ε) (``"ln"``, logistic normal); log l ~ N(μ_l, σ²_l) with μ_l, σ²_l the mean
    and variance of the log library sizes of the data; ``px_scale = softmax(BN(W z))`` with
    W (n_genes × n_latent) without bias and BN a batch norm over genes (optional);
    x_g ~ NB(mean l · px_scale_g, inverse dispersion θ_g = exp(px_r_g)).

    Inference: log1p(x) → Linear(n_hidden) → BatchNorm → ReLU → Dropout → linear heads for
    the mean and log-variance of q(ε | x); a second encoder of the same shape gives
    q(log l | x) unless the observed library size is used.

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
        Batch norm on the decoded parameters ``W z`` (the encoders always use batch norm).
    use_observed_library
        Use log Σ_g x_g (clamped at ≥ 1 count) as log l instead of inferring it.
    library_log_mean, library_log_var
        Prior mean and variance of log l (ignored with the observed library). The bias of
        the library encoder's mean head starts at ``library_log_mean``, and drawn log library
        sizes are clamped at 30 so that early steps cannot overflow.

    Raises
    ------
    ValueError
        Non-positive sizes, a dropout outside [0, 1), an unknown latent distribution or a
        non-positive prior variance.

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
        library_log_mean: float = 0.0,
        library_log_var: float = 1.0,
    ) -> None:
        super().__init__()
        if min(n_genes, n_latent, n_hidden) < 1:
            raise ValueError("n_genes, n_latent and n_hidden must be ≥ 1")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}")
        if latent_distribution not in ("normal", "ln"):
            raise ValueError(
                f"latent_distribution must be 'normal' or 'ln', got {latent_distribution!r}"
            )
        if not library_log_var > 0:
            raise ValueError(f"library_log_var must be > 0, got {library_log_var}")
        self.n_genes = int(n_genes)
        self.n_latent = int(n_latent)
        self.n_hidden = int(n_hidden)
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
                self.l_mean.bias.fill_(float(library_log_mean))
        self.decoder = nn.Linear(self.n_latent, self.n_genes, bias=False)
        self.decoder_bn: nn.BatchNorm1d | None = (
            nn.BatchNorm1d(self.n_genes, momentum=_BN_MOMENTUM, eps=_BN_EPS)
            if self.use_batch_norm
            else None
        )
        self.px_r = nn.Parameter(torch.randn(self.n_genes))
        self.register_buffer("library_log_mean", torch.tensor([float(library_log_mean)]))
        self.register_buffer("library_log_var", torch.tensor([float(library_log_var)]))

    # ------------------------------------------------------------------ pieces
    @staticmethod
    def _noise(
        like: torch.Tensor, generator: torch.Generator | None, n_samples: int | None = None
    ) -> torch.Tensor:
        shape = like.shape if n_samples is None else (n_samples, *like.shape)
        if generator is None:
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        return torch.randn(
            shape, generator=generator, device=generator.device, dtype=like.dtype
        ).to(like.device)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mean, variance) of q(ε | x), each (batch, n_latent), from counts x."""
        hidden = self.z_encoder(torch.log1p(x))
        return self.z_mean(hidden), torch.exp(self.z_log_var(hidden)) + _VAR_EPS

    def transform_latent(self, epsilon: torch.Tensor) -> torch.Tensor:
        """Map the Gaussian ε to z: identity (``"normal"``) or softmax (``"ln"``)."""
        if self.latent_distribution == "ln":
            return torch.softmax(epsilon, dim=-1)
        return epsilon

    def inference(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> LDVAEInference:
        """Encode counts x (batch, n_genes) and draw z and log l (reparameterised)."""
        qz_mean, qz_var = self.encode(x)
        z = self.transform_latent(qz_mean + qz_var.sqrt() * self._noise(qz_mean, generator))
        if self.l_encoder is None or self.l_mean is None or self.l_log_var is None:
            log_library = torch.log(x.sum(dim=1, keepdim=True).clamp(min=1.0))
            return LDVAEInference(qz_mean, qz_var, z, None, None, log_library)
        hidden = self.l_encoder(torch.log1p(x))
        ql_mean = self.l_mean(hidden)
        ql_var = torch.exp(self.l_log_var(hidden)) + _VAR_EPS
        log_library = ql_mean + ql_var.sqrt() * self._noise(ql_mean, generator)
        # guard against exp overflow while the encoder is far off (e^30 ≈ 1e13 counts)
        log_library = log_library.clamp(max=_MAX_LOG_LIBRARY)
        return LDVAEInference(qz_mean, qz_var, z, ql_mean, ql_var, log_library)

    def decoded(self, z: torch.Tensor) -> torch.Tensor:
        """``BN(W z)``: the gene logits (batch, n_genes) before the softmax."""
        raw = self.decoder(z)
        return self.decoder_bn(raw) if self.decoder_bn is not None else raw

    def px_scale(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised expression ``softmax(BN(W z))`` (batch, n_genes), rows sum to 1."""
        return torch.softmax(self.decoded(z), dim=-1)

    @property
    def theta(self) -> torch.Tensor:
        """Inverse dispersion per gene, ``exp(px_r)`` (n_genes,), > 0."""
        return torch.exp(self.px_r)

    def loadings(self) -> torch.Tensor:
        """Return the decoder weights scaled by the batch norm, ``diag(γ/√(running_var + eps)) W``.

        Returns the (n_genes, n_latent) matrix mapping z to the gene logits up to a per-gene
        offset, comparable to scvi-tools' ``LinearSCVI.get_loadings``.
        """
        weight = self.decoder.weight
        bn = self.decoder_bn
        if bn is None or bn.running_var is None:
            return weight.detach().clone()
        gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        return (scale[:, None] * weight).detach()

    # ------------------------------------------------------------------ loss
    def loss(
        self,
        x: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> LDVAELoss:
        """Negative ELBO terms per cell for counts x (batch, n_genes), one posterior draw.

        Parameters
        ----------
        x
            Counts, float32 (batch, n_genes), ≥ 0.
        kl_weight
            KL warm-up factor in [0, 1] applied to kl_z.
        generator
            Random generator of the draws (None: torch's global RNG).

        Returns
        -------
        LDVAELoss
            Per-cell terms; ``total.mean()`` is the training loss.

        """
        inference = self.inference(x, generator=generator)
        scale = self.px_scale(inference.z)
        mu = torch.exp(inference.log_library) * scale
        reconstruction = -log_nb_positive(x, mu, self.theta).sum(dim=-1)
        zeros = torch.zeros_like(inference.qz_mean)
        kl_z = _normal_kl(inference.qz_mean, inference.qz_var, zeros, zeros + 1.0).sum(dim=-1)
        if inference.ql_mean is None or inference.ql_var is None:
            kl_l = torch.zeros_like(reconstruction)
        else:
            kl_l = _normal_kl(
                inference.ql_mean, inference.ql_var, self.library_log_mean, self.library_log_var
            ).sum(dim=-1)
        total = reconstruction + kl_weight * kl_z + kl_l
        return LDVAELoss(reconstruction, kl_z, kl_l, total)

    def forward(
        self, x: torch.Tensor, *, kl_weight: float = 1.0, generator: torch.Generator | None = None
    ) -> LDVAELoss:
        """Compute the loss terms (same as :meth:`loss`)."""
        return self.loss(x, kl_weight=kl_weight, generator=generator)

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return (
            f"n_genes={self.n_genes}, n_latent={self.n_latent}, n_hidden={self.n_hidden}, "
            f"latent_distribution={self.latent_distribution!r}, "
            f"use_batch_norm={self.use_batch_norm}, "
            f"use_observed_library={self.use_observed_library}"
        )
