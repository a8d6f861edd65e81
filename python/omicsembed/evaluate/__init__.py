"""Benchmarks of embeddings (Trofimov et al. 2020, Bioinformatics, §3).

One concept per module:

- :mod:`~omicsembed.evaluate.knn` — :func:`knn_classification` (kNN accuracy of an embedding
  over repeated stratified splits) and its result :class:`ClassificationScores`;
- :mod:`~omicsembed.evaluate.baselines` — :func:`pca_embedding`, the same-dimension PCA
  baseline;
- :mod:`~omicsembed.evaluate.reconstruction` — :func:`per_sample_pearson` (reconstruction
  quality) and :func:`distance_preservation` (how well an embedding keeps sample distances).
"""

from __future__ import annotations

from omicsembed.evaluate.baselines import pca_embedding
from omicsembed.evaluate.knn import ClassificationScores, knn_classification
from omicsembed.evaluate.reconstruction import distance_preservation, per_sample_pearson

__all__ = [
    "ClassificationScores",
    "distance_preservation",
    "knn_classification",
    "pca_embedding",
    "per_sample_pearson",
]
