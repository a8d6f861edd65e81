"""Bernoulli VAE (Hess et al. 2020, §2.4): planted prototypes, ELBO, generation, persistence."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.neighbors import KNeighborsClassifier

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models.bernoulli_vae import BernoulliVAE
from omicsembed.nn.bernoulli_vae import BernoulliVAENetwork

N_FEATURES, N_CELLS, FLIP = 30, 600, 0.1
FAST = {"hidden_sizes": (32,), "learning_rate": 1e-3, "batch_size": 32, "progress": False}


def prototype_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three random binary prototypes, each cell a copy with 10 % of the bits flipped."""
    rng = np.random.default_rng(seed)
    prototypes = (rng.random((3, N_FEATURES)) < 0.5).astype(np.uint8)
    label = np.arange(N_CELLS) % 3
    flips = (rng.random((N_CELLS, N_FEATURES)) < FLIP).astype(np.uint8)
    return prototypes[label] ^ flips, label, prototypes


@pytest.fixture(scope="module")
def data():
    return prototype_data()


@pytest.fixture(scope="module")
def fitted(data):
    x, _, _ = data
    return BernoulliVAE(n_latent=2, max_epochs=40, device="cpu", seed=0, **FAST).fit(x)


def independent_log_likelihood(x: np.ndarray) -> float:
    """Mean log-likelihood per cell of the best model with independent features."""
    freq = x.mean(axis=0).clip(1e-12, 1 - 1e-12)
    return float((x * np.log(freq) + (1 - x) * np.log1p(-freq)).sum(axis=1).mean())


def test_latent_space_separates_the_prototypes(fitted, data):
    x, label, _ = data
    z = fitted.transform(x)
    assert z.shape == (N_CELLS, 2) and z.dtype == np.float32
    # nearest neighbours in the 2-D latent space recover the prototype of held-out cells
    knn = KNeighborsClassifier(5).fit(z[::2], label[::2])
    assert knn.score(z[1::2], label[1::2]) > 0.97
    np.testing.assert_array_equal(fitted.get_latent_representation(x), z)


def test_elbo_improves_and_beats_independent_features(fitted, data):
    x, _, _ = data
    history = fitted.history_
    assert list(history.columns) == ["epoch", "train_loss", "validation_loss"]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0] - 3.0
    untrained = BernoulliVAE(n_latent=2, max_epochs=1, device="cpu", seed=0, **FAST)
    untrained.fit(x)  # one epoch only
    elbo = fitted.elbo(x, n_draws=10, seed=0)
    assert elbo.shape == (N_CELLS,) and elbo.dtype == np.float64 and (elbo < 0).all()
    assert elbo.mean() > untrained.elbo(x, n_draws=10, seed=0).mean() + 2.0
    # a lower bound of log p(x) above the best independent-features log-likelihood: the VAE
    # learned the dependence between features (the planted mixture)
    assert elbo.mean() > independent_log_likelihood(x) + 3.0
    # ... and below the log-likelihood of the true generating mixture (up to MC noise)
    truth = N_FEATURES * (FLIP * np.log(FLIP) + (1 - FLIP) * np.log(1 - FLIP))
    assert elbo.mean() < truth + 0.5
    np.testing.assert_array_equal(elbo, fitted.elbo(x, n_draws=10, seed=0))
    # a numpy integer is an integer
    np.testing.assert_array_equal(elbo, fitted.elbo(x, n_draws=np.int64(10), seed=0))


def test_synthetic_data_reproduce_feature_frequencies(fitted, data):
    x, _, prototypes = data
    features, latent = fitted.generate(6000, seed=1)
    assert features.shape == (6000, N_FEATURES) and features.dtype == np.uint8
    assert latent.shape == (6000, 2) and latent.dtype == np.uint8
    assert set(np.unique(features)) <= {0, 1} and set(np.unique(latent)) <= {0, 1}
    assert np.abs(features.mean(axis=0) - x.mean(axis=0)).max() < 0.06

    # synthetic cells look like the prototypes: near one of them (real cells: 3 flips on
    # average; uniformly random bits: about 12 from the nearest of 3 random prototypes)
    def nearest(cells: np.ndarray) -> np.ndarray:
        return (cells[:, None, :] != prototypes[None]).sum(axis=2).min(axis=1)

    random_bits = np.random.default_rng(9).integers(0, 2, size=(6000, N_FEATURES))
    assert nearest(random_bits).mean() > 10
    assert nearest(features).mean() < 6 and np.mean(nearest(features) <= 8) > 0.85
    # latent dichotomised at 0 under the prior: about half ones per unit
    assert np.abs(latent.mean(axis=0) - 0.5).max() < 0.03


def test_latent_codes_belong_to_the_synthetic_cells(fitted, data):
    """The binary latent code of each synthetic cell comes from the z that generated it: the
    cell's nearest prototype and its code are strongly associated (Cramér's V; 0.03 when the
    codes are shuffled across cells)."""
    from scipy.stats import chi2_contingency

    _, _, prototypes = data
    features, latent = fitted.generate(6000, seed=1)
    nearest = (features[:, None, :] != prototypes[None]).sum(axis=2).argmin(axis=1)
    code = 2 * latent[:, 0] + latent[:, 1]
    table = np.array([[np.sum((nearest == a) & (code == c)) for c in range(4)] for a in range(3)])
    table = table[:, table.sum(axis=0) > 0]
    cramer_v = np.sqrt(chi2_contingency(table)[0] / (6000 * (min(table.shape) - 1)))
    assert cramer_v > 0.5


def test_elbo_matches_a_numpy_forward_pass(fitted, data):
    """ELBO of each cell by hand from the fitted weights (tanh MLPs, Gaussian KL, Bernoulli
    log-likelihood of the logits), averaged over draws of z, against ``elbo``: both are Monte
    Carlo estimates of the same value, equal within 4.5 standard errors per cell."""
    x, _, _ = data
    cells, draws = x[:20].astype(np.float64), 2000
    weights = {k: v.detach().double().numpy() for k, v in fitted.network_.state_dict().items()}

    def linear(h: np.ndarray, name: str) -> np.ndarray:
        return h @ weights[f"{name}.weight"].T + weights[f"{name}.bias"]

    hidden = np.tanh(linear(cells, "encoder.0"))
    mean, log_var = linear(hidden, "mean_head"), linear(hidden, "log_var_head")
    std = np.exp(0.5 * log_var)
    kl = 0.5 * (mean**2 + std**2 - 1 - log_var).sum(axis=1)
    rng = np.random.default_rng(0)
    log_likelihood = np.empty((draws, len(cells)))
    for d in range(draws):
        z = mean + std * rng.standard_normal(mean.shape)
        logits = linear(np.tanh(linear(z, "decoder.0")), "output")
        log_likelihood[d] = (cells * logits - np.logaddexp(0, logits)).sum(axis=1)
    by_hand = log_likelihood.mean(axis=0) - kl
    got = fitted.elbo(x[:20], n_draws=draws, seed=0)
    spread = np.sqrt(2 * log_likelihood.var(axis=0) / draws)
    assert np.all(np.abs(by_hand - got) < 4.5 * spread), (by_hand - got) / spread
    np.testing.assert_allclose(fitted.transform(x[:20]), mean, atol=1e-5)


def test_generate_median_and_from_cells(fitted, data):
    x, label, prototypes = data
    _, median_latent = fitted.generate(1000, seed=2, dichotomize_latent="median")
    np.testing.assert_array_equal(median_latent.sum(axis=0), [500, 500])
    # from the posteriors of prototype-1 cells: synthetic cells resemble prototype 1
    cells = x[label == 1]
    features, _ = fitted.generate(cells.shape[0] * 5, seed=3, from_cells=cells)
    distance = (features[:, None, :] != prototypes[None]).sum(axis=2)
    assert np.mean(distance.argmin(axis=1) == 1) > 0.95
    np.testing.assert_allclose(features.mean(axis=0), cells.mean(axis=0), atol=0.08)


def test_generate_seeds(fitted):
    a = fitted.generate(50, seed=7)
    b = fitted.generate(50, seed=7)
    c = fitted.generate(50, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert (a[0] != c[0]).any()
    d = fitted.generate(50, seed=np.random.default_rng(0))
    e = fitted.generate(50, seed=np.random.default_rng(0))
    np.testing.assert_array_equal(d[0], e[0])


def test_training_is_reproducible_with_a_seed():
    x, _, _ = prototype_data(1)
    kwargs = {"n_latent": 3, "max_epochs": 3, "device": "cpu", **FAST}
    a = BernoulliVAE(seed=4, **kwargs).fit(x)
    b = BernoulliVAE(seed=4, **kwargs).fit(x)
    c = BernoulliVAE(seed=5, **kwargs).fit(x)
    np.testing.assert_array_equal(a.transform(x), b.transform(x))
    assert a.history_.equals(b.history_)
    assert not np.array_equal(a.transform(x), c.transform(x))


def test_save_load_is_exact(fitted, data, tmp_path):
    x, _, _ = data
    folder = fitted.save(tmp_path / "vae")
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    meta = json.loads((folder / "model.json").read_text())
    assert meta["model"] == "BernoulliVAE" and meta["settings"]["hidden_sizes"] == [32]
    loaded = BernoulliVAE.load(folder, device="cpu")
    for key, value in fitted.network_.state_dict().items():
        assert torch.equal(value, loaded.network_.state_dict()[key])
    np.testing.assert_array_equal(loaded.transform(x), fitted.transform(x))
    np.testing.assert_array_equal(loaded.generate(100, seed=1)[0], fitted.generate(100, seed=1)[0])
    assert loaded.feature_names_ == fitted.feature_names_
    assert loaded.history_.equals(fitted.history_)
    assert loaded.settings == fitted.settings
    with pytest.raises(InvalidInputError, match="does not hold a saved model"):
        BernoulliVAE.load(tmp_path / "nothing")
    meta["model"] = "FactorizedEmbedding"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match="not a BernoulliVAE"):
        BernoulliVAE.load(folder)


def test_anndata_sparse_layer_and_feature_names(data):
    x, _, _ = data
    names = [f"g{i}" for i in range(N_FEATURES)]
    adata = ad.AnnData(
        np.zeros((N_CELLS, N_FEATURES), dtype=np.float32), layers={"bin": sp.csr_matrix(x)}
    )
    adata.var_names = names
    model = BernoulliVAE(n_latent=2, max_epochs=2, device="cpu", **FAST).fit(adata, layer="bin")
    assert adata.obsm["X_bvae"].shape == (N_CELLS, 2)
    assert adata.uns["bvae"]["params"]["n_latent"] == 2
    assert model.feature_names_ == names
    np.testing.assert_array_equal(model.transform(adata, layer="bin"), adata.obsm["X_bvae"])
    # columns are matched by name
    shuffled = adata[:, names[::-1]].copy()
    np.testing.assert_array_equal(model.transform(shuffled, layer="bin"), adata.obsm["X_bvae"])
    with pytest.raises(InvalidInputError, match="missing from the data"):
        model.transform(adata[:, names[:5]].copy(), layer="bin")


def test_checkpoint_resume_matches_an_uninterrupted_run(data, tmp_path):
    x, _, _ = data
    kwargs = {"n_latent": 2, "device": "cpu", "validation_fraction": 0.0, **FAST}
    straight = BernoulliVAE(max_epochs=4, early_stopping_patience=None, **kwargs).fit(x)
    BernoulliVAE(max_epochs=2, early_stopping_patience=None, **kwargs).fit(
        x, checkpoint_dir=tmp_path
    )
    resumed = BernoulliVAE(max_epochs=4, early_stopping_patience=None, **kwargs).fit(
        x, checkpoint_dir=tmp_path, resume=True
    )
    np.testing.assert_allclose(resumed.transform(x), straight.transform(x), rtol=1e-6)
    assert len(resumed.history_) == 4
    # a checkpoint of other cells (here one cell's gene flipped, given sparse) is refused
    flipped = np.array(x, dtype=np.float32)
    flipped[0, 0] = 1 - flipped[0, 0]
    flipped = sp.csr_matrix(flipped)
    with pytest.raises(InvalidInputError, match="run on other data"):
        BernoulliVAE(max_epochs=5, early_stopping_patience=None, **kwargs).fit(
            flipped, checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(InvalidInputError, match="n_latent 2 → 3"):
        BernoulliVAE(max_epochs=5, early_stopping_patience=None, **{**kwargs, "n_latent": 3}).fit(
            x, checkpoint_dir=tmp_path, resume=True
        )
    # a refused resume leaves a fitted model as it was, also when a monitor was given
    weights = [p.detach().clone() for p in resumed.network_.parameters()]
    with pytest.raises(InvalidInputError, match=r"other data \(the matrix differ\)"):
        resumed.fit(flipped, checkpoint_dir=tmp_path, resume=True, monitor=lambda m, e: None)
    after = list(resumed.network_.parameters())
    assert all(torch.equal(a, b) for a, b in zip(weights, after, strict=True))
    assert len(resumed.history_) == 4


def test_network_elbo_terms():
    torch.manual_seed(0)
    network = BernoulliVAENetwork(6, n_latent=3, hidden_sizes=(5, 4))
    x = (torch.rand(8, 6) < 0.5).float()
    out = network(x, generator=torch.Generator().manual_seed(0))
    posterior = network.encode(x)
    # closed-form KL against torch.distributions; reconstruction against Bernoulli log-probabilities
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(posterior.mean, posterior.std),
        torch.distributions.Normal(torch.zeros(3), torch.ones(3)),
    ).sum(dim=1)
    torch.testing.assert_close(out.kl, kl)
    z = posterior.rsample(torch.Generator().manual_seed(0))  # the same draw as the loss's
    bernoulli = torch.distributions.Bernoulli(logits=network.decode_logits(z))
    torch.testing.assert_close(out.reconstruction, -bernoulli.log_prob(x).sum(dim=1))
    torch.testing.assert_close(
        network.negative_elbo(x, generator=torch.Generator().manual_seed(0)), -out.elbo
    )
    assert [m.out_features for m in network.encoder if isinstance(m, torch.nn.Linear)] == [5, 4]
    assert [m.out_features for m in network.decoder if isinstance(m, torch.nn.Linear)] == [4, 5]


def test_errors(fitted, data):
    x, _, _ = data
    bad = x.astype(np.float32)
    bad[3, 7] = 2.0
    with pytest.raises(InvalidInputError, match=r"non-binary.*2\.0 at row 3, column 7;.*dichotomi"):
        BernoulliVAE(**FAST).fit(bad)
    named = ad.AnnData(bad)
    named.var_names = [f"g{i}" for i in range(N_FEATURES)]
    with pytest.raises(InvalidInputError, match="'g7'"):
        BernoulliVAE(**FAST).fit(named)
    missing = x.astype(np.float32)
    missing[1, 2] = np.nan
    with pytest.raises(InvalidInputError, match=r"NaN.*row 1"):
        BernoulliVAE(**FAST).fit(missing)
    with pytest.raises(InvalidInputError, match="not fitted"):
        BernoulliVAE(**FAST).generate(10)
    with pytest.raises(ShapeMismatchError, match="expected 30 features"):
        fitted.transform(x[:, :5])
    with pytest.raises(InvalidInputError, match="dichotomize_latent"):
        fitted.generate(10, dichotomize_latent="mean")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="n_samples"):
        fitted.generate(0)
    # refused up front, not by torch's allocator (40 TB of noise) or after drawing
    with pytest.raises(InvalidInputError, match="10,000,000,000,000 synthetic cells of 30 genes"):
        fitted.generate(10**13)
    with pytest.raises(InvalidInputError, match="seed"):
        fitted.generate(5, seed="x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="n_draws"):
        fitted.elbo(x, n_draws=0)
    with pytest.raises(InvalidInputError, match="too few"):
        BernoulliVAE(validation_fraction=0.5, **FAST).fit(x[:1])
    for kwargs, match in (
        ({"n_latent": 0}, "n_latent"),
        ({"hidden_sizes": ()}, "hidden_sizes"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"max_epochs": 0}, "max_epochs"),
    ):
        with pytest.raises(InvalidInputError, match=match):
            BernoulliVAE(**kwargs)


def test_sparse_input_gives_the_same_model_as_dense(data):
    x, _, _ = data
    settings = {**FAST, "n_latent": 3, "max_epochs": 2, "seed": 4, "device": "cpu"}
    dense = BernoulliVAE(**settings).fit(x)
    csr = BernoulliVAE(**settings).fit(sp.csr_matrix(x))
    for key, value in dense.network_.state_dict().items():
        assert torch.equal(value, csr.network_.state_dict()[key]), key
    np.testing.assert_array_equal(dense.transform(x), csr.transform(sp.csr_matrix(x)))
    bad = sp.csr_matrix(x.astype(np.float32))
    bad.data[0] = 3.0
    with pytest.raises(InvalidInputError, match="non-binary"):
        BernoulliVAE(**settings).fit(bad)


@pytest.mark.parametrize("seed", [-1, 2**70, 1.5])
def test_bad_seed_is_refused_at_construction(seed) -> None:
    # not at fit, after the data were prepared
    with pytest.raises(InvalidInputError, match="seed"):
        BernoulliVAE(seed=seed)
