"""Factorized embeddings: planted structure is recovered, state round-trips, errors are typed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anndata import AnnData

from omicsembed.exceptions import InvalidInputError, OmicsEmbedError, ShapeMismatchError
from omicsembed.models import FactorizedEmbedding
from omicsembed.train.loop import TrainingConfig, train

SMALL = {
    "sample_embedding_size": 4,
    "gene_embedding_size": 4,
    "hidden_sizes": (32, 16),
    "batch_size": 256,
    "learning_rate": 1e-2,
    "progress": False,
    "device": "cpu",
}


def planted(n: int = 60, m: int = 40, seed: int = 0, noise: float = 0.05, shift: float = 2.0):
    """Two sample groups on a rank-2 structure: X = U V^T + noise, groups differ in U."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(["A", "B"], n // 2)
    U = rng.normal(size=(n, 2)) * 0.5
    U[groups == "B", 0] += shift
    V = rng.normal(size=(m, 2))
    X = (U @ V.T + noise * rng.normal(size=(n, m))).astype(np.float32)
    return X, groups


def test_recovers_planted_low_rank_structure_and_imputes_held_out_entries() -> None:
    X, _ = planted()
    rng = np.random.default_rng(1)
    hidden = rng.random(X.shape) < 0.1
    observed = X.copy()
    observed[hidden] = np.nan
    model = FactorizedEmbedding(**SMALL, max_epochs=150, validation_fraction=0.0, seed=0)
    model.fit(observed)
    imputed = model.impute(observed)
    # observed values are untouched, missing ones are predicted well
    np.testing.assert_array_equal(imputed[~hidden], X[~hidden])
    r_model = np.corrcoef(imputed[hidden], X[hidden])[0, 1]
    gene_means = np.broadcast_to(np.nanmean(observed, axis=0), X.shape)[hidden]
    r_gene_mean = np.corrcoef(gene_means, X[hidden])[0, 1]
    assert r_model > 0.9, r_model
    assert r_model > r_gene_mean + 0.2


def test_sample_embeddings_separate_planted_groups_and_anndata_is_written() -> None:
    X, groups = planted()
    adata = AnnData(X)
    adata.obs["group"] = groups
    FactorizedEmbedding(**SMALL, max_epochs=150, validation_fraction=0.0, seed=0).fit(adata)
    Z = adata.obsm["X_fe"]
    assert Z.shape == (60, 4)
    assert adata.varm["fe"].shape == (40, 4)
    assert adata.uns["fe"]["params"]["sample_embedding_size"] == 4
    # nearest-centroid classification of the planted groups in the embedding space
    centroids = np.stack([Z[groups == g].mean(0) for g in ("A", "B")])
    predicted = np.array(["A", "B"])[
        np.argmin(((Z[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    ]
    assert (predicted == groups).mean() >= 0.95


def test_history_has_validation_loss_and_training_reduces_it() -> None:
    X, _ = planted()
    model = FactorizedEmbedding(**SMALL, max_epochs=30, validation_fraction=0.2, seed=0).fit(X)
    history = model.history_
    assert list(history.columns) == ["epoch", "train_loss", "validation_loss"]
    assert history["validation_loss"].iloc[-1] < 0.5 * history["validation_loss"].iloc[0]


def test_same_seed_same_model_and_save_load_round_trip(tmp_path) -> None:
    X, _ = planted(n=20, m=10)
    first = FactorizedEmbedding(**SMALL, max_epochs=3, seed=5).fit(X)
    second = FactorizedEmbedding(**SMALL, max_epochs=3, seed=5).fit(X)
    np.testing.assert_array_equal(first.sample_embeddings_, second.sample_embeddings_)
    first.save(tmp_path / "model")
    loaded = FactorizedEmbedding.load(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(loaded.reconstruct(), first.reconstruct())
    assert loaded.feature_names_ == first.feature_names_
    assert loaded.history_.equals(first.history_)
    assert not list((tmp_path / "model").glob("*.tmp"))


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path) -> None:
    X, _ = planted(n=30, m=12)
    options = {**SMALL, "early_stopping_patience": None, "checkpoint_every": 2, "seed": 3}
    straight = FactorizedEmbedding(**options, max_epochs=6).fit(X)
    FactorizedEmbedding(**options, max_epochs=4).fit(X, checkpoint_dir=tmp_path)
    resumed = FactorizedEmbedding(**options, max_epochs=6).fit(
        X, checkpoint_dir=tmp_path, resume=True
    )
    assert len(resumed.history_) == 6
    np.testing.assert_allclose(
        resumed.history_["train_loss"], straight.history_["train_loss"], rtol=1e-5
    )
    np.testing.assert_allclose(
        resumed.sample_embeddings_, straight.sample_embeddings_, rtol=1e-4, atol=1e-6
    )


def test_resume_refuses_a_checkpoint_of_other_data_or_settings(tmp_path) -> None:
    X, _ = planted(n=30, m=12)
    options = {**SMALL, "early_stopping_patience": None, "checkpoint_every": 1, "seed": 3}
    FactorizedEmbedding(**options, max_epochs=2).fit(X, checkpoint_dir=tmp_path)
    written = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    other = X.copy()
    other[5, 4] += 1.0  # same shape, one value differs
    with pytest.raises(InvalidInputError, match=r"run on other data \(the matrix differ\)"):
        FactorizedEmbedding(**options, max_epochs=3).fit(
            other, checkpoint_dir=tmp_path, resume=True
        )
    with pytest.raises(InvalidInputError, match=r"other settings \(learning_rate 0.01 → 0.02"):
        FactorizedEmbedding(**{**options, "learning_rate": 0.02}, max_epochs=3).fit(
            X, checkpoint_dir=tmp_path, resume=True
        )
    # both at once are named at once
    with pytest.raises(InvalidInputError, match=r"other data .* and with other settings \(seed 3"):
        FactorizedEmbedding(**{**options, "seed": 4}, max_epochs=3).fit(
            other, checkpoint_dir=tmp_path, resume=True
        )
    # the refused attempts left the checkpoint as it was, byte for byte
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == written
    # how long to train may change
    resumed = FactorizedEmbedding(
        **{**options, "early_stopping_patience": 5, "checkpoint_every": 2}, max_epochs=3
    ).fit(X, checkpoint_dir=tmp_path, resume=True)
    assert len(resumed.history_) == 3


def test_a_checkpoint_of_an_earlier_version_resumes_with_a_warning(tmp_path) -> None:
    import json

    X, _ = planted(n=30, m=12)
    options = {**SMALL, "early_stopping_patience": None, "seed": 3}
    FactorizedEmbedding(**options, max_epochs=2).fit(X, checkpoint_dir=tmp_path)
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    del manifest["run"]  # as written before checkpoints recorded their run
    (tmp_path / "checkpoint.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="does not record its data and settings"):
        resumed = FactorizedEmbedding(**options, max_epochs=3).fit(
            X, checkpoint_dir=tmp_path, resume=True
        )
    assert len(resumed.history_) == 3


def test_run_identity_digests_values_not_storage() -> None:
    from scipy import sparse

    from omicsembed.train.loop import RunIdentity

    def digest(array):
        return RunIdentity.of({"matrix": array}, {}).data["matrix"]

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    a[0, 1] = np.nan
    reference = digest(a)
    # the same values stored otherwise: Fortran order, another NaN, -0.0
    other_nan = a.copy()
    other_nan[0, 1] = -np.float32(np.nan)
    assert np.signbit(other_nan[0, 1]) != np.signbit(a[0, 1])
    negative_zero = a.copy()
    negative_zero[0, 0] = -0.0
    for same in (a.copy(), np.asfortranarray(a), other_nan, negative_zero):
        assert digest(same) == reference
    # other values, shape or dtype
    changed = a.copy()
    changed[2, 3] = 12.0
    for different in (changed, a.reshape(4, 3), a.astype(np.float64)):
        assert digest(different) != reference
    # sparse: index dtypes, explicit zeros and index order do not count; the structure does
    csr = sparse.csr_matrix(np.array([[0, 1, 0], [2, 0, 3]], dtype=np.float32))
    wide = csr.copy()
    wide.indices, wide.indptr = wide.indices.astype(np.int64), wide.indptr.astype(np.int64)
    stored_zero = sparse.csr_matrix(
        (np.array([1, 0, 2, 3], np.float32), [1, 2, 0, 2], [0, 2, 4]), shape=(2, 3)
    )
    unsorted = sparse.csr_matrix(
        (np.array([1, 3, 2], np.float32), [1, 2, 0], [0, 1, 3]), shape=(2, 3)
    )
    unsorted.has_sorted_indices = False
    for same in (wide, stored_zero, unsorted):
        assert digest(same) == digest(csr)
    moved = sparse.csr_matrix(np.array([[1, 0, 0], [2, 0, 3]], dtype=np.float32))
    assert digest(moved) != digest(csr)
    with pytest.raises(InvalidInputError, match="object arrays"):
        digest(np.array([1, "a"], dtype=object))
    identity = RunIdentity.of({"matrix": a, "descriptors": None}, {"hidden_sizes": (2, 3)})
    assert identity.settings == {"hidden_sizes": [2, 3]}
    assert identity.data["descriptors"] == "none"


def test_interrupted_training_leaves_a_checkpoint_to_resume(tmp_path) -> None:
    module = torch.nn.Linear(3, 1)
    data = [(torch.randn(8, 3), torch.randn(8))]

    def loss(batch):
        x, y = batch
        return torch.nn.functional.mse_loss(module(x).squeeze(-1), y), 8

    def interrupt(state):
        if state.epoch == 3:
            raise KeyboardInterrupt

    config = TrainingConfig(max_epochs=10, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(module, loss, lambda epoch: data, config, on_epoch_end=interrupt)
    state = train(module, loss, lambda epoch: data, config, resume=True)
    assert state.epoch == 10
    assert [row["epoch"] for row in state.history] == list(map(float, range(1, 11)))


def test_embed_new_samples_with_frozen_network() -> None:
    X, groups = planted(n=80, seed=0, shift=3.0)
    train_rows = np.r_[0:30, 40:70]
    new_rows = np.r_[30:40, 70:80]
    model = FactorizedEmbedding(**SMALL, max_epochs=150, validation_fraction=0.0, seed=0)
    model.fit(X[train_rows])
    weights_before = {k: v.clone() for k, v in model.network_.state_dict().items()}
    Z_new = model.embed_new_samples(X[new_rows])
    for key, value in model.network_.state_dict().items():
        assert torch.equal(value, weights_before[key]), f"{key} changed"
    decoded = model.impute(np.full((len(new_rows), X.shape[1]), np.nan), sample_embeddings=Z_new)
    r = [np.corrcoef(decoded[i], X[new_rows][i])[0, 1] for i in range(len(new_rows))]
    assert np.median(r) > 0.9
    Z = model.sample_embeddings_
    centroids = np.stack([Z[groups[train_rows] == g].mean(0) for g in ("A", "B")])
    nearest = np.argmin(((Z_new[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (np.array(["A", "B"])[nearest] == groups[new_rows]).mean() >= 0.9


def test_re_embedding_fitted_samples_fits_them_as_well_as_training() -> None:
    X, _ = planted(n=40, seed=2)
    model = FactorizedEmbedding(**SMALL, max_epochs=150, validation_fraction=0.0, seed=0).fit(X)
    # embeddings are not identifiable (4 dimensions for rank-2 data), their fit is: embedding
    # the fitted samples again must fit them as well as training did
    Z_again = model.embed_new_samples(X)
    fitted_error = np.mean((model.reconstruct() - X) ** 2)
    again = model.impute(np.full_like(X, np.nan), sample_embeddings=Z_again)
    assert np.mean((again - X) ** 2) <= 1.1 * fitted_error


def test_transfer_moves_samples_towards_the_target_group() -> None:
    X, groups = planted()
    model = FactorizedEmbedding(**SMALL, max_epochs=150, validation_fraction=0.0, seed=0).fit(X)
    a_rows = np.flatnonzero(groups == "A")
    moved = model.transfer(a_rows, groups=groups, from_group="A", to_group="B")
    mean_b = X[groups == "B"].mean(0)
    before = np.abs(X[a_rows].mean(0) - mean_b).mean()
    after = np.abs(moved.mean(0) - mean_b).mean()
    assert after < 0.3 * before
    with pytest.raises(InvalidInputError, match="no fitted samples"):
        model.transfer([0], groups=groups, from_group="A", to_group="C")
    with pytest.raises(ShapeMismatchError):
        model.transfer([0], groups=groups[:5], from_group="A", to_group="B")


def test_descriptors_are_embedded_and_checked() -> None:
    X, _ = planted(n=40, m=20)
    batch = np.where(np.arange(40) % 2 == 0, "b1", "b2")
    X[batch == "b2"] += 1.0  # planted batch effect
    adata = AnnData(X)
    adata.obs["batch"] = batch
    model = FactorizedEmbedding(**SMALL, max_epochs=60, validation_fraction=0.0, seed=0)
    model.fit(adata, descriptors=["batch"])
    reconstructed = model.reconstruct()
    effect = reconstructed[batch == "b2"].mean() - reconstructed[batch == "b1"].mean()
    assert 0.7 < effect < 1.3
    new = adata[:4].copy()
    new.obs["batch"] = ["b1", "b2", "b3", "b1"]
    with pytest.raises(InvalidInputError, match="unseen"):
        model.embed_new_samples(new, max_epochs=2)
    with pytest.raises(InvalidInputError, match=r"not in \.obs"):
        FactorizedEmbedding(**SMALL, max_epochs=1).fit(adata, descriptors=["donor"])


def test_bad_input_raises_typed_errors(tmp_path) -> None:
    X, _ = planted(n=10, m=6)
    bad = X.copy()
    bad[2, 3] = np.inf
    with pytest.raises(InvalidInputError, match="row 2, column 3"):
        FactorizedEmbedding(**SMALL, max_epochs=1).fit(bad)
    # AnnData: the cell and the gene are named
    named = AnnData(bad)
    named.obs_names = [f"c{i}" for i in range(bad.shape[0])]
    named.var_names = [f"g{i}" for i in range(bad.shape[1])]
    with pytest.raises(InvalidInputError, match=r"row 2 \(cell 'c2'\), column 3 \(gene 'g3'\)"):
        FactorizedEmbedding(**SMALL, max_epochs=1).fit(named)
    with pytest.raises(InvalidInputError, match="2-D"):
        FactorizedEmbedding(**SMALL, max_epochs=1).fit(X[0])
    with pytest.raises(InvalidInputError, match="not fitted"):
        FactorizedEmbedding(**SMALL).reconstruct()
    with pytest.raises(InvalidInputError, match="validation_fraction"):
        FactorizedEmbedding(validation_fraction=1.0)
    with pytest.raises(InvalidInputError, match="no checkpoint"):
        FactorizedEmbedding(**SMALL, max_epochs=1).fit(X, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(OmicsEmbedError):
        FactorizedEmbedding(**SMALL, max_epochs=1).fit(np.full((4, 3), np.nan, np.float32))
    model = FactorizedEmbedding(**SMALL, max_epochs=1).fit(AnnData(X))
    with pytest.raises(ShapeMismatchError, match="expected 6 genes"):
        model.embed_new_samples(X[:, :5])
    renamed = AnnData(X[:2])
    renamed.var_names = [f"other_{i}" for i in range(6)]
    with pytest.raises(InvalidInputError, match="missing from the data"):
        model.embed_new_samples(renamed)
    with pytest.raises(InvalidInputError, match="does not hold a saved model"):
        FactorizedEmbedding.load(tmp_path)
