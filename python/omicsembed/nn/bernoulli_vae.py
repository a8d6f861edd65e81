"""Variational autoencoder with a Bernoulli likelihood for binary omics data (pure torch).

Reference: Hess M, Hackenberg M, Binder H. "Exploring generative deep learning for omics data
using log-linear models." Bioinformatics 36(20), 5045-5053 (2020), §2.4; the VAE itself is
Kingma & Welling (2014), "Auto-encoding variational Bayes", with the Bernoulli decoder of their
appendix C.1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from omicsembed.nn.vae import (
    BernoulliLikelihood,
    DiagonalGaussian,
    Inference,
    VariationalAutoencoder,
)

__all__ = ["BernoulliVAENetwork"]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers)


class BernoulliVAENetwork(VariationalAutoencoder):
    """Encoder and decoder MLPs with tanh hidden layers and a sigmoid Bernoulli output.

    Encoder: ``x → tanh(Linear) → … → (mean, log_var)`` (two linear heads) of a diagonal Gaussian
    q(z | x). Decoder: ``z → tanh(Linear) → … → Linear → logits`` with the hidden widths in
    reverse order; ``sigmoid(logits)`` are the Bernoulli means p(x_j = 1 | z). Prior
    p(z) = N(0, I). A :class:`omicsembed.nn.vae.VariationalAutoencoder`: the loss is the shared
    negative ELBO with a :class:`~omicsembed.nn.vae.BernoulliLikelihood`.

    Parameters
    ----------
    n_features
        Number of binary inputs p.
    n_latent
        Latent dimension r (the paper used 5-20).
    hidden_sizes
        Widths of the encoder's tanh hidden layers (the decoder mirrors them); at least one.

    Raises
    ------
    ValueError
        Non-positive sizes.

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

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Return the posterior q(z | x), (batch, n_latent)."""
        hidden = self.encoder(x)
        return DiagonalGaussian.from_log_var(self.mean_head(hidden), self.log_var_head(hidden))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Return decoder logits (batch, n_features) for latent codes z (batch, n_latent)."""
        return self.output(self.decoder(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Return the Bernoulli means ``sigmoid(logits)`` in (0, 1), (batch, n_features)."""
        return torch.sigmoid(self.decode_logits(z))

    def inference(
        self,
        x: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> Inference:
        """Encode x (batch, n_features) and draw one reparameterised z.

        ``generator`` (on ``x``'s device, or CPU) makes the noise reproducible; without it the
        global torch RNG is used. ``batch_index`` is not used by this model.
        """
        posterior = self.encode(x)
        return Inference(posterior, posterior.rsample(generator))

    def generative(
        self,
        z: torch.Tensor,
        *,
        inference: Inference | None = None,
        batch_index: torch.Tensor | None = None,
    ) -> BernoulliLikelihood:
        """Return p(x | z): independent Bernoulli features with the decoder's logits."""
        return BernoulliLikelihood(self.decode_logits(z))

    def negative_elbo(
        self, x: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(batch,) ``−ELBO`` (one Monte Carlo draw), in nats; the training loss per sample."""
        return self.loss(x, generator=generator).negative_elbo

    def extra_repr(self) -> str:
        """Sizes shown by ``print(module)``."""
        return (
            f"n_features={self.n_features}, n_latent={self.n_latent}, "
            f"hidden_sizes={self.hidden_sizes}"
        )
