"""Benchmark: LDVAE training time, our :class:`omicsembed.models.LDVAE` vs scvi-tools' LinearSCVI.

Reports seconds per 1000 cells per 10 epochs (the unit of Svensson et al. 2020, Bioinformatics
36(11):3418, who give 3.2-3.9 s per 1000 cells per 10 epochs on CPU) for the same model and
settings (n_latent 10, one hidden layer of 128, Adam lr 1e-3, weight decay 1e-6, minibatches of
128, KL warm-up over 400 epochs, every cell trained on: no validation split) on

- ``real``: the embedded pbmc68k_reduced counts (700 cells x 400 genes, CSR), and
- ``synthetic``: negative-binomial counts from a linear factor model (default 20,000 cells x
  2,000 genes, 10 factors; stored as CSR, as single-cell data usually is).

The time is the wall time of ``fit`` / ``train`` (setup included) on the same CPU with the same
number of torch threads. If scvi-tools is not installed only ours is timed (and the JSON says so).
Prints a table and one JSON line; ``speedup`` is scvi-tools' time over ours (> 1: ours faster).

Usage: ``python benches/bench_ldvae.py [--cells 20000 --genes 2000 --epochs 10 --threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from typing import Any

import numpy as np
import torch
from anndata import AnnData
from scipy import sparse

from omicsembed.datasets import pbmc68k_reduced
from omicsembed.models.ldvae import LDVAE

PAPER_S_PER_1000_CELLS_10_EPOCHS = (3.2, 3.9)


def synthetic_counts(n_cells: int, n_genes: int, n_factors: int = 10, seed: int = 0) -> AnnData:
    """NB counts: softmax(W z + b) times a log-normal library, inverse dispersion 2 per gene."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 1.0, (n_genes, n_factors)) * (rng.random((n_genes, n_factors)) < 0.1)
    offset = rng.normal(0.0, 1.0, n_genes)
    out = []
    for start in range(0, n_cells, 5000):
        rows = min(5000, n_cells - start)
        z = rng.normal(size=(rows, n_factors))
        logits = z @ weights.T + offset
        scale = np.exp(logits - logits.max(axis=1, keepdims=True))
        scale /= scale.sum(axis=1, keepdims=True)
        library = np.exp(rng.normal(np.log(3000.0), 0.4, (rows, 1)))
        mean = library * scale
        counts = rng.poisson(rng.gamma(2.0, mean / 2.0)).astype(np.float32)
        out.append(sparse.csr_matrix(counts))
    adata = AnnData(sparse.vstack(out, format="csr"))
    adata.var_names = [f"gene_{g}" for g in range(n_genes)]
    adata.obs_names = [f"cell_{c}" for c in range(n_cells)]
    return adata


def time_ours(adata: AnnData, epochs: int) -> float:
    """Wall seconds of ``LDVAE.fit`` on all cells for ``epochs`` epochs."""
    model = LDVAE(max_epochs=epochs, validation_fraction=0.0, progress=False, device="cpu", seed=0)
    started = time.perf_counter()
    model.fit(adata.X)
    return time.perf_counter() - started


def time_scvi(adata: AnnData, epochs: int) -> float:
    """Wall seconds of ``setup_anndata`` + ``LinearSCVI(...).train`` for ``epochs`` epochs."""
    import scvi

    scvi.settings.seed = 0
    data = adata.copy()
    started = time.perf_counter()
    scvi.model.LinearSCVI.setup_anndata(data)
    model = scvi.model.LinearSCVI(data, n_latent=10)
    model.train(
        max_epochs=epochs,
        train_size=1.0,
        batch_size=128,
        accelerator="cpu",
        enable_progress_bar=False,
        plan_kwargs={"lr": 1e-3, "weight_decay": 1e-6},
    )
    return time.perf_counter() - started


def per_1000_cells_10_epochs(seconds: float, n_cells: int, epochs: int) -> float:
    """Normalise a training time to seconds per 1000 cells per 10 epochs."""
    return seconds / (n_cells / 1000.0) / (epochs / 10.0)


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20000, help="synthetic cells")
    parser.add_argument("--genes", type=int, default=2000, help="synthetic genes")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per fit")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both tools)")
    parser.add_argument("--no-scvi", action="store_true", help="time ours only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    has_scvi = False
    if not args.no_scvi:
        try:
            import scvi  # noqa: F401

            has_scvi = True
        except ImportError:
            print("scvi-tools is not installed: timing ours only (pip install 'omicsembed[scvi]')")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)

    sets = {
        "real": pbmc68k_reduced(),
        "synthetic": synthetic_counts(args.cells, args.genes),
    }
    rows: list[dict[str, Any]] = []
    for name, adata in sets.items():
        n_cells, n_genes = adata.shape
        ours = time_ours(adata, args.epochs)
        row: dict[str, Any] = {
            "set": name,
            "cells": n_cells,
            "genes": n_genes,
            "epochs": args.epochs,
            "ours_s": round(ours, 3),
            "ours_s_per_1000_cells_10_epochs": round(
                per_1000_cells_10_epochs(ours, n_cells, args.epochs), 4
            ),
        }
        if has_scvi:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = time_scvi(adata, args.epochs)
            row["scvi_s"] = round(theirs, 3)
            row["scvi_s_per_1000_cells_10_epochs"] = round(
                per_1000_cells_10_epochs(theirs, n_cells, args.epochs), 4
            )
            row["speedup"] = round(theirs / ours, 3)
        rows.append(row)

    print(f"\nLDVAE training, {args.threads} torch thread(s), s per 1000 cells per 10 epochs")
    print(
        f"{'set':<10} {'cells':>7} {'genes':>6} {'epochs':>6} {'ours':>8} {'scvi':>8} "
        f"{'speedup':>8}"
    )
    for row in rows:
        scvi_cell = f"{row['scvi_s_per_1000_cells_10_epochs']:8.3f}" if has_scvi else f"{'-':>8}"
        speed_cell = f"{row['speedup']:8.2f}" if has_scvi else f"{'-':>8}"
        print(
            f"{row['set']:<10} {row['cells']:>7} {row['genes']:>6} {row['epochs']:>6} "
            f"{row['ours_s_per_1000_cells_10_epochs']:8.3f} {scvi_cell} {speed_cell}"
        )
    print(f"paper (Svensson et al. 2020, CPU): {PAPER_S_PER_1000_CELLS_10_EPOCHS} s")
    print(
        json.dumps(
            {
                "bench": "ldvae",
                "threads": args.threads,
                "scvi_tools": has_scvi,
                "rows": rows,
                "speedup_real": rows[0].get("speedup"),
                "speedup_synthetic": rows[1].get("speedup"),
                "paper_s_per_1000_cells_10_epochs": list(PAPER_S_PER_1000_CELLS_10_EPOCHS),
            }
        )
    )


if __name__ == "__main__":
    main()
