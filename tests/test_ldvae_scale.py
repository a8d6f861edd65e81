"""LDVAE scales in cells with constant memory per minibatch: 100,000 cells × 2,000 genes.

Run in a fresh interpreter so that the memory of other tests does not count. A thread samples
the resident set size (``/proc/self/statm``) every 20 ms while the model trains one epoch on a
CSR matrix, encodes every cell and scores 5,000 of them; the growth must stay below half of
what one dense float32 copy of the counts would take.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import gc, json, os, threading, time
    import numpy as np
    from scipy import sparse
    from omicsembed.models import LDVAE

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    n_cells, n_genes = 100_000, 2_000
    rng = np.random.default_rng(0)
    programs = rng.normal(size=(n_genes, 3)) * (rng.random((n_genes, 3)) < 0.3)
    base = rng.normal(-2.0, 1.0, n_genes)
    indptr, indices, data = [np.zeros(1, np.int64)], [], []
    for start in range(0, n_cells, 2_000):
        logits = rng.normal(size=(2_000, 3)) @ programs.T + base
        scale = np.exp(logits - logits.max(1, keepdims=True))
        scale /= scale.sum(1, keepdims=True)
        block = sparse.csr_matrix(
            rng.poisson(scale * rng.lognormal(np.log(1000.0), 0.3, (2_000, 1))).astype(np.float32)
        )
        indptr.append(block.indptr[1:].astype(np.int64) + indptr[-1][-1])
        indices.append(block.indices)
        data.append(block.data)
    counts = sparse.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)),
        shape=(n_cells, n_genes),
    )
    del indptr, indices, data, block, logits, scale
    gc.collect()
    before = rss()
    peak = [before]
    running = [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], rss())
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    model = LDVAE(n_latent=10, max_epochs=1, progress=False, device="cpu").fit(counts)
    fit_seconds = time.perf_counter() - started
    latent = model.get_latent_representation(counts)
    error = model.reconstruction_error(counts[:5_000], seed=0)
    running[0] = False
    thread.join()
    print(json.dumps({
        "nnz": int(counts.nnz),
        "csr_mib": (counts.data.nbytes + counts.indices.nbytes + counts.indptr.nbytes) / 2**20,
        "dense_float32_mib": n_cells * n_genes * 4 / 2**20,
        "rss_before_mib": before / 2**20,
        "growth_mib": (peak[0] - before) / 2**20,
        "fit_seconds": fit_seconds,
        "latent_finite": bool(np.isfinite(latent).all()),
        "latent_shape": list(latent.shape),
        "error_finite": bool(np.isfinite(error).all()),
    }))
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc for RSS")
def test_one_epoch_on_100k_cells_in_constant_memory() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1800, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)  # shown with pytest -s: the figures of the closing note
    assert report["latent_shape"] == [100_000, 10]
    assert report["latent_finite"] and report["error_finite"]
    assert report["growth_mib"] < 0.5 * report["dense_float32_mib"], report
