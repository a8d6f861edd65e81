"""Benchmark: factorized-embedding training throughput with our sampler vs the original loader.

Trains the paper's network (embeddings 50 + 50, MLP 250-150-100-50-10, Adam 1e-3, weight decay
1e-5; Trofimov et al. 2020, §2.1) for a fixed number of minibatches of 10,000 entries, fed

- ``ours``: by :class:`omicsembed.train.NarrowFormatSampler` (Rust; no index table), and
- ``dataloader``: as in the original code, by ``torch.utils.data.DataLoader(shuffle=True)`` over
  a ``TensorDataset`` of the materialised (sample, gene) index table and its targets (rows
  assembled by the default collate).

The network, optimiser and number of steps are identical; only the data path differs. The
loader's setup (materialising and shuffling the index table) is timed separately from the steps.
Prints a table and one JSON line with entries/second and the ratio.

Usage: ``python benches/bench_fe.py [--n 1000 --m 20000 --steps 40 --threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from omicsembed.nn.factorized import FactorizedEmbeddingNetwork
from omicsembed.train.sampler import NarrowFormatSampler


def _step_function(network: FactorizedEmbeddingNetwork, optimizer: torch.optim.Optimizer):
    def step(samples: torch.Tensor, genes: torch.Tensor, values: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(network(samples, genes), values)
        loss.backward()
        optimizer.step()

    return step


def _setup(n: int, m: int, seed: int):
    torch.manual_seed(seed)
    network = FactorizedEmbeddingNetwork(n, m)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3, weight_decay=1e-5)
    return _step_function(network, optimizer)


def run_ours(X: np.ndarray, batch_size: int, steps: int) -> dict[str, float]:
    step = _setup(*X.shape, seed=0)
    started = time.perf_counter()
    sampler = NarrowFormatSampler(X, batch_size=batch_size, seed=0)
    setup = time.perf_counter() - started
    started = time.perf_counter()
    for index, batch in enumerate(sampler):
        if index == steps:
            break
        step(batch.samples, batch.genes, batch.values)
    seconds = time.perf_counter() - started
    return {"setup_s": setup, "steps_s": seconds, "entries_per_s": steps * batch_size / seconds}


def run_dataloader(X: np.ndarray, batch_size: int, steps: int) -> dict[str, float]:
    step = _setup(*X.shape, seed=0)
    n, m = X.shape
    started = time.perf_counter()
    samples = torch.arange(n).repeat_interleave(m)
    genes = torch.arange(m).repeat(n)
    targets = torch.from_numpy(X.reshape(-1))
    loader = DataLoader(TensorDataset(samples, genes, targets), batch_size=batch_size, shuffle=True)
    iterator = iter(loader)
    setup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        batch_samples, batch_genes, batch_values = next(iterator)
        step(batch_samples, batch_genes, batch_values)
    seconds = time.perf_counter() - started
    return {"setup_s": setup, "steps_s": seconds, "entries_per_s": steps * batch_size / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--m", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    X = np.random.default_rng(0).normal(size=(args.n, args.m)).astype(np.float32)
    results = {
        "ours": run_ours(X, args.batch_size, args.steps),
        "dataloader": run_dataloader(X, args.batch_size, args.steps),
    }
    print(f"{'method':<12}{'setup s':>10}{'steps s':>10}{'entries/s':>14}")
    for name, row in results.items():
        print(
            f"{name:<12}{row['setup_s']:>10.2f}{row['steps_s']:>10.2f}"
            f"{row['entries_per_s']:>14,.0f}"
        )
    ratio = results["ours"]["entries_per_s"] / results["dataloader"]["entries_per_s"]
    print(
        json.dumps(
            {
                "benchmark": "fe_training_throughput",
                "n": args.n,
                "m": args.m,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "threads": args.threads,
                **{f"{k}_{f}": round(v, 3) for k, r in results.items() for f, v in r.items()},
                "throughput_ratio": round(ratio, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
