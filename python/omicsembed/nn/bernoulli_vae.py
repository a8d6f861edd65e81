"""Variational autoencoder with a Bernoulli likelihood for binary omics data (pure torch).

Reference: Hess M, Hackenberg M, Binder H. "Exploring generative deep learning for omics data
using log-linear models." Bioinformatics 36(20), 5045-5053 (2020), §2.4; the VAE itself is
Kingma & Welling (2014), "Auto-encoding variational Bayes", with the Bernoulli decoder of their
appendix C.1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BernoulliVAENetwork", "BernoulliVAEOutput"]


@dataclass
class BernoulliVAEOutput:
    """One pass through the VAE (all tensors have the batch as first dimension).

    Attributes
    ----------
    logits
        (batch, n_features) decoder logits; ``sigmoid(logits)`` are the Bernoulli means.
    mean, log_var
        (batch, n_latent) parameters of the Gaussian posterior q(z | x).
    z
        (batch, n_latent) reparameterised sample ``mean + exp(log_var / 2) * eps``.
    reconstruction
        (batch,) log p(x | z) summed over features (≤ 0).
    kl
        (batch,) KL(q(z | x) ‖ N(0, I)) in closed form (≥ 0).

    """

    logits: torch.Tensor
    mean: torch.Tensor
    log_var: torch.Tensor
    z: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor

    @property
    def elbo(self) -> torch.Tensor:
        """(batch,) evidence lower bound ``reconstruction − kl`` (one Monte Carlo draw)."""
        return self.reconstruction - self.kl


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers)


class BernoulliVAENetwork(nn.Module):
    """Encoder and decoder MLPs with tanh hidden layers and a sigmoid Bernoulli output.

    Encoder: ``x → tanh(Linear) → … → (mean, log_var)`` (two linear heads) of a diagonal Gaussian
    q(z | x). Decoder: ``z → tanh(Linear) → … → Linear → logits`` with the hidden widths in
    reverse order; ``sigmoid(logits)`` are the Bernoulli means p(x_j = 1 | z). Prior
    p(z) = N(0, I).

    Parameters
    ----------
    n_features
        Number of binary inputs p.
    n_latent
        Latent dimension r (the paper used 5-20).
    hidden_sizes
        Widths of the encoder's tanh hidden layers (the decoder mirrors them); at least one.

    """

    def __init__(
        self, n_features: int, *, n_latent: int = 10, hidden_sizes: Sequence[int] = (100,)
    ) -> None:
        super().__init__()
        widths = [int(h) for h in hidden_sizes]
        if n_features < 1 or n_latent < 1 or not widths or min(widths) < 1:
            raise ValueError("n_features, n_latent and hidden sizes must be positive")
        self.n_features = int(n_features)
        self.n_latent = int(n_latent)
        self.hidden_sizes = tuple(widths)
        self.encoder = _mlp([self.n_features, *widths])
        self.mean_head = nn.Linear(widths[-1], self.n_latent)
        self.log_var_head = nn.Linear(widths[-1], self.n_latent)
        self.decoder = _mlp([self.n_latent, *reversed(widths)])
        self.output = nn.Linear(widths[0], self.n_features)

    def set_output_bias(self, frequencies: torch.Tensor, *, eps: float = 1e-3) -> None:
        """Start the decoder at the empirical feature frequencies: bias = logit(clipped mean)."""
        clipped = frequencies.detach().to(self.output.bias).clamp(eps, 1.0 - eps)
        with torch.no_grad():
            self.output.bias.copy_(torch.log(clipped) - torch.log1p(-clipped))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior parameters (mean, log variance), each (batch, n_latent)."""
        hidden = self.encoder(x)
        return self.mean_head(hidden), self.log_var_head(hidden)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Return decoder logits (batch, n_features) for latent codes z (batch, n_latent)."""
        return self.output(self.decoder(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return the Bernoulli means ``sigmoid(logits)`` in (0, 1), (batch, n_features)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> BernoulliVAEOutput:
        """Encode, draw one reparameterised z, decode; with the ELBO terms per sample.

        ``generator`` (on ``x``'s device, or CPU) makes the noise reproducible; without it the
        global torch RNG is used.
        """
        mean, log_var = self.encode(x)
        if generator is None:
            noise = torch.randn_like(mean)
        else:
            noise = torch.randn(
                mean.shape, generator=generator, device=generator.device, dtype=mean.dtype
            ).to(mean.device)
        z = mean + torch.exp(0.5 * log_var) * noise
        logits = self.decode_logits(z)
        reconstruction = -nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="none"
        ).sum(dim=1)
        kl = 0.5 * (mean.square() + log_var.exp() - 1.0 - log_var).sum(dim=1)
        return BernoulliVAEOutput(logits, mean, log_var, z, reconstruction, kl)

    def negative_elbo(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(batch,) ``−ELBO`` (one Monte Carlo draw), in nats; the training loss per sample."""
        return -self.forward(x, generator=generator).elbo

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return (
            f"n_features={self.n_features}, n_latent={self.n_latent}, "
            f"hidden_sizes={self.hidden_sizes}"
        )
