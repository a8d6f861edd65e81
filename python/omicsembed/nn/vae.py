"""Shared base of the VAE family: posteriors, likelihoods, the loss object and the module API.

Every VAE of omicsembed (Bernoulli VAE, LDVAE, and the environment and multi-omics VAEs built on
them) is a :class:`VariationalAutoencoder`: ``inference`` maps data to a diagonal Gaussian
posterior q(ε | x) and one reparameterised draw, ``generative`` maps a latent code to a
likelihood p(x | z), and the shared :meth:`VariationalAutoencoder.loss` combines them into a
:class:`VAELoss` (reconstruction, KL, extra terms, KL warm-up weight). Models only define the
two maps; training, validation and the model wrappers see one interface.

References: Kingma & Welling (2014), "Auto-encoding variational Bayes" (ELBO, reparameterisation,
closed-form Gaussian KL, appendix B); Lopez et al. (2018), *Nature Methods* 15:1053 (scVI:
negative-binomial likelihood with library size, KL warm-up); the negative-binomial density in
the guarded form of scvi-tools' ``log_nb_positive``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "BernoulliLikelihood",
    "DiagonalGaussian",
    "GaussianLikelihood",
    "Inference",
    "Likelihood",
    "NegativeBinomialLikelihood",
    "VAELoss",
    "VariationalAutoencoder",
    "kl_warmup_weight",
    "normal_noise",
]


def normal_noise(
    like: torch.Tensor, generator: torch.Generator | None, n_draws: int | None = None
) -> torch.Tensor:
    """Draw standard normal noise shaped like ``like`` (or ``(n_draws, *like.shape)``).

    Drawn on ``generator``'s device (a CPU generator gives the same numbers on any device) and
    moved to ``like``'s device; without a generator, torch's global RNG on ``like``'s device.
    """
    shape = like.shape if n_draws is None else (n_draws, *like.shape)
    if generator is None:
        return torch.randn(shape, dtype=like.dtype, device=like.device)
    drawn = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return drawn.to(like.device)


@dataclass
class DiagonalGaussian:
    """A diagonal Gaussian N(mean, diag(var)) over the last dimension (a posterior or prior).

    Attributes
    ----------
    mean
        (..., d) means.
    var
        (..., d) variances (> 0).
    log_var
        (..., d) log-variances when the encoder produced them (exact KL without ``log(var)``);
        computed from ``var`` otherwise.

    """

    mean: torch.Tensor
    var: torch.Tensor
    log_var: torch.Tensor | None = None

    @classmethod
    def from_log_var(cls, mean: torch.Tensor, log_var: torch.Tensor) -> DiagonalGaussian:
        """Build from means and log-variances (``var = exp(log_var)``)."""
        return cls(mean, torch.exp(log_var), log_var)

    @property
    def log_variance(self) -> torch.Tensor:
        """(..., d) log-variances (``log_var`` when given, else ``log(var)``)."""
        return self.log_var if self.log_var is not None else torch.log(self.var)

    @property
    def std(self) -> torch.Tensor:
        """(..., d) standard deviations."""
        if self.log_var is not None:
            return torch.exp(0.5 * self.log_var)
        return self.var.sqrt()

    def rsample(
        self, generator: torch.Generator | None = None, n_draws: int | None = None
    ) -> torch.Tensor:
        """Reparameterised draws ``mean + std · ε`` (Kingma & Welling 2014, §2.4).

        Returns shape ``mean.shape`` (or ``(n_draws, *mean.shape)``); differentiable in the
        parameters.
        """
        return self.mean + self.std * normal_noise(self.mean, generator, n_draws)

    def kl_standard_normal(self) -> torch.Tensor:
        """KL(self ‖ N(0, I)) summed over the last dimension, (...,), ≥ 0 (closed form)."""
        log_var = self.log_variance
        return 0.5 * (self.mean.square() + self.var - 1.0 - log_var).sum(dim=-1)

    def kl(self, prior_mean: torch.Tensor, prior_var: torch.Tensor) -> torch.Tensor:
        """KL(self ‖ N(prior_mean, prior_var)) summed over the last dimension, (...,), ≥ 0."""
        log_var = self.log_variance
        return (
            0.5
            * (
                torch.log(prior_var)
                - log_var
                + (self.var + (self.mean - prior_mean).square()) / prior_var
                - 1.0
            )
        ).sum(dim=-1)


class Likelihood(ABC):
    """An observation model p(x | z) with elementwise parameters (batch, n_features)."""

    @abstractmethod
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise log-density / log-mass of ``x`` (same shape), in nats."""

    @property
    @abstractmethod
    def mean(self) -> torch.Tensor:
        """Expected value of x, (batch, n_features)."""

    @abstractmethod
    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw of x (same shape as :attr:`mean`), without gradients."""


@dataclass
class GaussianLikelihood(Likelihood):
    """x ~ N(loc, var) elementwise (log-density ``−½ log(2π var) − (x − loc)² / (2 var)``)."""

    loc: torch.Tensor
    var: torch.Tensor

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise Gaussian log-density."""
        return -0.5 * (
            math.log(2.0 * math.pi) + torch.log(self.var) + (x - self.loc) ** 2 / self.var
        )

    @property
    def mean(self) -> torch.Tensor:
        """The location."""
        return self.loc

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``loc + sqrt(var) · ε``."""
        with torch.no_grad():
            return self.loc + self.var.sqrt() * normal_noise(self.loc, generator)


@dataclass
class BernoulliLikelihood(Likelihood):
    """x ~ Bernoulli(sigmoid(logits)) elementwise (x in {0, 1})."""

    logits: torch.Tensor

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``x log σ(logits) + (1 − x) log(1 − σ(logits))``, computed stably from the logits."""
        return -nn.functional.binary_cross_entropy_with_logits(self.logits, x, reduction="none")

    @property
    def mean(self) -> torch.Tensor:
        """Success probabilities ``sigmoid(logits)`` in (0, 1)."""
        return torch.sigmoid(self.logits)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """0/1 draws (float), drawn on the CPU when a CPU ``generator`` is given."""
        with torch.no_grad():
            probabilities = self.mean
            if generator is not None:
                probabilities = probabilities.to(generator.device)
            return torch.bernoulli(probabilities, generator=generator).to(self.logits.device)


@dataclass
class NegativeBinomialLikelihood(Likelihood):
    """x ~ NB(mean mu, inverse dispersion theta) elementwise: variance ``mu + mu²/theta``.

    ``log NB(x; μ, θ) = θ log(θ/(θ+μ)) + x log(μ/(θ+μ)) + lgamma(x+θ) − lgamma(θ) −
    lgamma(x+1)``, with ``eps`` inside the logarithms as scvi-tools' ``log_nb_positive`` (so a
    mean that underflows to 0 stays finite). Sampling is the Gamma–Poisson mixture
    ``x ~ Poisson(Gamma(θ, θ/μ))``.
    """

    mu: torch.Tensor
    theta: torch.Tensor
    eps: float = field(default=1e-8)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise NB log-mass of the counts ``x`` (≥ 0)."""
        mu, theta, eps = self.mu, self.theta, self.eps
        log_theta_mu = torch.log(theta + mu + eps)
        return (
            theta * (torch.log(theta + eps) - log_theta_mu)
            + x * (torch.log(mu + eps) - log_theta_mu)
            + torch.lgamma(x + theta)
            - torch.lgamma(theta)
            - torch.lgamma(x + 1.0)
        )

    @property
    def mean(self) -> torch.Tensor:
        """The means ``mu``."""
        return self.mu

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gamma–Poisson draws; ``generator`` seeds them (torch's Gamma takes no generator)."""
        with torch.no_grad():
            mu, theta = torch.broadcast_tensors(self.mu, self.theta)
            fork_devices = [mu.device] if mu.device.type == "cuda" else []
            with torch.random.fork_rng(devices=fork_devices):
                if generator is not None:
                    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                    torch.manual_seed(seed)
                rate = torch.distributions.Gamma(theta, theta / mu.clamp(min=self.eps)).sample()
                return torch.poisson(rate)


def kl_warmup_weight(epoch: int, n_epochs_warmup: int | None) -> float:
    """KL weight at 0-based ``epoch``: ``min(1, epoch / n_epochs_warmup)``; 1 without warm-up.

    The linear warm-up of scvi-tools (``n_epochs_kl_warmup``), after Sønderby et al. (2016).
    """
    if not n_epochs_warmup:
        return 1.0
    return min(1.0, epoch / n_epochs_warmup)


@dataclass
class Inference:
    """What :meth:`VariationalAutoencoder.inference` returns for one batch.

    Attributes
    ----------
    posterior
        q(ε | x), (batch, n_latent).
    z
        (batch, n_latent) the latent code given to the decoder: one reparameterised draw of
        ε, transformed by :meth:`VariationalAutoencoder.transform_latent`.
    extras
        Model-specific quantities (e.g. the library size posterior and draw of LDVAE).

    """

    posterior: DiagonalGaussian
    z: torch.Tensor
    extras: dict[str, torch.Tensor | DiagonalGaussian | None] = field(default_factory=dict)


@dataclass
class VAELoss:
    """Terms of the negative ELBO per sample (each (batch,), in nats).

    Attributes
    ----------
    reconstruction
        −log p(x | z) summed over features (one posterior draw).
    kl
        KL(q(ε | x) ‖ p(ε)) of the latent (≥ 0; for transformed latents on the untransformed ε).
    extra
        Further KL or penalty terms, unweighted (e.g. ``"kl_library"`` of LDVAE).
    kl_weight
        Warm-up weight of ``kl`` in :attr:`total`, in [0, 1].

    """

    reconstruction: torch.Tensor
    kl: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    kl_weight: float = 1.0

    @property
    def total(self) -> torch.Tensor:
        """(batch,) training loss ``reconstruction + kl_weight · kl + Σ extra``."""
        out = self.reconstruction + self.kl_weight * self.kl
        for term in self.extra.values():
            out = out + term
        return out

    @property
    def negative_elbo(self) -> torch.Tensor:
        """(batch,) ``−ELBO = reconstruction + kl + Σ extra`` (full KL weight)."""
        out = self.reconstruction + self.kl
        for term in self.extra.values():
            out = out + term
        return out

    @property
    def elbo(self) -> torch.Tensor:
        """(batch,) evidence lower bound (≤ log p(x) in expectation)."""
        return -self.negative_elbo


class VariationalAutoencoder(nn.Module, ABC):
    """Base of omicsembed's VAEs: define :meth:`inference` and :meth:`generative`.

    Subclasses set ``n_features`` and ``n_latent`` and implement the two maps; they may
    override :meth:`transform_latent` (e.g. the logistic normal of LDVAE) and
    :meth:`extra_loss_terms` (e.g. the library-size KL). Covariates such as a batch index are
    passed through as keyword arguments.

    The prior over ε is N(0, I).
    """

    n_features: int
    n_latent: int

    def transform_latent(self, epsilon: torch.Tensor) -> torch.Tensor:
        """Map the Gaussian ε to the decoder's z (identity by default)."""
        return epsilon

    @abstractmethod
    def inference(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> Inference:
        """Encode ``x`` (batch, n_features) into q(ε | x) and one reparameterised z."""

    @abstractmethod
    def generative(
        self,
        z: torch.Tensor,
        *,
        inference: Inference | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> Likelihood:
        """Decode ``z`` (batch, n_latent) into p(x | z); ``inference`` carries extras."""

    def extra_loss_terms(
        self, inference: Inference, *, batch_index: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Further (batch,) terms of the negative ELBO, unweighted (none by default)."""
        return {}

    def loss(
        self,
        x: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> VAELoss:
        """Negative ELBO terms per sample, one posterior draw.

        Parameters
        ----------
        x
            (batch, n_features) data, float32, on the module's device.
        kl_weight
            Warm-up factor in [0, 1] of the latent KL (see :func:`kl_warmup_weight`).
        generator
            Random generator of the draw (None: torch's global RNG).
        batch_index
            (batch,) int64 covariate codes for models that use them.

        Returns
        -------
        VAELoss
            ``loss.total.mean()`` is the training loss.

        """
        inference = self.inference(x, generator=generator, batch_index=batch_index)
        likelihood = self.generative(inference.z, inference=inference, batch_index=batch_index)
        reconstruction = -likelihood.log_prob(x).sum(dim=-1)
        return VAELoss(
            reconstruction=reconstruction,
            kl=inference.posterior.kl_standard_normal(),
            extra=self.extra_loss_terms(inference, batch_index=batch_index),
            kl_weight=float(kl_weight),
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        kl_weight: float = 1.0,
        generator: torch.Generator | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> VAELoss:
        """Compute the loss terms (same as :meth:`loss`)."""
        return self.loss(x, kl_weight=kl_weight, generator=generator, batch_index=batch_index)

    def sample_prior(
        self, n_samples: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n_samples, n_latent) draws of z: ε ~ N(0, I), then :meth:`transform_latent`."""
        reference = next(self.parameters())
        epsilon = normal_noise(reference.new_empty((n_samples, self.n_latent)), generator)
        return self.transform_latent(epsilon)
