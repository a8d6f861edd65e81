"""Benchmark: narrow-format sampler vs the original materialised-index DataLoader.

Factorized embeddings (Trofimov et al. 2020, Bioinformatics, §2.1) train on one example per
entry (sample i, gene j, X[i, j]). The original code (TrofimovAssya/FactorizedEmbeddings,
``datasets.py``) materialises the n·m table of index pairs and its targets, and iterates
``DataLoader(dataset, batch_size, shuffle=True)`` over a Dataset whose ``__getitem__`` returns one
row, so the default collate assembles every batch from B single rows.

Methods (each in a fresh subprocess, so peak RSS — ``VmHWM`` of ``/proc/self/status`` — is its
own):

- ``ours``: :class:`omicsembed.train.NarrowFormatSampler` over X (no NaN: no index memory).
- ``ours_nan``: the same with 10 % NaN entries (exercises the rank/select bitmap, n·m/8 bytes).
- ``torch_rows``: index pairs and targets as torch tensors, ``TensorDataset`` rows, default
  collate (``torch.stack`` of B rows), ``shuffle=True``, ``num_workers=0``.
- ``numpy_rows``: the original literally (numpy rows ``[pair, target]``, default collate),
  ``shuffle=True``, ``num_workers=0`` (the original used 1 worker, which only adds
  inter-process copies). The headline ratio uses the faster of these two row-wise baselines.
- ``randperm_gather``: a stronger materialised baseline that is not what the original does:
  ``torch.randperm`` + fancy indexing of the materialised tables per batch.

The row-wise baselines are too slow for a full epoch at full size: after one warm-up batch
(counted as setup: it builds the shuffled index list) they time ``--baseline-batches`` batches and
extrapolate the epoch (reported as such). Prints a table and one JSON line with the ratio.

Usage: ``python benches/bench_sampler.py [--n 1000 --m 60000 --batch-size 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

METHODS = ["ours", "ours_nan", "torch_rows", "numpy_rows", "randperm_gather"]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _run_method(method: str, n: int, m: int, batch_size: int, baseline_batches: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from omicsembed.train import NarrowFormatSampler

    rss_imports = _rss_kib("VmRSS")
    rng = np.random.default_rng(0)
    X = rng.random((n, m), dtype=np.float32)
    if method == "ours_nan":
        for i in range(n):  # row by row: no n×m boolean temporary
            X[i, rng.random(m) < 0.1] = np.nan
    # Row by row, so that the count allocates no n×m temporary either.
    n_entries = sum(int(np.count_nonzero(~np.isnan(row))) for row in X)
    result: dict[str, Any] = {"method": method, "n_entries": n_entries}

    t0 = time.perf_counter()
    if method in ("ours", "ours_nan"):
        sampler = NarrowFormatSampler(X, batch_size=batch_size, seed=0)
        setup = time.perf_counter() - t0
        t1 = time.perf_counter()
        seen = 0
        checksum = 0.0
        for batch in sampler:
            seen += len(batch)
            checksum += float(batch.values[0])
        elapsed = time.perf_counter() - t1
        assert seen == n_entries
        timed_entries = seen
        result["index_bytes"] = sampler.index_bytes
        result["extrapolated"] = False
    else:
        rows = np.arange(n, dtype=np.int64)
        cols = np.arange(m, dtype=np.int64)
        pairs = np.empty((n * m, 2), dtype=np.int64)
        pairs[:, 0] = np.repeat(rows, m)
        pairs[:, 1] = np.tile(cols, n)
        values = X.reshape(-1).copy()
        if method == "numpy_rows":

            class GeneDataset(torch.utils.data.Dataset):
                def __len__(self) -> int:
                    return len(values)

                def __getitem__(self, idx: int) -> list:
                    return [pairs[idx], values[idx]]

            dataset: Any = GeneDataset()
        else:
            pairs_t = torch.from_numpy(pairs)
            values_t = torch.from_numpy(values)
            dataset = torch.utils.data.TensorDataset(pairs_t, values_t)
        if method == "randperm_gather":
            perm = torch.randperm(n * m)
            setup = time.perf_counter() - t0

            def batches() -> Any:
                for start in range(0, n * m, batch_size):
                    idx = perm[start : start + batch_size]
                    yield pairs_t[idx], values_t[idx]

            iterator = batches()
            n_timed = -(-n * m // batch_size)
        else:
            loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=True, num_workers=0
            )
            iterator = iter(loader)
            # The first batch pays RandomSampler's one-off randperm(n·m).tolist(): count it as
            # setup, then time the steady state.
            next(iterator)
            setup = time.perf_counter() - t0
            n_timed = min(baseline_batches, len(loader) - 1)
        t1 = time.perf_counter()
        timed_entries = 0
        checksum = 0.0
        for _ in range(n_timed):
            _pairs_batch, val_batch = next(iterator)
            timed_entries += len(val_batch)
            checksum += float(val_batch[0])
        elapsed = time.perf_counter() - t1
        result["extrapolated"] = timed_entries < n * m
    rate = timed_entries / elapsed
    result.update(
        {
            "setup_s": setup,
            "timed_entries": timed_entries,
            "timed_s": elapsed,
            "entries_per_s": rate,
            "epoch_s": setup + n_entries / rate,
            "rss_after_imports_mib": rss_imports / 1024,
            "peak_rss_mib": _rss_kib("VmHWM") / 1024,
            "peak_minus_imports_mib": (_rss_kib("VmHWM") - rss_imports) / 1024,
            "matrix_mib": X.nbytes / 2**20,
            "checksum": checksum,
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="samples (rows)")
    parser.add_argument("--m", type=int, default=60000, help="genes (columns)")
    parser.add_argument("--batch-size", type=int, default=10000)
    parser.add_argument(
        "--baseline-batches", type=int, default=20, help="batches timed for row-wise baselines"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--method", help=argparse.SUPPRESS)  # internal: run one method
    args = parser.parse_args()

    if args.method:
        res = _run_method(args.method, args.n, args.m, args.batch_size, args.baseline_batches)
        print(json.dumps(res))
        return

    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--method",
            method,
            *("--n", str(args.n), "--m", str(args.m), "--batch-size", str(args.batch_size)),
            *("--baseline-batches", str(args.baseline_batches)),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[method]
        print(
            f"{method:>16}: {r['entries_per_s'] / 1e6:9.3f} M entries/s"
            f"{' (extrapolated)' if r['extrapolated'] else '':15} setup {r['setup_s']:6.2f} s  "
            f"epoch {r['epoch_s']:8.1f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB "
            f"(+{r['peak_minus_imports_mib']:.0f} MiB over imports; X = {r['matrix_mib']:.0f} MiB)",
            file=sys.stderr,
        )

    summary: dict[str, Any] = {
        "bench": "sampler",
        "n": args.n,
        "m": args.m,
        "batch_size": args.batch_size,
        "matrix_mib": next(iter(results.values()))["matrix_mib"],
    }
    for method, r in results.items():
        summary[f"{method}_entries_per_s"] = round(r["entries_per_s"])
        summary[f"{method}_peak_minus_imports_mib"] = round(r["peak_minus_imports_mib"], 1)
        summary[f"{method}_extrapolated"] = r["extrapolated"]
    row_wise = [m for m in ("torch_rows", "numpy_rows") if m in results]
    if "ours" in results and row_wise:
        # Headline: the faster of the two faithful row-wise versions of the original.
        best = max(row_wise, key=lambda m: results[m]["entries_per_s"])
        ours, base = results["ours"], results[best]
        summary["baseline"] = best
        summary["ratio"] = ours["entries_per_s"] / base["entries_per_s"]
        summary["epoch_ratio"] = base["epoch_s"] / ours["epoch_s"]
        summary["memory_ratio"] = base["peak_minus_imports_mib"] / ours["peak_minus_imports_mib"]
    if "ours" in results and "randperm_gather" in results:
        summary["ratio_vs_randperm_gather"] = (
            results["ours"]["entries_per_s"] / results["randperm_gather"]["entries_per_s"]
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
