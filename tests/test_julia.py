"""The optional Julia reference path: clear errors without Julia; real runs only with Julia."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy import sparse

from omicsembed import julia
from omicsembed.exceptions import InvalidInputError, OmicsEmbedError, ShapeMismatchError

os.environ.setdefault("PYTHON_JULIAPKG_OFFLINE", "yes")


def test_project_is_found_in_the_source_tree() -> None:
    assert (julia.julia_project() / "src" / "OmicsEmbedReference.jl").is_file()


def test_missing_project_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OMICSEMBED_JULIA_PROJECT", str(tmp_path))
    with pytest.raises(julia.JuliaUnavailableError, match="OMICSEMBED_JULIA_PROJECT"):
        julia.julia_project()


@pytest.mark.parametrize(
    ("reference", "model", "may_differ"),
    [
        # BoltzmannMachines.jl sweeps synchronously; Julia's seed cannot be None
        ("fit_dbm", "DeepBoltzmannMachine", {"gibbs_schedule", "seed"}),
        ("fit_bernoulli_vae", "BernoulliVAE", {"seed"}),
    ],
)
def test_the_julia_models_take_the_arguments_and_defaults_of_ours(
    reference: str, model: str, may_differ: set[str]
) -> None:
    import inspect

    from omicsembed import models

    theirs = dict(inspect.signature(getattr(julia, reference)).parameters)
    theirs.pop("X")
    ours = inspect.signature(getattr(models, model)).parameters
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    for name, parameter in theirs.items():
        if name not in may_differ:
            default = ours[name].default
            assert parameter.default == default, (name, parameter.default, default)


@pytest.mark.parametrize(
    "setting", [{"gibbs_schedule": "blocked"}, {"n_gibbs_sweeps": 3}, {"fine_tuning_batch_size": 8}]
)
def test_settings_boltzmannmachines_cannot_follow_are_refused_before_julia_starts(
    setting: dict,
) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(setting))):
        julia.fit_dbm(np.zeros((4, 3)), **setting)


@pytest.mark.parametrize(
    ("reference", "model", "method"),
    [
        ("sample_dbm", "DeepBoltzmannMachine", "sample"),
        ("generate_bernoulli_vae", "BernoulliVAE", "generate"),
    ],
)
def test_julia_sampling_takes_the_arguments_and_defaults_of_ours(
    reference: str, model: str, method: str
) -> None:
    import inspect

    from omicsembed import models

    theirs = list(inspect.signature(getattr(julia, reference)).parameters.values())[2:]
    ours = inspect.signature(getattr(getattr(models, model), method)).parameters
    for parameter in theirs:
        assert parameter.name in ours, parameter.name
        if parameter.name != "seed":
            assert parameter.default == ours[parameter.name].default, parameter.name


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: julia.sample_dbm(None, 0), "n_samples"),
        (lambda: julia.generate_bernoulli_vae(None, 2.5), "n_samples"),
        (lambda: julia.generate_bernoulli_vae(None, 5, layer="counts"), "give from_cells"),
        (lambda: julia.generate_bernoulli_vae(None, 5, dichotomize_latent="mean"), "'mean'"),
        (lambda: julia.fit_bernoulli_vae(np.zeros((4, 3)), hidden_sizes=()), "at least one"),
        (lambda: julia.fit_dbm(np.zeros((4, 3)), hidden_sizes=(3, 0)), "hidden_sizes"),
    ],
)
def test_what_the_reference_cannot_do_is_refused_before_julia_starts(call, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        call()


@pytest.mark.skipif(julia.julia_available(), reason="juliacall is installed here")
def test_without_julia_the_error_says_how_to_get_it() -> None:
    julia._reference.cache_clear()
    with pytest.raises(julia.JuliaUnavailableError, match=r"omicsembed\[julia\]"):
        julia.fit_dbm(np.zeros((4, 3)))


needs_julia = pytest.mark.skipif(
    not julia.julia_available(), reason="no Julia here (juliacall is not installed)"
)


@pytest.fixture(scope="module")
def binary_cells() -> np.ndarray:
    return (np.random.default_rng(0).random((200, 12)) < 0.3).astype(float)


@pytest.fixture(scope="module")
def julia_dbm(binary_cells):  # pragma: no cover - needs Julia
    return julia.fit_dbm(binary_cells, hidden_sizes=[6, 3], epochs=2, seed=0)


@pytest.fixture(scope="module")
def julia_vae(binary_cells):  # pragma: no cover - needs Julia
    return julia.fit_bernoulli_vae(
        binary_cells, n_latent=3, hidden_sizes=(8,), max_epochs=2, seed=0
    )


@needs_julia
def test_julia_dbm_samples_have_the_layer_shapes(julia_dbm) -> None:  # pragma: no cover
    layers = julia.sample_dbm(julia_dbm, 50, burn_in=5)
    assert [layer.shape for layer in layers] == [(50, 12), (50, 6), (50, 3)]
    assert all(np.isin(layer, (0.0, 1.0)).all() for layer in layers)


@needs_julia
def test_julia_clamped_units_stay_fixed(julia_dbm) -> None:  # pragma: no cover - needs Julia
    visible, *_ = julia.sample_dbm(julia_dbm, 50, burn_in=5, clamped={0: 1, 5: 0})
    assert (visible[:, 0] == 1).all() and (visible[:, 5] == 0).all()
    assert 0 < visible[:, 1:5].mean() < 1
    mask = np.zeros(12, bool)
    mask[[2, 7]] = True
    values = np.zeros((50, 12))
    values[::2, 2] = values[1::2, 7] = 1  # different per chain
    visible, *_ = julia.sample_dbm(julia_dbm, 50, burn_in=5, clamped=(mask, values))
    np.testing.assert_array_equal(visible[:, mask], values[:, mask])


@needs_julia
def test_julia_vae_generates_binary_cells_and_codes(julia_vae) -> None:  # pragma: no cover
    features, latent = julia.generate_bernoulli_vae(julia_vae, 40, seed=1)
    assert features.shape == (40, 12) and latent.shape == (40, 3)
    assert np.isin(features, (0.0, 1.0)).all() and np.isin(latent, (0.0, 1.0)).all()
    _, median = julia.generate_bernoulli_vae(julia_vae, 40, seed=1, dichotomize_latent="median")
    assert (median.sum(axis=0) == 20).all()


@needs_julia
def test_julia_vae_draws_from_the_posterior_of_cells(
    julia_vae, binary_cells
) -> None:  # pragma: no cover - needs Julia
    features, latent = julia.generate_bernoulli_vae(
        julia_vae, 40, seed=1, from_cells=binary_cells[:7]
    )
    assert features.shape == (40, 12) and latent.shape == (40, 3)
    # the same noise (drawn first) with cells [a, b] and [a, a]: sample i uses cell i mod 2
    reference, a, b = julia._reference(), binary_cells[0], binary_cells[1]
    assert not np.array_equal(a, b)

    def codes(cells):
        return np.asarray(reference.generate_bernoulli_vae(julia_vae, 6, seed=1, cells=cells)[1])

    two, same, prior = codes(np.stack([a, b])), codes(np.stack([a, a])), codes(None)
    np.testing.assert_array_equal(two[::2], same[::2])
    assert not np.isclose(two[1::2], same[1::2]).all()
    assert not np.isclose(two, prior).all()


def test_latent_codes_from_julia_are_dichotomised_at_zero_or_the_median(monkeypatch) -> None:
    # Julia returns the continuous codes (samples × units); Python dichotomises them
    codes = np.array([[-1.0, 0.2], [0.5, 0.1], [2.0, -0.3], [0.1, 0.4]])
    features = np.array([[1.0, 0.0, 1.0]] * 4)

    class Reference:
        def generate_bernoulli_vae(self, vae, n_samples, *, seed, cells):
            return features, codes

    monkeypatch.setattr(julia, "_reference", lambda: Reference())
    cells, zero = julia.generate_bernoulli_vae(None, 4)
    _, median = julia.generate_bernoulli_vae(None, 4, dichotomize_latent="median")
    assert cells.dtype == zero.dtype == median.dtype == np.uint8
    np.testing.assert_array_equal(zero, [[0, 1], [1, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(median, [[0, 1], [1, 0], [1, 0], [0, 1]])


def test_hidden_sizes_reach_julia_as_an_int64_vector(monkeypatch) -> None:
    seen = {}

    class Reference:
        def fit_bernoulli_vae(self, x, **options):
            seen.update(options)

    monkeypatch.setattr(julia, "_reference", lambda: Reference())
    julia.fit_bernoulli_vae(np.zeros((4, 3)), hidden_sizes=(8, 4))
    assert seen["hidden_sizes"].dtype == np.int64 and seen["hidden_sizes"].tolist() == [8, 4]


class FakeReference:
    """Records what the Python wrappers hand to Julia (a model of ``n_features`` features)."""

    def __init__(self, n_features: int) -> None:
        self.features = n_features
        self.calls: list[dict] = []

    def n_features(self, model):
        return self.features

    def sample_dbm(self, dbm, n_samples, **options):
        self.calls.append(options)
        return [np.zeros((n_samples, self.features)), np.zeros((n_samples, 2))]

    def generate_bernoulli_vae(self, vae, n_samples, **options):
        self.calls.append(options)
        return np.zeros((n_samples, self.features)), np.zeros((n_samples, 2))


def test_clamped_units_reach_gibbssamplecond_as_a_mask_and_values(monkeypatch) -> None:
    fake = FakeReference(4)
    monkeypatch.setattr(julia, "_reference", lambda: fake)
    julia.sample_dbm(None, 3, burn_in=7, seed=2)
    assert fake.calls[-1] == {"burn_in": 7, "seed": 2}  # no clamp: gibbssample!
    julia.sample_dbm(None, 3, clamped={1: 1, 3: 0})
    sent = fake.calls[-1]
    assert sent["clamp_mask"].dtype == bool
    np.testing.assert_array_equal(sent["clamp_mask"], [False, True, False, True])
    assert sent["clamp_values"].dtype == np.float64 and sent["clamp_values"].shape == (3, 4)
    np.testing.assert_array_equal(sent["clamp_values"][:, [1, 3]], [[1.0, 0.0]] * 3)
    # per-chain values; unmasked entries are not read (NaN there is no error) and sent as 0
    values = np.array([[0, np.nan, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    julia.sample_dbm(None, 3, clamped=(np.array([True, False, False, True]), values))
    np.testing.assert_array_equal(
        fake.calls[-1]["clamp_values"], [[0, 0, 0, 0], [0, 0, 0, 1], [1, 0, 0, 1]]
    )


@pytest.mark.parametrize(
    ("clamped", "error", "message"),
    [
        ({"Gad1": 1}, InvalidInputError, "no feature names"),
        ({4: 1}, InvalidInputError, r"outside 0\.\.3"),
        ({0: 2}, InvalidInputError, "0 or 1"),
        ((np.ones(3, bool), np.ones(4)), ShapeMismatchError, "mask"),
    ],
)
def test_bad_clamps_of_a_julia_dbm_are_refused(monkeypatch, clamped, error, message) -> None:
    fake = FakeReference(4)
    monkeypatch.setattr(julia, "_reference", lambda: fake)
    with pytest.raises(error, match=message):
        julia.sample_dbm(None, 3, clamped=clamped)
    assert fake.calls == []


def test_posterior_draws_send_the_cells_to_julia(monkeypatch) -> None:
    import anndata

    fake = FakeReference(3)
    monkeypatch.setattr(julia, "_reference", lambda: fake)
    julia.generate_bernoulli_vae(None, 5)
    assert fake.calls[-1]["cells"] is None  # prior draws
    cells = np.array([[1, 0, 1], [0, 0, 1]], dtype=np.uint8)
    julia.generate_bernoulli_vae(None, 5, from_cells=cells)
    sent = fake.calls[-1]["cells"]
    assert sent.dtype == np.float64
    np.testing.assert_array_equal(sent, cells)
    layers = {"binary": sparse.csr_matrix(cells)}
    data = anndata.AnnData(np.zeros((2, 3), np.float32), layers=layers)
    julia.generate_bernoulli_vae(None, 5, from_cells=data, layer="binary")
    np.testing.assert_array_equal(fake.calls[-1]["cells"], cells)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"from_cells": np.ones((2, 4))}, ShapeMismatchError, "4 features"),
        ({"from_cells": np.ones((0, 3))}, InvalidInputError, "no cells"),
        ({"from_cells": np.full((2, 3), 0.5)}, OmicsEmbedError, "0/1"),
        ({"from_cells": np.ones((2, 3)), "layer": "binary"}, InvalidInputError, "AnnData"),
    ],
)
def test_bad_cells_for_posterior_draws_are_refused(monkeypatch, options, error, message) -> None:
    fake = FakeReference(3)
    monkeypatch.setattr(julia, "_reference", lambda: fake)
    with pytest.raises(error, match=message):
        julia.generate_bernoulli_vae(None, 5, **options)
    assert fake.calls == []
