"""Pure torch ``nn.Module``s, one file per model family (no AnnData in here).

``vae`` holds the base every VAE builds on (posterior, likelihoods, loss object, module API).
"""

from omicsembed.nn.bernoulli_vae import BernoulliVAENetwork
from omicsembed.nn.factorized import FactorizedEmbeddingNetwork
from omicsembed.nn.ldvae import LDVAENetwork
from omicsembed.nn.vae import (
    BernoulliLikelihood,
    DiagonalGaussian,
    GaussianLikelihood,
    NegativeBinomialLikelihood,
    VAELoss,
    VariationalAutoencoder,
)

__all__ = [
    "BernoulliLikelihood",
    "BernoulliVAENetwork",
    "DiagonalGaussian",
    "FactorizedEmbeddingNetwork",
    "GaussianLikelihood",
    "LDVAENetwork",
    "NegativeBinomialLikelihood",
    "VAELoss",
    "VariationalAutoencoder",
]
