"""Tests of LDVAE (Svensson et al. 2020): NB likelihood, planted loadings, I/O, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse, stats
from scipy.linalg import subspace_angles

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models.ldvae import LDVAE
from omicsembed.nn.ldvae import LDVAENetwork, log_nb_positive


def simulate_nb_factors(
    n_cells: int, n_genes: int = 200, n_programs: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """NB counts of a planted linear factor model: px_scale = softmax(programs @ z + base)."""
    rng = np.random.default_rng(seed)
    programs = rng.normal(size=(n_genes, n_programs)) * (rng.random((n_genes, n_programs)) < 0.3)
    base = rng.normal(0.0, 0.5, n_genes)
    z = rng.normal(size=(n_cells, n_programs))
    logits = z @ programs.T + base
    scale = np.exp(logits - logits.max(axis=1, keepdims=True))
    scale /= scale.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(3000.0), 0.3, n_cells)
    theta = 10.0
    counts = rng.poisson(rng.gamma(theta, library[:, None] * scale / theta))
    return counts.astype(np.float32), programs


def subspace_cosines(loadings: np.ndarray, programs: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the gene-centred column spaces."""
    fitted = loadings - loadings.mean(axis=0)
    planted = programs - programs.mean(axis=0)
    return np.cos(subspace_angles(fitted, planted))


@pytest.fixture(scope="module")
def small_counts() -> np.ndarray:
    return simulate_nb_factors(300, n_genes=40, seed=3)[0]


@pytest.fixture(scope="module")
def small_model(small_counts: np.ndarray) -> LDVAE:
    return LDVAE(n_latent=4, max_epochs=5, progress=False, device="cpu", seed=1).fit(small_counts)


# ---------------------------------------------------------------------------- network
def test_log_nb_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, 200).astype(np.float64)
    mu = rng.uniform(0.1, 40.0, 200)
    theta = rng.uniform(0.2, 20.0, 200)
    ours = log_nb_positive(torch.from_numpy(x), torch.from_numpy(mu), torch.from_numpy(theta))
    oracle = stats.nbinom.logpmf(x, theta, theta / (theta + mu))
    np.testing.assert_allclose(ours.numpy(), oracle, rtol=1e-6, atol=1e-6)


def test_loadings_are_the_linear_map_of_the_decoder() -> None:
    torch.manual_seed(0)
    network = LDVAENetwork(30, n_latent=4)
    network.train()
    with torch.no_grad():
        for _ in range(20):  # move the batch-norm statistics away from their start
            network.decoded(torch.randn(64, 4) * 3.0)
        assert network.decoder_bn is not None
        network.decoder_bn.weight.uniform_(0.5, 2.0)
    network.eval()
    z1, z2 = torch.randn(5, 4), torch.randn(5, 4)
    with torch.no_grad():
        difference = network.decoded(z1) - network.decoded(z2)
    expected = (z1 - z2) @ network.loadings().T
    torch.testing.assert_close(difference, expected, rtol=1e-4, atol=1e-5)


def test_loss_terms_and_warmup() -> None:
    torch.manual_seed(0)
    network = LDVAENetwork(20, n_latent=3, library_log_mean=5.0, library_log_var=0.5)
    x = torch.poisson(torch.full((16, 20), 5.0))
    generator = torch.Generator().manual_seed(0)
    half = network.loss(x, kl_weight=0.5, generator=generator)
    kl_library = half.extra["kl_library"]
    assert (half.kl >= 0).all() and (kl_library >= 0).all()
    torch.testing.assert_close(half.total, half.reconstruction + 0.5 * half.kl + kl_library)
    torch.testing.assert_close(half.negative_elbo, half.reconstruction + half.kl + kl_library)
    observed = LDVAENetwork(20, n_latent=3, use_observed_library=True)
    assert (observed.loss(x).extra["kl_library"] == 0).all()
    model = LDVAE(n_epochs_kl_warmup=10)
    assert [model.kl_weight(e) for e in (0, 5, 10, 20)] == [0.0, 0.5, 1.0, 1.0]
    assert LDVAE(n_epochs_kl_warmup=None).kl_weight(0) == 1.0


# ---------------------------------------------------------------------------- planted structure
def test_loadings_span_planted_programs() -> None:
    counts, programs = simulate_nb_factors(2000, seed=0)
    model = LDVAE(
        max_epochs=60,
        n_epochs_kl_warmup=30,
        learning_rate=1e-2,
        progress=False,
        device="cpu",
        seed=0,
    ).fit(counts)
    cosines = subspace_cosines(model.get_loadings().to_numpy(), programs)
    assert cosines.min() >= 0.9, cosines
    # three planted programs: three principal axes of the latent carry most of the variance
    explained = model.factor_variance(counts).axis_variance_explained
    assert explained[:3].sum() >= 0.8, explained


@pytest.mark.slow
def test_loadings_span_planted_programs_full_size() -> None:
    # the setting: 3000 cells, 200 genes, 3 programs, 200 epochs, LinearSCVI defaults
    counts, programs = simulate_nb_factors(3000, seed=0)
    model = LDVAE(max_epochs=200, n_epochs_kl_warmup=200, progress=False, device="cpu", seed=0).fit(
        counts
    )
    cosines = subspace_cosines(model.get_loadings().to_numpy(), programs)
    assert cosines.min() >= 0.95, cosines


# ---------------------------------------------------------------------------- data handling
def test_sparse_and_dense_give_the_same_model(small_counts: np.ndarray) -> None:
    settings = {"n_latent": 3, "max_epochs": 3, "progress": False, "device": "cpu", "seed": 5}
    dense = LDVAE(**settings).fit(small_counts)  # type: ignore[arg-type]
    csr = LDVAE(**settings).fit(sparse.csr_matrix(small_counts))  # type: ignore[arg-type]
    for key, value in dense.network_.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, csr.network_.state_dict()[key]), key  # type: ignore[union-attr]
    np.testing.assert_array_equal(
        dense.get_latent_representation(small_counts),
        csr.get_latent_representation(sparse.csr_matrix(small_counts)),
    )


def test_anndata_outputs_and_layer(small_counts: np.ndarray) -> None:
    adata = ad.AnnData(np.zeros_like(small_counts))
    adata.var_names = [f"g{i}" for i in range(small_counts.shape[1])]
    adata.layers["counts"] = sparse.csr_matrix(small_counts)
    model = LDVAE(n_latent=3, max_epochs=2, progress=False, device="cpu").fit(adata, layer="counts")
    assert adata.obsm["X_ldvae"].shape == (adata.n_obs, 3)
    loadings = model.get_loadings()
    assert list(loadings.index) == list(adata.var_names)
    assert list(loadings.columns) == ["Z_0", "Z_1", "Z_2"]
    np.testing.assert_array_equal(adata.varm["ldvae_loadings"], loadings.to_numpy())
    np.testing.assert_array_equal(
        adata.obsm["X_ldvae"], model.get_latent_representation(adata, layer="counts")
    )
    assert adata.uns["ldvae"]["params"]["n_latent"] == 3


@pytest.mark.parametrize("kind", ["dense", "csr"])
@pytest.mark.parametrize(
    ("value", "message"),
    [(-1.0, "negative"), (2.5, "non-integer"), (np.nan, "NaN"), (np.inf, "infinite")],
)
def test_invalid_counts_are_named(
    small_counts: np.ndarray, kind: str, value: float, message: str
) -> None:
    counts = small_counts.copy()
    counts[0, 0] = 1.0  # stored in the sparse matrix
    counts[7, 5] = value
    data = counts if kind == "dense" else sparse.csr_matrix(counts)
    with pytest.raises(InvalidInputError, match=message) as info:
        LDVAE(max_epochs=1, progress=False, device="cpu").fit(data)
    assert "row 7" in str(info.value) and "column 5" in str(info.value)


def test_tolerates_float_noise_below_tolerance(small_counts: np.ndarray) -> None:
    noisy = small_counts + 1e-7
    LDVAE(n_latent=2, max_epochs=1, progress=False, device="cpu").fit(noisy)


def test_prediction_input_checks(small_model: LDVAE, small_counts: np.ndarray) -> None:
    with pytest.raises(ShapeMismatchError):
        small_model.get_latent_representation(small_counts[:, :10])
    with pytest.raises(InvalidInputError, match="not fitted"):
        LDVAE().get_loadings()
    with pytest.raises(InvalidInputError, match="latent_distribution"):
        LDVAE(latent_distribution="gamma")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- uses
def test_save_load_exact(small_model: LDVAE, small_counts: np.ndarray, tmp_path: Path) -> None:
    small_model.save(tmp_path / "model")
    loaded = LDVAE.load(tmp_path / "model", device="cpu")
    for key, value in small_model.network_.state_dict().items():  # type: ignore[union-attr]
        assert torch.equal(value, loaded.network_.state_dict()[key]), key  # type: ignore[union-attr]
    assert loaded.settings == small_model.settings
    np.testing.assert_array_equal(
        small_model.reconstruction_error(small_counts, seed=2),
        loaded.reconstruction_error(small_counts, seed=2),
    )
    with pytest.raises(InvalidInputError, match="does not hold"):
        LDVAE.load(tmp_path / "nothing")


def test_logistic_normal_latent(small_counts: np.ndarray) -> None:
    model = LDVAE(
        n_latent=4, latent_distribution="ln", max_epochs=3, progress=False, device="cpu"
    ).fit(small_counts)
    latent = model.get_latent_representation(small_counts, mc_samples=200, seed=0)
    assert latent.shape == (small_counts.shape[0], 4)
    assert (latent > 0).all()
    np.testing.assert_allclose(latent.sum(axis=1), 1.0, rtol=1e-5)
    # a Monte-Carlo mean of softmax draws, not the softmax of the mean
    network = model.network_
    assert network is not None
    with torch.no_grad():
        mean = network.encode(torch.from_numpy(small_counts)).mean
    assert not np.allclose(latent, torch.softmax(mean, dim=-1).numpy(), atol=1e-4)
    errors = model.reconstruction_error(small_counts, seed=0)
    assert np.isfinite(errors).all()


def test_heldout_reconstruction_beats_random_weights() -> None:
    counts, _ = simulate_nb_factors(1200, n_genes=60, seed=4)
    train_cells, test_cells = counts[:1000], counts[1000:]
    model = LDVAE(
        n_latent=5,
        max_epochs=15,
        learning_rate=1e-2,
        n_epochs_kl_warmup=5,
        progress=False,
        device="cpu",
    ).fit(train_cells)
    fitted = model.reconstruction_error(test_cells, seed=0, n_samples=3)
    untrained = copy.deepcopy(model)
    torch.manual_seed(123)
    network = model.network_
    assert network is not None
    untrained.network_ = LDVAENetwork(
        network.n_genes,
        n_latent=5,
        library_log_mean=network.library_log_mean.tolist(),
        library_log_var=network.library_log_var.tolist(),
    ).eval()
    random = untrained.reconstruction_error(test_cells, seed=0, n_samples=3)
    assert np.isfinite(fitted).all() and (fitted > 0).all()
    assert fitted.mean() < 0.9 * random.mean(), (fitted.mean(), random.mean())


def test_normalized_expression_and_factor_variance(
    small_model: LDVAE, small_counts: np.ndarray
) -> None:
    expression = small_model.get_normalized_expression(small_counts)
    assert expression.shape == small_counts.shape
    np.testing.assert_allclose(expression.sum(axis=1), 1.0, rtol=1e-5)
    sampled = small_model.get_normalized_expression(
        small_counts, n_samples=3, seed=0, library_size=1e4
    )
    np.testing.assert_allclose(sampled.sum(axis=1), 1e4, rtol=1e-4)
    result = small_model.factor_variance(small_counts)
    latent = small_model.get_latent_representation(small_counts).astype(np.float64)
    np.testing.assert_allclose(result.covariance.to_numpy(), np.cov(latent, rowvar=False))
    np.testing.assert_allclose(result.variance_explained.sum(), 1.0)
    np.testing.assert_allclose(result.axis_variance_explained.sum(), 1.0)
    assert (np.diff(result.eigenvalues) <= 1e-12).all()
    variances = np.diag(result.covariance.to_numpy())
    assert (np.diff(variances[result.order]) <= 0).all()
    np.testing.assert_array_equal(small_model.factor_order(small_counts), result.order)
    rebuilt = result.eigenvectors @ np.diag(result.eigenvalues) @ result.eigenvectors.T
    np.testing.assert_allclose(rebuilt, result.covariance.to_numpy(), atol=1e-8)
