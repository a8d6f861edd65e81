"""LDVAE with a batch covariate: one-hot into the linear decoder, library prior per batch."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models.ldvae import LDVAE

N_GENES = 60
AFFECTED = np.arange(6) * 7  # genes whose expression batch "B" multiplies by FOLD
FOLD = 6.0


def simulate_batches(n_cells: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NB counts of a 2-factor model; batch B has FOLD× more of the AFFECTED genes."""
    rng = np.random.default_rng(seed)
    programs = rng.normal(size=(N_GENES, 2)) * (rng.random((N_GENES, 2)) < 0.4)
    z = rng.normal(size=(n_cells, 2))
    batch = np.where(rng.random(n_cells) < 0.5, "A", "B")
    logits = z @ programs.T + rng.normal(0.0, 0.5, N_GENES)
    logits[np.ix_(batch == "B", AFFECTED)] += np.log(FOLD)
    scale = np.exp(logits - logits.max(axis=1, keepdims=True))
    scale /= scale.sum(axis=1, keepdims=True)
    library = rng.lognormal(np.log(2000.0), 0.3, n_cells) * np.where(batch == "B", 1.5, 1.0)
    counts = rng.poisson(rng.gamma(10.0, library[:, None] * scale / 10.0))
    return counts.astype(np.float32), batch


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return simulate_batches()


@pytest.fixture(scope="module")
def model(data: tuple[np.ndarray, np.ndarray]) -> LDVAE:
    counts, batch = data
    return LDVAE(
        n_latent=2,
        max_epochs=60,
        learning_rate=1e-2,
        n_epochs_kl_warmup=10,
        progress=False,
        device="cpu",
    ).fit(counts, batch=batch)


def test_decoder_batch_columns_recover_the_planted_batch_effect(model: LDVAE) -> None:
    network = model.network_
    assert network is not None and network.n_batch == 2
    assert model.batch_categories_ == ["A", "B"]
    weight = network.decoder.weight.detach().numpy()
    assert weight.shape == (N_GENES, 2 + 2)
    effect = weight[:, 3] - weight[:, 2]  # B − A, up to a per-gene batch-norm scale
    bn = network.decoder_bn
    assert bn is not None and bn.running_var is not None
    effect = effect * (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
    centred = effect - np.median(effect)
    assert set(np.argsort(-centred)[: AFFECTED.size]) == set(AFFECTED)
    assert np.median(centred[AFFECTED]) == pytest.approx(np.log(FOLD), rel=0.35)
    # the loadings exclude the batch columns
    assert model.get_loadings().shape == (N_GENES, 2)


def test_library_prior_per_batch(model: LDVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    counts, batch = data
    network = model.network_
    assert network is not None
    expected = [np.log(counts[batch == b].sum(axis=1)).mean() for b in ("A", "B")]
    np.testing.assert_allclose(network.library_log_mean.numpy(), expected, rtol=1e-5)


def test_transform_batch_gives_batch_corrected_expression(
    model: LDVAE, data: tuple[np.ndarray, np.ndarray]
) -> None:
    counts, _ = data
    cells = counts[:100]
    as_a = model.get_normalized_expression(cells, transform_batch="A")
    as_b = model.get_normalized_expression(cells, transform_batch="B")
    np.testing.assert_allclose(as_a.sum(axis=1), 1.0, rtol=1e-4)
    log_ratio = np.log(as_b / as_a).mean(axis=0)
    assert set(np.argsort(-log_ratio)[: AFFECTED.size]) == set(AFFECTED)
    others = np.setdiff1d(np.arange(N_GENES), AFFECTED)
    assert log_ratio[AFFECTED].min() - log_ratio[others].max() > 0.5 * np.log(FOLD)
    # the cells' own batches interpolate: each cell equals its batch's transform
    own = model.get_normalized_expression(cells, batch=data[1][:100])
    is_b = data[1][:100] == "B"
    np.testing.assert_allclose(own[is_b], as_b[is_b], rtol=1e-5)
    np.testing.assert_allclose(own[~is_b], as_a[~is_b], rtol=1e-5)


def test_anndata_batch_key_is_remembered(data: tuple[np.ndarray, np.ndarray]) -> None:
    counts, batch = data
    obs = pd.DataFrame({"batch": batch[:300]}, index=[f"cell{i}" for i in range(300)])
    adata = ad.AnnData(counts[:300], obs=obs)
    model = LDVAE(n_latent=2, max_epochs=2, progress=False, device="cpu").fit(
        adata, batch_key="batch"
    )
    errors = model.reconstruction_error(adata, seed=0)  # batches read from .obs["batch"]
    explicit = model.reconstruction_error(counts[:300], batch=batch[:300], seed=0)
    np.testing.assert_allclose(errors, explicit, rtol=1e-6)
    assert adata.obsm["X_ldvae"].shape == (300, 2)


def test_save_load_keeps_batches(
    model: LDVAE, data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    counts, batch = data
    loaded = LDVAE.load(model.save(tmp_path / "model"), device="cpu")
    assert loaded.batch_categories_ == ["A", "B"]
    np.testing.assert_array_equal(
        loaded.get_normalized_expression(counts[:20], batch=batch[:20]),
        model.get_normalized_expression(counts[:20], batch=batch[:20]),
    )


def test_generate_in_a_batch(model: LDVAE) -> None:
    in_b, latent = model.generate(2000, seed=0, batch="B")
    in_a, latent_a = model.generate(2000, seed=0, batch="A")
    assert in_b.shape == (2000, N_GENES) and latent.shape == (2000, 2)
    assert in_b.dtype == np.uint8 and set(np.unique(in_b)) <= {0, 1}
    np.testing.assert_array_equal(latent, latent_a)  # the same prior draws of z
    assert not np.array_equal(in_a, in_b)  # decoded in different batches
    np.testing.assert_array_equal(model.generate(500, seed=3)[0], model.generate(500, seed=3)[0])


def test_batch_errors(model: LDVAE, data: tuple[np.ndarray, np.ndarray]) -> None:
    counts, batch = data
    with pytest.raises(InvalidInputError, match="fitted with batches"):
        model.get_normalized_expression(counts[:5])
    with pytest.raises(InvalidInputError, match="unknown batch 'C'"):
        model.get_normalized_expression(counts[:5], transform_batch="C")
    with pytest.raises(InvalidInputError, match="unknown batch"):
        model.generate(10, batch="C")
    with pytest.raises(ShapeMismatchError, match="3 labels for 5 cells"):
        model.reconstruction_error(counts[:5], batch=batch[:3])
    missing = batch[:10].astype(object)
    missing[4] = None
    with pytest.raises(InvalidInputError, match="no batch label, first at row 4"):
        LDVAE(max_epochs=1, progress=False).fit(counts[:10], batch=missing)
    adata = ad.AnnData(counts[:10])
    with pytest.raises(InvalidInputError, match=r"not a column of \.obs"):
        LDVAE(max_epochs=1, progress=False).fit(adata, batch_key="batch")
    adata.obs["plate"] = missing
    adata.obs_names = [f"cell{i}" for i in range(10)]
    with pytest.raises(InvalidInputError, match=r"first at row 4 \(cell 'cell4'\)"):
        LDVAE(max_epochs=1, progress=False).fit(adata, batch_key="plate")
    with pytest.raises(InvalidInputError, match="needs AnnData"):
        LDVAE(max_epochs=1, progress=False).fit(counts[:10], batch_key="batch")
    with pytest.raises(InvalidInputError, match="not both"):
        LDVAE(max_epochs=1, progress=False).fit(adata, batch_key="b", batch=batch[:10])
    single = LDVAE(n_latent=2, max_epochs=1, progress=False, device="cpu").fit(counts[:50])
    with pytest.raises(InvalidInputError, match="without batches"):
        single.get_normalized_expression(counts[:5], transform_batch="A")


def test_resume_refuses_other_batch_labels(data: tuple[np.ndarray, np.ndarray], tmp_path: Path):
    counts, batch = data
    options = {"n_latent": 2, "progress": False, "device": "cpu", "early_stopping_patience": None}
    LDVAE(max_epochs=1, **options).fit(counts[:200], batch=batch[:200], checkpoint_dir=tmp_path)
    swapped = np.where(batch[:200] == "A", "B", "A")
    with pytest.raises(InvalidInputError, match=r"other data \(the batch labels differ\)"):
        LDVAE(max_epochs=2, **options).fit(
            counts[:200], batch=swapped, checkpoint_dir=tmp_path, resume=True
        )
    resumed = LDVAE(max_epochs=2, **options).fit(
        counts[:200], batch=batch[:200], checkpoint_dir=tmp_path, resume=True
    )
    assert len(resumed.history_) == 2
