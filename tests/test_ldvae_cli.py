"""LDVAE generate (explain protocol), the LDVAE job and ``omicsembed ldvae fit``."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from typer.testing import CliRunner

from omicsembed.cli import app
from omicsembed.exceptions import InvalidInputError
from omicsembed.explain import GenerativeModel, SelectionMonitor, explain
from omicsembed.models import LDVAE

runner = CliRunner()


def _counts(n_cells: int = 120, n_genes: int = 30, seed: int = 0) -> np.ndarray:
    """NB counts from two planted programs (cells in two groups)."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_cells) % 2
    rates = np.full((n_cells, n_genes), 2.0)
    rates[group == 0, :5] = 20.0
    rates[group == 1, 5:10] = 20.0
    return rng.negative_binomial(5.0, 5.0 / (5.0 + rates)).astype(np.float32)


@pytest.fixture(scope="module")
def fitted() -> LDVAE:
    return LDVAE(n_latent=3, max_epochs=5, n_hidden=32, progress=False).fit(_counts())


def test_generate_is_binary_seeded_and_at_the_quantile(fitted: LDVAE) -> None:
    features, latent = fitted.generate(2000, seed=3)
    assert features.dtype == np.uint8 and latent.dtype == np.uint8
    assert features.shape == (2000, 30) and latent.shape == (2000, 3)
    assert set(np.unique(features)) <= {0, 1} and set(np.unique(latent)) <= {0, 1}
    again, again_latent = fitted.generate(2000, seed=3)
    np.testing.assert_array_equal(features, again)
    np.testing.assert_array_equal(latent, again_latent)
    # value > per-gene quantile: at most (1 - q) of the draws are 1 per gene
    assert (features.mean(axis=0) <= 0.5 + 1e-12).all()
    high, _ = fitted.generate(2000, seed=3, quantile=0.9)
    assert (high.mean(axis=0) <= 0.1 + 1e-12).all()
    # latent z ~ N(0, I) dichotomised at 0: about half ones per unit
    assert np.all(np.abs(latent.mean(axis=0) - 0.5) < 0.06)


def test_generate_library_size_and_logistic_normal() -> None:
    model = LDVAE(
        n_latent=3, max_epochs=3, n_hidden=16, latent_distribution="ln", progress=False
    ).fit(_counts(seed=1))
    features, latent = model.generate(1001, seed=0, library_size=500.0)
    assert features.shape == (1001, 30)
    # per-unit median split of an odd number of continuous draws: exactly 500 ones
    np.testing.assert_array_equal(latent.sum(axis=0), [500, 500, 500])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 0}, "n_samples"),
        ({"n_samples": 10, "quantile": 1.5}, "quantile"),
        ({"n_samples": 10, "library_size": -1.0}, "library_size"),
        ({"n_samples": 10, "seed": "x"}, "seed"),
    ],
)
def test_generate_errors(fitted: LDVAE, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fitted.generate(**kwargs)


def test_generate_needs_a_fitted_model() -> None:
    with pytest.raises(InvalidInputError, match="not fitted"):
        LDVAE().generate(5)


def test_explain_runs_on_ldvae(fitted: LDVAE) -> None:
    assert isinstance(fitted, GenerativeModel)
    explanation = explain(fitted, 2000, 3)
    assert len(explanation.selected_features) == 3
    assert len(set(explanation.selected_features)) == 3


def test_selection_monitor_follows_ldvae_training() -> None:
    monitor = SelectionMonitor(every=2, n_synthetic=500, n_select=2)
    LDVAE(n_latent=3, max_epochs=4, n_hidden=16, progress=False).fit(_counts(), monitor=monitor)
    table = monitor.table()
    assert sorted(table["epoch"].unique()) == [2, 4]
    assert (table.groupby("epoch")["step"].nunique() == 2).all()


@pytest.fixture
def counts_h5ad(tmp_path):
    counts = _counts(n_cells=80, n_genes=20, seed=2)
    adata = ad.AnnData(
        X=sparse.csr_matrix(counts),
        obs=pd.DataFrame(
            {
                "kind": pd.Categorical(np.where(np.arange(80) % 2, "b", "a")),
                "lane": np.where(np.arange(80) < 40, "L1", "L2"),
            },
            index=[f"c{i}" for i in range(80)],
        ),
        var=pd.DataFrame(index=[f"g{i}" for i in range(20)]),
    )
    path = tmp_path / "counts.h5ad"
    adata.write_h5ad(path)
    return path


def test_ldvae_fit_cli_writes_the_result_folder(counts_h5ad, tmp_path) -> None:
    out = tmp_path / "ldvae"
    result = runner.invoke(
        app,
        [
            "ldvae", "fit", str(counts_h5ad), "--n-latent", "4", "--epochs", "2",
            "--groupby", "kind", "--out", str(out), "--seed", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("latent", "loadings", "factor_variance", "history", "heldout_reconstruction"):
        assert (out / f"{name}.parquet").exists() and (out / f"{name}.csv").exists()
    assert (out / "latent_density.png").exists() and (out / "loadings.png").exists()
    assert (out / "model").is_dir()
    latent = pd.read_parquet(out / "latent.parquet")
    assert list(latent.columns) == ["cell", "kind", "Z_0", "Z_1", "Z_2", "Z_3"]
    assert len(latent) == 80
    loadings = pd.read_parquet(out / "loadings.parquet")
    assert loadings.shape == (20, 5) and loadings["gene"].tolist()[0] == "g0"
    variance = pd.read_parquet(out / "factor_variance.parquet")
    assert variance["variance_explained"].sum() == pytest.approx(1.0)
    assert sorted(variance["rank"]) == [1, 2, 3, 4]
    heldout = pd.read_parquet(out / "heldout_reconstruction.parquet")
    assert len(heldout) == 8 and (heldout["negative_log_likelihood"] > 0).all()
    assert heldout["cell"].is_unique and set(heldout["cell"]) <= set(latent["cell"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["job"] == "ldvae fit"
    metrics = summary["metrics"]
    assert metrics["epochs"] == 2 and metrics["n_heldout"] == 8
    assert metrics["heldout_reconstruction_error"] == pytest.approx(
        heldout["negative_log_likelihood"].mean()
    )
    restored = LDVAE.load(out / "model")
    assert restored.feature_names_ == [f"g{i}" for i in range(20)]


def test_ldvae_fit_cli_with_batches(counts_h5ad, tmp_path) -> None:
    out = tmp_path / "batches"
    result = runner.invoke(
        app,
        [
            "ldvae", "fit", str(counts_h5ad), "--n-latent", "2", "--epochs", "2",
            "--batch-key", "lane", "--out", str(out),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    latent = pd.read_parquet(out / "latent.parquet")
    assert list(latent.columns) == ["cell", "batch", "Z_0", "Z_1"]
    assert latent["batch"].tolist() == ["L1"] * 40 + ["L2"] * 40
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["batches"] == ["L1", "L2"]
    restored = LDVAE.load(out / "model")
    assert restored.batch_categories_ == ["L1", "L2"]
    bad = runner.invoke(
        app,
        ["ldvae", "fit", str(counts_h5ad), "--batch-key", "nope", "--out", str(tmp_path / "bad")],
    )
    assert bad.exit_code == 2 and "nope" in bad.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batches", "counts.h5ad"]  # no "bad"


@pytest.mark.parametrize("both", [False, True])
def test_ldvae_fit_cli_needs_data_or_demo(both, counts_h5ad, tmp_path) -> None:
    args = ["ldvae", "fit", "--out", str(tmp_path / "x")]
    if both:
        args += ["--demo", str(counts_h5ad)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "either a DATA file or --demo" in result.output


def test_ldvae_fit_cli_bad_groupby(counts_h5ad, tmp_path) -> None:
    result = runner.invoke(
        app, ["ldvae", "fit", str(counts_h5ad), "--groupby", "nope", "--out", str(tmp_path / "y")]
    )
    assert result.exit_code == 2
    assert "nope" in result.output
