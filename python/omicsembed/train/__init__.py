"""Training utilities: the narrow-format minibatch sampler of factorized embeddings.

- :class:`NarrowFormatSampler` — shuffled minibatches of (sample, gene, value) entries of a
  matrix, one pass per epoch, without materialising the n·m index table (Rust core).
- :class:`NarrowFormatDataset` — the same as a torch ``IterableDataset`` for ``DataLoader``
  workers.
- :class:`NarrowBatch` — one minibatch (int64 samples/genes, optional descriptors, float32
  values).
"""

from omicsembed.train.sampler import NarrowBatch, NarrowFormatDataset, NarrowFormatSampler

__all__ = ["NarrowBatch", "NarrowFormatDataset", "NarrowFormatSampler"]
