"""Stair-like cell stages (Hess et al. 2020, §3.1): planted structure and its statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from omicsembed.exceptions import InvalidInputError
from omicsembed.simulate import GENE_KINDS, stair_cell_stages


def test_default_layout_spans_32_stage_genes():
    adata = stair_cell_stages(500, seed=0)
    assert adata.shape == (500, 32 + 18)
    assert adata.X.dtype == np.uint8
    assert set(np.unique(adata.X)) <= {0, 1}
    kind = adata.var["kind"]
    assert isinstance(kind.dtype, pd.CategoricalDtype)
    assert list(kind.cat.categories) == list(GENE_KINDS)
    # stage s is high on genes 3s..3s+4: overlap genes are 3s+3, 3s+4 for s = 0..8
    overlap = sorted(g for s in range(9) for g in (3 * s + 3, 3 * s + 4))
    np.testing.assert_array_equal(np.flatnonzero(kind == "overlap"), overlap)
    np.testing.assert_array_equal(np.flatnonzero(kind == "noise"), np.arange(32, 50))
    assert (kind == "stage").sum() == 14
    first, last = adata.var["first_stage"].to_numpy(), adata.var["last_stage"].to_numpy()
    for g in range(32):
        high_in = [s for s in range(10) if 3 * s <= g <= 3 * s + 4]
        assert (first[g], last[g]) == (high_in[0], high_in[-1])
    assert (first[32:] == -1).all() and (last[32:] == -1).all()
    assert stair_cell_stages(10, n_noise_genes=168, seed=0).shape == (10, 200)


def test_stages_are_balanced_and_sorted():
    adata = stair_cell_stages(1003, seed=1)
    stage = adata.obs["stage"].to_numpy()
    assert np.all(np.diff(stage) >= 0)
    counts = np.bincount(stage, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1003
    labels = adata.obs["stage_label"]
    assert list(labels.cat.categories) == [f"stage_{s}" for s in range(10)]
    assert (labels.astype(str).to_numpy() == np.char.add("stage_", stage.astype(str))).all()


def test_frequencies_match_the_planted_probabilities():
    n = 20_000
    x, stage, kind = stair_cell_stages(n, p_high=0.6, p_background=0.1, seed=2, as_anndata=False)
    assert x.shape == (n, 50) and stage.shape == (n,) and kind.shape == (50,)
    high = np.zeros((n, 50), dtype=bool)
    for s in range(10):
        high[np.ix_(stage == s, np.arange(3 * s, 3 * s + 5))] = True
    # every (cell, gene) cell of the design: binomial tests at a strict level
    for mask, p in ((high, 0.6), (~high, 0.1)):
        k, m = int(x[mask].sum()), int(mask.sum())
        assert stats.binomtest(k, m, p).pvalue > 1e-4
    # each stage lights up exactly its 5 genes
    for s in range(10):
        means = x[stage == s, :32].mean(axis=0)
        np.testing.assert_array_equal(np.flatnonzero(means > 0.35), np.arange(3 * s, 3 * s + 5))
    # noise genes are independent of the stage
    table = np.array([[x[stage == s, 40].sum(), (stage == s).sum()] for s in range(10)])
    assert stats.chi2_contingency(np.c_[table[:, 0], table[:, 1] - table[:, 0]]).pvalue > 1e-4


def test_seeds_and_generators():
    a = stair_cell_stages(100, seed=5)
    b = stair_cell_stages(100, seed=5)
    c = stair_cell_stages(100, seed=6)
    np.testing.assert_array_equal(a.X, b.X)
    assert (a.X != c.X).any()
    x, _, _ = stair_cell_stages(100, seed=np.random.default_rng(5), as_anndata=False)
    np.testing.assert_array_equal(x, a.X)
    assert a.uns["simulate"]["params"]["seed"] == 5


def test_general_staircase():
    x, stage, kind = stair_cell_stages(
        60, n_stages=4, genes_per_stage=3, overlap=0, n_noise_genes=2, seed=0, as_anndata=False
    )
    assert x.shape == (60, 14)
    assert np.bincount(stage).tolist() == [15] * 4
    assert list(kind) == ["stage"] * 12 + ["noise"] * 2
    x1, _, _ = stair_cell_stages(
        50, p_high=1.0, p_background=0.0, n_noise_genes=0, seed=0, as_anndata=False
    )
    stage1 = (np.arange(50) * 10) // 50
    for i in range(50):  # deterministic with p = 1 / 0: exactly the staircase
        np.testing.assert_array_equal(np.flatnonzero(x1[i]), np.arange(3, 8) + 3 * stage1[i] - 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_cells": 0}, "n_cells"),
        ({"n_cells": 10, "n_noise_genes": -1}, "n_noise_genes"),
        ({"n_cells": 10, "p_high": 1.5}, "p_high"),
        ({"n_cells": 10, "p_background": -0.1}, "p_background"),
        ({"n_cells": 10, "overlap": 5}, "overlap"),
        ({"n_cells": 10, "seed": "x"}, "seed"),
        ({"n_cells": 2.5}, "n_cells"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        stair_cell_stages(**kwargs)
