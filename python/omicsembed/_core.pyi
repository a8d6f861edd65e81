"""Typed stub of the Rust extension ``omicsembed._core`` (checked by ``mypy.stubtest``)."""

__version__: str

# --- tissue (Tau index, tissue-specific Wasserstein distance) ---

# --- sampler (narrow-format minibatch sampler) ---
