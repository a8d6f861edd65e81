"""Pure torch ``nn.Module``s, one file per model family (no AnnData in here)."""

from omicsembed.nn.bernoulli_vae import BernoulliVAENetwork
from omicsembed.nn.factorized import FactorizedEmbeddingNetwork
from omicsembed.nn.ldvae import LDVAENetwork

__all__ = ["BernoulliVAENetwork", "FactorizedEmbeddingNetwork", "LDVAENetwork"]
