"""User-facing estimators: fit / transform / save / load, AnnData aware."""

from omicsembed.models.bernoulli_vae import BernoulliVAE
from omicsembed.models.boltzmann import BernoulliRBM, BoltzmannMonitor, DeepBoltzmannMachine
from omicsembed.models.factorized_embedding import FactorizedEmbedding
from omicsembed.models.ldvae import LDVAE

__all__ = [
    "LDVAE",
    "BernoulliRBM",
    "BernoulliVAE",
    "BoltzmannMonitor",
    "DeepBoltzmannMachine",
    "FactorizedEmbedding",
]
