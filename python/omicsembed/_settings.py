"""Package-wide settings: default seed, device, progress bars and threads."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Settings", "settings"]


@dataclass
class Settings:
    """Mutable package settings (``omicsembed.settings``).

    Attributes
    ----------
    seed
        Default seed used when an entry point gets ``seed=None``.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    progress_bar
        Show progress bars on long work. Defaults to off when the environment variable ``CI``
        is set.
    num_threads
        Threads for torch on CPU; ``None`` keeps torch's default.

    """

    seed: int = 0
    device: str = "auto"
    progress_bar: bool = not bool(os.environ.get("CI"))
    num_threads: int | None = None


settings = Settings()
