"""LDVAE against scvi-tools' LinearSCVI (optional dependency ``omicsembed[scvi]``).

Svensson, Gayoso, Yosef & Pachter (2020) implemented LDVAE in scvi-tools; the same model and
settings fitted by both tools on the embedded pbmc68k_reduced counts should reconstruct held-out
cells equally well and find loadings spanning the same gene subspace. A Normal prior identifies
the factors only up to rotation, so subspaces are compared (principal angles), not factors.

Both fit the same 630 cells (10% held out, seed 0) for 400 epochs (both tools' default for this
size; the KL warm-up over 400 epochs completes) with n_latent 10, Adam lr 1e-3, weight decay
1e-6, minibatches of 128. scvi-tools starts the library encoder's mean at 0 and ours at the prior
mean of log library sizes; on these data scvi-tools' default then ends ~10% worse on held-out
reconstruction (its posterior log library is still biased by +0.2 after 100 epochs), so the 2%
criterion is checked against LinearSCVI with the same initialisation, and ours is required not to
be worse than scvi-tools' default. Runtime about 2 minutes (three fits).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from omicsembed.datasets import pbmc68k_reduced
from omicsembed.models.ldvae import LDVAE

scvi = pytest.importorskip(
    "scvi",
    reason="scvi-tools is an optional comparison dependency: pip install 'omicsembed[scvi]'",
)

pytestmark = pytest.mark.slow

EPOCHS = 400  # default max_epochs of both tools for 630 cells; the KL warm-up completes
N_LATENT = 10
SEED = 0


def _centred(loadings: np.ndarray) -> np.ndarray:
    values = np.asarray(loadings, dtype=np.float64)
    return values - values.mean(axis=0)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between two column spaces, decreasing."""
    return np.sort(np.cos(subspace_angles(a, b)))[::-1]


def _leading(loadings: np.ndarray, latent: np.ndarray, k: int) -> np.ndarray:
    """Top-k gene directions of ``centred(L) · Σ_z^{1/2}`` (factors weighted by their spread)."""
    covariance = np.atleast_2d(np.cov(np.asarray(latent, dtype=np.float64), rowvar=False))
    values, vectors = np.linalg.eigh(covariance)
    root = vectors @ np.diag(np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    left, _, _ = np.linalg.svd(_centred(loadings) @ root, full_matrices=False)
    return left[:, :k]


def _fit_scvi(train: Any, test: Any, *, library_at_prior: bool) -> tuple[float, Any, Any]:
    """Fit LinearSCVI; return (mean held-out NLL per cell, loadings, training latent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lightning's advice on workers, loggers, ...
        scvi.settings.seed = SEED
        data = train.copy()
        scvi.model.LinearSCVI.setup_anndata(data)
        model = scvi.model.LinearSCVI(data, n_latent=N_LATENT)
        if library_at_prior:
            # start q(log l | x) at the prior mean, as our LDVAE does (scvi-tools starts it at 0)
            prior_mean = float(model.module.library_log_means.ravel()[0])
            with torch.no_grad():
                model.module.l_encoder.mean_encoder.bias.fill_(prior_mean)
        model.train(
            max_epochs=EPOCHS,
            train_size=1.0,
            batch_size=128,
            accelerator="cpu",
            enable_progress_bar=False,
            plan_kwargs={"lr": 1e-3, "weight_decay": 1e-6, "n_epochs_kl_warmup": 400},
        )
        # mean −log p(x | z, l) over held-out cells, one posterior draw per call: average 20
        errors = [
            float(model.get_reconstruction_error(test.copy())["reconstruction_loss"])
            for _ in range(20)
        ]
        latent = model.get_latent_representation(data)
    return float(np.mean(errors)), model.get_loadings().to_numpy(), latent


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    adata = pbmc68k_reduced()
    order = np.random.default_rng(SEED).permutation(adata.n_obs)
    n_held = round(0.1 * adata.n_obs)
    held, kept = np.sort(order[:n_held]), np.sort(order[n_held:])
    train, test = adata[kept].copy(), adata[held].copy()

    ours = LDVAE(
        n_latent=N_LATENT,
        learning_rate=1e-3,
        weight_decay=1e-6,
        batch_size=128,
        max_epochs=EPOCHS,
        n_epochs_kl_warmup=400,
        validation_fraction=0.0,
        seed=SEED,
        device="cpu",
        progress=False,
    ).fit(train.X)
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    default = _fit_scvi(train, test, library_at_prior=False)
    matched = _fit_scvi(train, test, library_at_prior=True)
    return {
        "ours_error": float(ours.reconstruction_error(test.X, n_samples=20, seed=SEED).mean()),
        "ours_loadings": ours.get_loadings().to_numpy(),
        "ours_latent": ours.get_latent_representation(train.X, seed=SEED),
        "default": default,
        "matched": matched,
    }


def test_held_out_reconstruction_error_within_2_percent(fitted: dict[str, Any]) -> None:
    ours = fitted["ours_error"]
    default, matched = fitted["default"][0], fitted["matched"][0]
    print(
        f"held-out NLL per cell: ours {ours:.3f}, LinearSCVI {default:.3f} "
        f"({(ours - default) / default:+.2%}), LinearSCVI with the library encoder started at "
        f"the prior mean {matched:.3f} ({(ours - matched) / matched:+.2%})"
    )
    assert default > 0 and matched > 0  # negative log-likelihoods of counts
    # same model, same initialisation: within 2% either way
    assert abs(ours - matched) / matched < 0.02
    # scvi-tools' defaults start log l at 0 and end worse on this data: never worse than it
    assert ours <= 1.02 * default


@pytest.mark.parametrize("which", ["default", "matched"])
def test_loadings_span_the_same_gene_subspace(fitted: dict[str, Any], which: str) -> None:
    ours, theirs = fitted["ours_loadings"], fitted[which][1]
    assert ours.shape == theirs.shape == (400, N_LATENT)
    full = _cosines(_centred(ours), _centred(theirs))
    leading = _cosines(
        _leading(ours, fitted["ours_latent"], 3), _leading(theirs, fitted[which][2], 3)
    )
    print(f"{which}: cosines, all {N_LATENT} factors {np.round(full, 3)}; leading 3 {leading}")
    # Measured (seed 0): the 7 largest cosines are ≥ 0.93 against either fit; the last three
    # directions are not identified by the data (two LinearSCVI fits with different seeds
    # agree there only to 0.17-0.65), so they are not compared.
    assert np.all(full[:5] >= 0.95)
    assert np.all(full[:7] >= 0.9)
    # the three gene directions carrying most latent variance agree closely (measured ≥ 0.99)
    assert np.all(leading >= 0.98)
