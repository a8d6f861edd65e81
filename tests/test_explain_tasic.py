"""Hess et al. 2020 on their real data: Tasic 2016 cortex neurons (../shared/data/tasic2016).

Genes are dichotomised at the median, 36.8 % of the cells are held out, a generative model is
trained on the rest (three training seeds), 10,000 synthetic cells are drawn and 8 genes are
selected by log-linear G². Label transfer is random, so every gene set — the selected one and
100 random sets of the same size — is scored with the same 10 transfer seeds and averaged; the
selected set must beat most random sets on the 15-cell-type Davies–Bouldin index and almost all
on the GABA/glutamate class index (median over training seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omicsembed import pp
from omicsembed.datasets import read_shared_folder
from omicsembed.explain import explain, rank_against_random_gene_sets

TASIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "tasic2016"
pytestmark = [
    pytest.mark.skipif(not TASIC.is_dir(), reason="../shared/data/tasic2016 is absent"),
    pytest.mark.slow,
]

TRAINING_SEEDS = (0, 1, 2)
N_SELECT = 8


@pytest.fixture(scope="module")
def tasic() -> dict[str, Any]:
    adata = read_shared_folder(TASIC)
    binary = pp.dichotomize(np.asarray(adata.X))
    order = np.random.default_rng(0).permutation(binary.shape[0])
    train = np.sort(order[round(0.368 * binary.shape[0]) :])
    return {
        "train": binary[train],
        "cell_type": adata.obs["cell_type"].to_numpy()[train],
        "class": adata.obs["class"].to_numpy()[train],
    }


def _beaten(model: Any, data: dict[str, Any], seed: int) -> dict[str, int]:
    explanation = explain(model, 10_000, N_SELECT, seed=seed)
    synthetic, _ = model.generate(10_000, seed=seed)
    return {
        column: rank_against_random_gene_sets(
            data["train"],
            data[column],
            synthetic,
            explanation.selection.selected,
            n_random=100,
            n_transfer_seeds=10,
            seed=0,
        ).beaten
        for column in ("cell_type", "class")
    }


def test_bernoulli_vae_selection_beats_random_gene_sets(tasic) -> None:
    from omicsembed.models import BernoulliVAE

    beaten = [
        _beaten(
            # lr 1e-3 reaches the optimum of the paper's 1e-4 in ~150 instead of > 1000 epochs
            BernoulliVAE(learning_rate=1e-3, seed=seed, progress=False).fit(tasic["train"]),
            tasic,
            seed,
        )
        for seed in TRAINING_SEEDS
    ]
    assert np.median([b["cell_type"] for b in beaten]) >= 75, beaten
    assert np.median([b["class"] for b in beaten]) >= 95, beaten


def test_deep_boltzmann_machine_selection_beats_random_gene_sets(tasic) -> None:
    from omicsembed.models import DeepBoltzmannMachine

    beaten = [
        _beaten(
            DeepBoltzmannMachine((100, 20, 10), epochs=100, seed=seed, progress=False).fit(
                tasic["train"]
            ),
            tasic,
            seed,
        )
        for seed in TRAINING_SEEDS
    ]
    assert np.median([b["cell_type"] for b in beaten]) >= 75, beaten
