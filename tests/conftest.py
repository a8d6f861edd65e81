"""Shared test configuration."""

from __future__ import annotations

import os

import pytest

# The test models are tiny: one torch thread is faster than two and does not fight with
# pytest workers or other processes for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)
