"""Kernels in a process forked after the extension started rayon's threads.

rayon's thread pool does not survive ``fork`` (torch ``DataLoader`` workers, ``multiprocessing``
with the fork start method): without care a parallel kernel waits forever in the child. The
child must get the parent's results, on one thread of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from omicsembed import _core

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def same(a: Any, b: Any) -> bool:
    """Equal arrays (NaN where NaN), lists and tuples of them, or equal values."""
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))


def child_agrees(forked_child: Callable[..., bool | None], compute: Callable[[], Any]) -> bool:
    """Runs ``compute`` here (starting rayon's threads), then in a forked child; whether the
    child answered within 60 s with the same result."""
    expected = compute()
    return forked_child(lambda: same(compute(), expected), 60.0) is True


def binary(rows: int, cols: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((rows, cols)) < 0.4).astype(np.uint8)


def test_log_linear_selection_in_a_forked_child(forked_child) -> None:
    x, u = binary(3000, 60, 1), binary(3000, 4, 2)
    assert child_agrees(forked_child, lambda: _core.select_features_loglinear(x, u, 6))


def test_rbm_training_in_halves_in_a_forked_child(forked_child) -> None:
    # large enough minibatches to train in two halves of the hidden units (one per thread in
    # the parent, both on the child's one thread)
    x = binary(300, 160, 3).astype(np.float64)
    assert child_agrees(
        forked_child,
        lambda: _core.persistent_contrastive_divergence(
            x, 100, learning_rates=[0.05, 0.05], batch_size=10, seed=4
        ),
    )


def test_gibbs_sampling_in_a_forked_child(forked_child) -> None:
    rng = np.random.default_rng(5)
    params = [
        (rng.normal(0, 0.3, (a, b)), rng.normal(0, 0.5, a), rng.normal(0, 0.5, b))
        for a, b in [(30, 20), (20, 10)]
    ]
    assert child_agrees(forked_child, lambda: _core.gibbs_sample(params, 5000, n_sweeps=5, seed=6))
