"""The shared VAE base (omicsembed.nn.vae): likelihoods, posterior, loss object, module API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.linalg import subspace_angles
from torch import nn

from omicsembed.nn.vae import (
    BernoulliLikelihood,
    DiagonalGaussian,
    GaussianLikelihood,
    Inference,
    NegativeBinomialLikelihood,
    VAELoss,
    VariationalAutoencoder,
    kl_warmup_weight,
)


def test_log_probabilities_agree_with_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 7))
    loc, var = rng.normal(size=(20, 7)), rng.uniform(0.1, 3.0, size=(20, 7))
    ours = GaussianLikelihood(torch.from_numpy(loc), torch.from_numpy(var)).log_prob(
        torch.from_numpy(x)
    )
    np.testing.assert_allclose(ours.numpy(), stats.norm.logpdf(x, loc, np.sqrt(var)), rtol=1e-12)

    logits = rng.normal(scale=3.0, size=(20, 7))
    binary = (rng.random((20, 7)) < 0.5).astype(np.float64)
    ours = BernoulliLikelihood(torch.from_numpy(logits)).log_prob(torch.from_numpy(binary))
    expected = stats.bernoulli.logpmf(binary, 1.0 / (1.0 + np.exp(-logits)))
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10)

    mu, theta = rng.uniform(0.1, 50.0, size=(20, 7)), rng.uniform(0.2, 20.0, size=(20, 7))
    counts = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float64)
    ours = NegativeBinomialLikelihood(torch.from_numpy(mu), torch.from_numpy(theta), eps=0.0)
    expected = stats.nbinom.logpmf(counts, theta, theta / (theta + mu))
    np.testing.assert_allclose(ours.log_prob(torch.from_numpy(counts)).numpy(), expected, rtol=1e-9)


def test_negative_binomial_sampling_moments_seed_and_global_rng() -> None:
    mu = torch.tensor([[0.5, 5.0, 80.0]]).expand(100_000, 3)
    theta = torch.tensor([2.0, 0.5, 10.0])
    likelihood = NegativeBinomialLikelihood(mu, theta)
    before = torch.get_rng_state()
    draws = likelihood.sample(torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)  # the global stream is untouched
    again = likelihood.sample(torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)
    assert torch.equal(draws, draws.round()) and (draws >= 0).all()
    mean = mu[0].double()
    variance = mean + mean**2 / theta.double()
    np.testing.assert_allclose(draws.double().mean(0).numpy(), mean.numpy(), rtol=0.03)
    np.testing.assert_allclose(draws.double().var(0).numpy(), variance.numpy(), rtol=0.06)


def test_bernoulli_and_gaussian_sampling() -> None:
    logits = torch.tensor([[-2.0, 0.0, 3.0]]).expand(50_000, 3)
    draws = BernoulliLikelihood(logits).sample(torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(0).numpy(), torch.sigmoid(logits[0]).numpy(), atol=0.01)
    gaussian = GaussianLikelihood(torch.full((50_000, 2), 3.0), torch.tensor([0.25, 4.0]))
    draws = gaussian.sample(torch.Generator().manual_seed(0))
    np.testing.assert_allclose(draws.std(0).numpy(), [0.5, 2.0], rtol=0.02)


def test_gaussian_posterior_kl_and_draws() -> None:
    torch.manual_seed(0)
    mean, log_var = torch.randn(6, 4), torch.randn(6, 4)
    posterior = DiagonalGaussian.from_log_var(mean, log_var)
    reference = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    standard = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
    expected = torch.distributions.kl_divergence(reference, standard).sum(-1)
    torch.testing.assert_close(posterior.kl_standard_normal(), expected)
    # the same posterior given by its variance, against a non-standard prior
    by_var = DiagonalGaussian(mean, log_var.exp())
    prior_mean, prior_var = torch.tensor(1.5), torch.tensor(0.7)
    prior = torch.distributions.Normal(prior_mean, prior_var.sqrt())
    torch.testing.assert_close(
        by_var.kl(prior_mean, prior_var),
        torch.distributions.kl_divergence(reference, prior).sum(-1),
    )
    torch.testing.assert_close(posterior.kl(torch.tensor(0.0), torch.tensor(1.0)), expected)
    draws = posterior.rsample(torch.Generator().manual_seed(3), n_draws=20_000)
    assert draws.shape == (20_000, 6, 4)
    torch.testing.assert_close(draws.mean(0), mean, atol=0.08, rtol=0.0)
    torch.testing.assert_close(draws.var(0).log(), log_var, atol=0.08, rtol=0.0)


def test_loss_object_and_warmup() -> None:
    loss = VAELoss(
        reconstruction=torch.tensor([3.0, 4.0]),
        kl=torch.tensor([1.0, 2.0]),
        extra={"kl_library": torch.tensor([0.5, 0.25])},
        kl_weight=0.5,
    )
    torch.testing.assert_close(loss.total, torch.tensor([4.0, 5.25]))
    torch.testing.assert_close(loss.negative_elbo, torch.tensor([4.5, 6.25]))
    torch.testing.assert_close(loss.elbo, -loss.negative_elbo)
    assert [kl_warmup_weight(e, 4) for e in (0, 1, 4, 9)] == [0.0, 0.25, 1.0, 1.0]
    assert kl_warmup_weight(0, None) == kl_warmup_weight(0, 0) == 1.0


class _LinearGaussianVAE(VariationalAutoencoder):
    """Linear encoder and decoder, Gaussian likelihood with a learned noise per feature."""

    def __init__(self, n_features: int, n_latent: int) -> None:
        super().__init__()
        self.n_features, self.n_latent = n_features, n_latent
        self.encoder = nn.Linear(n_features, 2 * n_latent)
        self.decoder = nn.Linear(n_latent, n_features)
        self.log_noise = nn.Parameter(torch.zeros(n_features))

    def inference(self, x, *, generator=None, batch_index=None):  # type: ignore[no-untyped-def]
        mean, log_var = self.encoder(x).chunk(2, dim=-1)
        posterior = DiagonalGaussian.from_log_var(mean, log_var)
        return Inference(posterior, posterior.rsample(generator))

    def generative(self, z, *, inference=None, batch_index=None):  # type: ignore[no-untyped-def]
        return GaussianLikelihood(self.decoder(z), self.log_noise.exp())


def test_linear_gaussian_vae_recovers_the_principal_subspace() -> None:
    """A linear VAE's decoder spans the probabilistic-PCA subspace (Tipping & Bishop 1999)."""
    rng = np.random.default_rng(0)
    loadings = rng.normal(size=(12, 2)) * np.array([3.0, 2.0])
    x = rng.normal(size=(1000, 2)) @ loadings.T + 0.3 * rng.normal(size=(1000, 12))
    data = torch.from_numpy(x.astype(np.float32))
    torch.manual_seed(0)
    model = _LinearGaussianVAE(12, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(600):
        optimizer.zero_grad()
        loss = model.loss(data, generator=generator)
        loss.total.mean().backward()
        optimizer.step()
    assert loss.kl.min() >= 0
    decoder = model.decoder.weight.detach().numpy().astype(np.float64)
    cosines = np.cos(subspace_angles(decoder, loadings))
    assert cosines.min() > 0.99, cosines
    prior_draws = model.sample_prior(5000, generator=torch.Generator().manual_seed(1))
    assert prior_draws.shape == (5000, 2)
    assert abs(float(prior_draws.std())) == pytest.approx(1.0, abs=0.05)


def test_repeated_gene_names_are_an_error_not_a_silent_mismatch() -> None:
    # genes are matched by name: a repeated name would pick the wrong column
    import anndata as ad

    from omicsembed.exceptions import InvalidInputError
    from omicsembed.models import BernoulliVAE

    rng = np.random.default_rng(0)
    cells = ad.AnnData((rng.random((40, 4)) < 0.5).astype(np.float32))
    cells.var_names = ["a", "b", "a", "c"]
    with pytest.raises(InvalidInputError, match=r"repeat, e.g. \['a'\]"):
        BernoulliVAE(max_epochs=1, progress=False).fit(cells)
    cells.var_names = ["a", "b", "d", "c"]
    model = BernoulliVAE(max_epochs=1, progress=False).fit(cells)
    again = cells.copy()
    again.var_names = ["a", "b", "a", "c"]
    with pytest.raises(InvalidInputError, match="repeat"):
        model.transform(again)
