"""Boltzmann machines: exact/AIS likelihoods against brute-force enumeration, Gibbs sampling
against the exact distribution, training on planted structure, persistence and errors."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
from anndata import AnnData
from scipy import stats
from scipy.special import expit, logsumexp, xlogy

from omicsembed import _core
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models.boltzmann import BernoulliRBM, BoltzmannMonitor, DeepBoltzmannMachine


def random_params(sizes, *, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return [
        (rng.normal(0, scale, (a, b)), rng.normal(0, 0.5, a), rng.normal(0, 0.5, b))
        for a, b in itertools.pairwise(sizes)
    ]


def model_from(params, cls=DeepBoltzmannMachine):
    model = cls(seed=0, progress=False)
    model._set_params(params)
    model.feature_names_ = [f"g{j}" for j in range(params[0][0].shape[0])]
    return model


def brute_force(params):
    """log Z, and log p(v) of every visible configuration, by summing exp(−E) over all states."""
    sizes = [params[0][0].shape[0]] + [w.shape[1] for w, _, _ in params]
    biases = [params[0][1]]
    biases += [params[i - 1][2] + params[i][1] for i in range(1, len(params))]
    biases += [params[-1][2]]
    total = sum(sizes)
    codes = np.array(list(itertools.product([0.0, 1.0], repeat=total)))
    layers = np.split(codes, np.cumsum(sizes)[:-1], axis=1)
    neg_energy = sum(layer @ b for layer, b in zip(layers, biases, strict=True))
    for i, (w, _, _) in enumerate(params):
        neg_energy += np.einsum("ni,ij,nj->n", layers[i], w, layers[i + 1])
    log_z = logsumexp(neg_energy)
    visible = {}
    for v, e in zip(map(tuple, layers[0].astype(int)), neg_energy, strict=True):
        visible.setdefault(v, []).append(e)
    log_p = {v: logsumexp(es) - log_z for v, es in visible.items()}
    return log_z, log_p, (layers, neg_energy - log_z)


def planted(n=200, p=8, noise=0.1, seed=0):
    """Two prototypes (first half on / second half on) with bit-flip noise."""
    rng = np.random.default_rng(seed)
    prototype = np.zeros((n, p))
    prototype[::2, : p // 2] = 1
    prototype[1::2, p // 2 :] = 1
    flips = rng.random((n, p)) < noise
    return np.abs(prototype - flips).astype(np.float64)


@pytest.mark.parametrize("sizes", [[4, 3], [3, 4, 2], [3, 2, 3, 2]])
def test_exact_likelihood_matches_brute_force(sizes):
    params = random_params(sizes, seed=len(sizes))
    log_z, log_p, _ = brute_force(params)
    assert _core.log_partition_exact(params) == pytest.approx(log_z, abs=1e-9)
    x = np.array(list(log_p), dtype=np.float64)
    model = model_from(params)
    got = model.log_likelihood(x, method="exact", per_sample=True)
    np.testing.assert_allclose(got, [log_p[tuple(v)] for v in x.astype(int)], atol=1e-9)
    # The probabilities of all visible configurations sum to one.
    assert logsumexp(got) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("sizes", [[6, 4], [5, 4, 3], [4, 3, 3, 2]])
def test_ais_agrees_with_exact(sizes):
    params = random_params(sizes, seed=10 + len(sizes))
    model = model_from(params)
    exact = model.log_partition(method="exact")
    ais = model.log_partition(n_particles=256, n_temperatures=200, seed=1)
    assert ais == pytest.approx(exact, abs=0.05)
    x = planted(6, sizes[0], seed=1)
    ll_ais = model.log_likelihood(x, n_particles=128, n_temperatures=100, seed=2, log_z=exact)
    ll_exact = model.log_likelihood(x, method="exact")
    assert ll_ais == pytest.approx(ll_exact, abs=0.05)


def test_ais_with_a_given_temperature_schedule():
    params = random_params([5, 4, 3], seed=12)
    model = model_from(params)
    exact = model.log_partition(method="exact")
    # denser near 1, where the annealed model changes most (100 steps)
    schedule = 1 - np.linspace(1, 0, 100) ** 2
    ais = model.log_partition(n_particles=256, temperatures=schedule, seed=1)
    assert ais == pytest.approx(exact, abs=0.05)
    # the schedule is used: two temperatures (a jump from 0 to 1) give a worse estimate
    jump = model.log_partition(n_particles=256, temperatures=[0.0, 1.0], seed=1)
    assert abs(jump - exact) > abs(ais - exact)
    x = planted(6, 5, seed=1)
    ll = model.log_likelihood(x, n_particles=128, temperatures=schedule, seed=2, log_z=exact)
    assert ll == pytest.approx(model.log_likelihood(x, method="exact"), abs=0.05)
    for bad, message in (
        ([0.0, 0.5], "start at 0 and end at 1"),
        ([0.0, 0.7, 0.3, 1.0], "non-decreasing"),
        ([[0.0, 1.0]], "1-D"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            model.log_partition(temperatures=bad)


def test_lower_bound_is_below_the_exact_log_likelihood():
    params = random_params([5, 4, 3], seed=3)
    model = model_from(params)
    log_z = model.log_partition(method="exact")
    x = planted(10, 5, seed=3)
    bound = model.log_likelihood(x, method="lower_bound", log_z=log_z, per_sample=True)
    exact = model.log_likelihood(x, method="exact", per_sample=True)
    assert np.all(bound <= exact + 1e-9)
    # the bound itself, from an independent mean-field fixed point (damping-free iteration to
    # convergence): E_q[−E] + H(q) − log Z with q the factorised posterior of both layers
    (w1, _, b1), (w2, a2, b2) = params
    mu1, mu2 = np.full((len(x), 4), 0.5), np.full((len(x), 3), 0.5)
    for _ in range(1000):
        mu1 = expit(x @ w1 + b1 + a2 + mu2 @ w2.T)
        mu2 = expit(mu1 @ w2 + b2)

    def entropy(q):
        return -(xlogy(q, q) + xlogy(1 - q, 1 - q)).sum(1)

    energy = (
        x @ params[0][1]
        + mu1 @ (b1 + a2)
        + mu2 @ b2
        + np.einsum("ni,ij,nj->n", x, w1, mu1)
        + np.einsum("ni,ij,nj->n", mu1, w2, mu2)
    )
    # (the model's mean field stops at a tolerance of 1e-3: the bound moves by < 1e-5)
    np.testing.assert_allclose(bound, energy + entropy(mu1) + entropy(mu2) - log_z, atol=1e-5)
    assert np.all(exact - bound < 0.5)


def test_gibbs_sampler_reproduces_the_model_distribution():
    params = random_params([3, 2, 2], seed=4)
    _, _, (layers, log_p) = brute_force(params)
    model = model_from(params)
    n = 20_000
    visible, hidden = model.sample(n, burn_in=30, seed=5)
    states = np.hstack([visible, *hidden]).astype(int)
    codes = states @ (1 << np.arange(states.shape[1]))
    observed = np.bincount(codes, minlength=2 ** states.shape[1])
    all_states = np.hstack(layers).astype(int)
    expected = n * np.exp(log_p)[np.argsort(all_states @ (1 << np.arange(states.shape[1])))]
    result = stats.chisquare(observed, expected)
    assert result.pvalue > 1e-3, result


@pytest.mark.parametrize("value", [0, 1])
def test_clamped_sampling_reproduces_the_conditional_distribution(value):
    params = random_params([3, 2, 2], seed=4)
    _, _, (layers, log_p) = brute_force(params)
    model = model_from(params)
    n = 20_000
    visible, hidden = model.sample(n, burn_in=30, seed=5, clamped={0: value})
    states = np.hstack([visible, *hidden]).astype(int)
    assert np.all(states[:, 0] == value)
    # p(other units | v0 = value) by enumeration
    all_states = np.hstack(layers).astype(int)
    keep = all_states[:, 0] == value
    weights = 1 << np.arange(states.shape[1])
    codes = all_states[keep] @ weights
    expected = np.exp(log_p[keep] - logsumexp(log_p[keep])) * n
    observed = np.array([np.count_nonzero(states @ weights == c) for c in codes])
    result = stats.chisquare(observed, expected)
    assert result.pvalue > 1e-3, result


def test_contrastive_divergence_update_is_the_expected_one():
    """One CD-1 update on all samples at a small learning rate, against its expectation by
    enumeration of the hidden states, in BoltzmannMachines.jl's convention: v1 and h1 of the
    negative phase are probabilities (σ), h0 of the positive phase is sampled; hidden
    potentials are multiplied by the up-factor (2 for the first layer of a DBM stack)."""
    rng = np.random.default_rng(0)
    n_visible, n_hidden, n = 4, 3, 20_000
    w = rng.normal(0, 0.7, (n_visible, n_hidden))
    a, b = rng.normal(0, 0.5, n_visible), rng.normal(0, 0.5, n_hidden)
    x = (rng.random((n, n_visible)) < [0.2, 0.7, 0.5, 0.4]).astype(np.float64)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=n_hidden)))
    lr = 1e-3
    for up in (1.0, 2.0):
        h_data = expit(up * (x @ w + b))  # p(h = 1 | x)
        # P(h0 = state | x), averaged over the samples
        p_state = np.prod(np.where(states[None] == 1, h_data[:, None], 1 - h_data[:, None]), 2)
        weight = p_state.mean(0)
        v1 = expit(states @ w.T + a)
        h1 = expit(up * (v1 @ w + b))
        want_w = x.T @ h_data / n - (v1 * weight[:, None]).T @ h1
        want_a = x.mean(0) - weight @ v1
        want_b = h_data.mean(0) - weight @ h1
        w2, a2, b2 = _core.persistent_contrastive_divergence(
            x,
            n_hidden,
            learning_rates=[lr],
            batch_size=n,
            cd_steps=1,
            pcd=False,
            up_factor=up,
            seed=1,
            start=(w.copy(), a.copy(), b.copy()),
        )
        # sampling noise of h0 over 20,000 samples: ~3e-3 against updates of ~0.1
        np.testing.assert_allclose((w2 - w) / lr, want_w, atol=0.01)
        np.testing.assert_allclose((a2 - a) / lr, want_a, atol=0.01)
        np.testing.assert_allclose((b2 - b) / lr, want_b, atol=0.01)


def test_fine_tuning_update_is_mean_field_minus_model_expectation():
    """One fine-tuning step of all samples at a small learning rate: ΔW/lr is the mean-field
    positive phase (x·μ1, μ1·μ2) minus the model's expectations, which enumeration gives
    exactly; 40,000 persistent particles after 100 sweeps estimate the latter."""
    params = random_params([4, 3, 2], scale=0.7, seed=2)
    (w1, _, b1), (w2, a2, b2) = params
    _, _, (layers, log_p) = brute_force(params)
    p = np.exp(log_p)
    visible, hidden1, hidden2 = layers
    x = (np.random.default_rng(0).random((500, 4)) < 0.5).astype(np.float64)
    mu1, mu2 = np.full((500, 3), 0.5), np.full((500, 2), 0.5)
    for _ in range(2000):
        mu1 = expit(x @ w1 + b1 + a2 + mu2 @ w2.T)
        mu2 = expit(mu1 @ w2 + b2)
    want1 = x.T @ mu1 / 500 - (visible * p[:, None]).T @ hidden1
    want2 = mu1.T @ mu2 / 500 - (hidden1 * p[:, None]).T @ hidden2
    lr = 1e-3
    (new1, _, _), (new2, _, _) = _core.dbm_fine_tune(
        [tuple(np.array(t) for t in layer) for layer in params],
        x,
        learning_rates=[lr],
        n_particles=40_000,
        n_gibbs_sweeps=100,
        eps=1e-10,
        seed=1,
    )
    # particle noise ~0.006 against gradients of up to 0.17
    np.testing.assert_allclose((new1 - w1) / lr, want1, atol=0.015)
    np.testing.assert_allclose((new2 - w2) / lr, want2, atol=0.015)


def test_fine_tuning_learning_rate_decays_as_in_fitdbm(monkeypatch):
    seen = {}

    def record(params, x, *, learning_rates, **options):
        seen["rates"] = learning_rates
        return params

    monkeypatch.setattr(_core, "dbm_fine_tune", record)
    DeepBoltzmannMachine((3,), epochs=4, learning_rate=0.05, progress=False).fit(planted(20, 6))
    np.testing.assert_allclose(seen["rates"], [0.05 * 11 / (10 + e) for e in (1, 2, 3, 4)])


def test_initialisation_follows_boltzmannmachines_jl():
    """W ~ N(0, 1)/sqrt(n_visible), visible bias = logit of the column means, hidden bias 0."""
    x = planted(400, 64, seed=2)
    rbm = BernoulliRBM(40, epochs=0, seed=3, progress=False).fit(x)
    (w, a, b) = rbm._fitted()[0]
    assert stats.kstest(w.ravel() * np.sqrt(64), "norm").pvalue > 1e-3
    mean = x.mean(0)
    np.testing.assert_allclose(a, np.log(mean / (1 - mean)), rtol=1e-12)
    assert np.all(b == 0)


def test_clamped_units_stay_clamped():
    model = model_from(random_params([8, 5, 3], seed=6))
    visible, _ = model.sample(200, burn_in=10, seed=1, clamped={0: 1, "g3": 0})
    assert np.all(visible[:, 0] == 1) and np.all(visible[:, 3] == 0)
    assert 0 < visible[:, 1].mean() < 1
    mask = np.zeros(8, dtype=bool)
    mask[[2, 5]] = True
    values = np.zeros((50, 8), dtype=np.uint8)
    values[:25, 2] = 1
    visible, _ = model.sample(50, burn_in=10, seed=2, clamped=(mask, values))
    np.testing.assert_array_equal(visible[:, [2, 5]], values[:, [2, 5]])


def test_same_seed_same_result():
    model = model_from(random_params([10, 6, 3], seed=7))
    a = model.sample(300, burn_in=5, seed=3)
    b = model.sample(300, burn_in=5, seed=3)
    c = model.sample(300, burn_in=5, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1][1], b[1][1])
    assert not np.array_equal(a[0], c[0])
    x = planted(60, 10)
    fit = [DeepBoltzmannMachine((6, 3), epochs=3, seed=9, progress=False).fit(x) for _ in range(2)]
    for w1, w2 in zip(fit[0].weights_, fit[1].weights_, strict=True):
        np.testing.assert_array_equal(w1, w2)


def test_memory_layout_does_not_change_training():
    # C order is copied in one piece; Fortran order and strided views are read in logical order
    x = planted(50, 7).astype(np.float64)
    runs = [
        _core.persistent_contrastive_divergence(
            layout, 3, learning_rates=[0.05], batch_size=5, seed=1
        )
        for layout in (x, np.asfortranarray(x), np.hstack([x, x])[:, :7], x[::-1][::-1])
    ]
    for other in runs[1:]:
        for reference, value in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(reference, value)


def test_training_increases_the_likelihood_on_planted_data():
    x = planted(200, 8)
    settings = {"learning_rate": 0.05, "batch_size": 10, "seed": 3, "progress": False}
    start = BernoulliRBM(4, epochs=0, **settings).fit(x)
    before = start.log_likelihood(x, method="exact")
    rbm = BernoulliRBM(4, epochs=30, **settings).fit(x)
    assert rbm.log_likelihood(x, method="exact") > before + 1.0
    dbm = DeepBoltzmannMachine(
        (4, 3), pretraining_epochs=30, epochs=30, fine_tuning_batch_size=20, **settings
    ).fit(x)
    after = dbm.log_likelihood(x, method="exact")
    assert after > before + 1.0
    # Samples reproduce the two prototypes: the first and second halves anti-correlate.
    visible, _ = dbm.sample(2000, seed=1)
    halves = np.corrcoef(visible[:, :4].sum(1), visible[:, 4:].sum(1))[0, 1]
    assert halves < -0.5


def test_synchronous_schedule_biases_fine_tuning():
    # BoltzmannMachines.jl samples the particles' layers all at once: adjacent layers come from
    # independent chains, the negative phase misses their correlation and the weights overgrow,
    # so the exact likelihood falls below that of blocked (exact) Gibbs fine-tuning.
    x = planted(200, 8)
    settings = {"learning_rate": 0.05, "batch_size": 10, "seed": 1, "progress": False}
    settings |= {"pretraining_epochs": 30, "epochs": 30, "fine_tuning_batch_size": 20}
    blocked = DeepBoltzmannMachine((4, 3), **settings).fit(x)
    synchronous = DeepBoltzmannMachine((4, 3), gibbs_schedule="synchronous", **settings).fit(x)
    assert blocked.gibbs_schedule == "blocked"
    norms = [np.linalg.norm(m.weights_[0]) for m in (blocked, synchronous)]
    assert norms[1] > 1.5 * norms[0], norms
    likelihoods = [m.log_likelihood(x, method="exact") for m in (blocked, synchronous)]
    assert likelihoods[1] < likelihoods[0] - 1.0, likelihoods
    with pytest.raises(InvalidInputError, match="gibbs_schedule"):
        DeepBoltzmannMachine((3,), gibbs_schedule="parallel", progress=False).fit(x)  # type: ignore[arg-type]


def test_monitor_records_metrics_per_epoch():
    x = planted(60, 8)
    monitor = BoltzmannMonitor(
        {"train": x, "test": planted(20, 8, seed=1)},
        metrics=("reconstruction_error", "lower_bound", "log_likelihood"),
        n_particles=32,
        n_temperatures=20,
    )
    model = DeepBoltzmannMachine((4, 3), epochs=4, batch_size=5, seed=1, progress=False)
    model.fit(x, monitor=monitor, monitor_every=2)
    table = monitor.to_frame()
    assert sorted(table.epoch.unique()) == [2, 4]
    assert len(table) == 2 * 2 * 3
    assert (table.value[table.metric == "reconstruction_error"] >= 0).all()
    assert model.history_ == monitor.records
    # the last epoch's values are those of the fitted model: the AIS log-likelihood near the
    # exact one, and the lower bound with the recorded AIS log Z equal to the model's
    last = table[table.epoch == 4].set_index(["dataset", "metric"])
    for name, data in (("train", x), ("test", planted(20, 8, seed=1))):
        exact = model.log_likelihood(data, method="exact")
        assert last.loc[(name, "log_likelihood"), "value"] == pytest.approx(exact, abs=0.05)
        bound = model.log_likelihood(
            data, method="lower_bound", log_z=last.loc[(name, "lower_bound"), "log_z"]
        )
        assert last.loc[(name, "lower_bound"), "value"] == pytest.approx(bound, abs=1e-9)
    calls = []
    BernoulliRBM(3, epochs=3, seed=1, progress=False).fit(
        x, monitor=lambda m, e: calls.append((e, m.weights_[0].copy()))
    )
    assert [e for e, _ in calls] == [1, 2, 3]
    assert not np.array_equal(calls[0][1], calls[2][1])


def test_save_load_round_trip(tmp_path):
    x = planted(40, 6)
    adata = AnnData(x, var={"gene": [f"gene{j}" for j in range(6)]})
    adata.var_names = [f"gene{j}" for j in range(6)]
    model = DeepBoltzmannMachine(
        (4, 2), epochs=2, batch_size=4, gibbs_schedule="synchronous", seed=2, progress=False
    ).fit(adata)
    model.save(tmp_path / "dbm")
    loaded = DeepBoltzmannMachine.load(tmp_path / "dbm")
    assert loaded.feature_names_ == model.feature_names_
    assert loaded.hidden_sizes == (4, 2) and loaded.gibbs_schedule == "synchronous"
    for a, b in zip(loaded._fitted(), model._fitted(), strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(loaded.generate(10, seed=1)[0], model.generate(10, seed=1)[0])
    # AnnData with reordered genes is matched by name.
    np.testing.assert_allclose(loaded.transform(adata[:, ::-1]), model.transform(x))
    with pytest.raises(InvalidInputError, match="DeepBoltzmannMachine"):
        BernoulliRBM.load(tmp_path / "dbm")


def test_generate_returns_binary_features_and_latent_units():
    model = model_from(random_params([7, 5, 3], seed=8))
    features, latent = model.generate(40, seed=0)
    assert features.shape == (40, 7) and latent.shape == (40, 3)
    assert features.dtype == np.uint8 and set(np.unique(latent)) <= {0, 1}


def test_errors_are_typed():
    x = planted(20, 5)
    model = DeepBoltzmannMachine((3, 2), epochs=1, batch_size=2, progress=False)
    with pytest.raises(InvalidInputError, match="binary"):
        model.fit(x * 0.5)
    with_nan = x.copy()
    with_nan[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match="row 3, column 2"):
        model.fit(with_nan)
    with pytest.raises(InvalidInputError, match="not fitted"):
        model.transform(x)
    with pytest.raises(InvalidInputError, match="batch_size"):
        DeepBoltzmannMachine((3,), batch_size=50, progress=False).fit(x)
    with pytest.raises(InvalidInputError, match="hidden_sizes"):
        DeepBoltzmannMachine((3, 0), progress=False).fit(x)
    model.fit(x)
    with pytest.raises(ShapeMismatchError, match="features"):
        model.transform(np.ones((3, 4)))
    with pytest.raises(ShapeMismatchError):
        model.sample(5, clamped=(np.ones(3, dtype=bool), np.ones(3)))
    with pytest.raises(InvalidInputError, match="0 or 1"):
        model.sample(5, clamped={0: 2})
    with pytest.raises(InvalidInputError, match="method"):
        model.log_likelihood(x, method="bogus")
    big = model_from(random_params([40, 40], scale=0.1))
    with pytest.raises(InvalidInputError, match="AIS"):
        big.log_partition(method="exact")
    with pytest.raises(ShapeMismatchError):
        _core.mean_field([(np.zeros((3, 2)), np.zeros(3), np.zeros(4))], np.zeros((1, 3)))
    with pytest.raises(InvalidInputError):
        _core.log_partition_ais(random_params([3, 2]), temperatures=[0.0, 0.5])


def test_rbm_training_in_halves_does_not_depend_on_the_threads(tmp_path):
    # large enough to train in two halves of the hidden units: here on two threads (when the
    # machine has them), in a child process on one (RAYON_NUM_THREADS=1)
    rng = np.random.default_rng(11)
    x = (rng.random((300, 160)) < 0.4).astype(np.float64)
    np.save(tmp_path / "x.npy", x)

    def train(data):
        return _core.persistent_contrastive_divergence(
            data, 100, learning_rates=[0.05, 0.05], batch_size=10, seed=12
        )

    here = train(x)
    script = (
        "import sys, numpy as np\n"
        "from omicsembed import _core\n"
        "x = np.load(sys.argv[1])\n"
        "w, a, b = _core.persistent_contrastive_divergence(\n"
        "    x, 100, learning_rates=[0.05, 0.05], batch_size=10, seed=12)\n"
        "np.savez(sys.argv[2], w=w, a=a, b=b)\n"
    )
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    out = tmp_path / "one_thread.npz"
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.npy"), str(out)],
        env=env,
        check=True,
        timeout=120,
    )
    with np.load(out) as one_thread:
        for name, value in zip("wab", here, strict=True):
            np.testing.assert_array_equal(one_thread[name], value)


def test_requests_beyond_memory_and_bad_ais_settings_are_typed_errors() -> None:
    # far beyond memory: an error before any allocation (the Rust allocator would abort the
    # process, or the system would swap for hours)
    from omicsembed.models import DeepBoltzmannMachine

    x = (np.random.default_rng(0).random((50, 6)) < 0.5).astype(np.uint8)
    model = DeepBoltzmannMachine((4, 2), epochs=1, progress=False).fit(x)
    huge = 10**12
    calls = [
        lambda: model.sample(huge),
        lambda: model.generate(huge),
        lambda: model.log_partition(n_particles=huge),
        lambda: model.log_likelihood(x, n_particles=huge, log_z=1.0),
        lambda: DeepBoltzmannMachine((4,), n_particles=huge, progress=False).fit(x),
        lambda: DeepBoltzmannMachine((huge,), progress=False).fit(x),
        # learning-rate schedules of one float per epoch: refused as the model is built
        lambda: DeepBoltzmannMachine((4,), epochs=10**11, progress=False),
        lambda: DeepBoltzmannMachine((4,), epochs=2, pretraining_epochs=10**11),
        lambda: BernoulliRBM(3, epochs=10**11, progress=False).fit(x),
    ]
    for call in calls:
        with pytest.raises(InvalidInputError, match="GiB, more than the"):
            call()
    # a given log_z skips log_partition and its checks: they are made anyway
    for options in ({"log_z": float("nan")}, {"log_z": np.inf}, {"log_z": 1.0, "n_particles": -1}):
        with pytest.raises(InvalidInputError, match=r"log_z|n_particles"):
            model.log_likelihood(x, **options)
    # a 0-d array is a number; a numpy integer count does not wrap around in the size check
    bound = model.log_likelihood(x, log_z=1.0, method="lower_bound")
    assert model.log_likelihood(x, log_z=np.array(1.0), method="lower_bound") == bound
    with pytest.raises(InvalidInputError, match="GiB"):
        model.sample(np.int64(2**62))


@pytest.mark.parametrize("kind", ["dbm", "vae"])
def test_damaged_model_folders_are_a_typed_error(tmp_path, kind) -> None:
    import json

    from omicsembed.models import BernoulliVAE, DeepBoltzmannMachine

    x = (np.random.default_rng(0).random((60, 6)) < 0.5).astype(np.uint8)
    cls = DeepBoltzmannMachine if kind == "dbm" else BernoulliVAE
    model = (
        DeepBoltzmannMachine((4, 2), epochs=1, progress=False)
        if kind == "dbm"
        else BernoulliVAE(max_epochs=1, progress=False)
    ).fit(x)
    with pytest.raises(InvalidInputError, match="is a file"):
        (tmp_path / "afile").write_text("x")
        model.save(tmp_path / "afile")
    folder = model.save(tmp_path / "saved")
    settings, weights = folder / "model.json", folder / "model.safetensors"
    meta = json.loads(settings.read_text())

    def damaged(edit) -> None:
        copy = json.loads(json.dumps(meta))
        settings.write_text(edit(copy) if callable(edit) else edit)
        with pytest.raises(InvalidInputError, match=r"damaged|layers|settings"):
            cls.load(folder)

    damaged("{")  # truncated
    damaged("[1, 2]")  # not an object
    damaged(lambda m: json.dumps({k: v for k, v in m.items() if k != "settings"}))
    damaged(lambda m: json.dumps({**m, "settings": {**m["settings"], "unknown": 1}}))
    if kind == "dbm":
        # a layer dropped from the JSON would load a smaller, wrong model
        damaged(lambda m: json.dumps({**m, "n_layers": 1}))
    settings.write_text(json.dumps(meta))
    cls.load(folder)  # intact again
    if kind == "vae":
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(weights)
        name = next(iter(tensors))
        tensors[name] = torch.full_like(tensors[name], float("nan"))
        save_file(tensors, weights)
        with pytest.raises(InvalidInputError, match="NaN or infinite"):
            cls.load(folder)
    weights.write_bytes(weights.read_bytes()[:40])  # truncated weights
    with pytest.raises(InvalidInputError, match="damaged"):
        cls.load(folder)


def test_arguments_of_the_wrong_kind_are_typed_errors() -> None:
    # int() would have truncated 2.5 and 0.7; None and strings failed deep inside
    from omicsembed.models import DeepBoltzmannMachine

    x = (np.random.default_rng(0).random((50, 6)) < 0.5).astype(np.uint8)
    model = DeepBoltzmannMachine((4, 2), epochs=1, progress=False).fit(x)
    calls = [
        (lambda: DeepBoltzmannMachine(("a",)), r"hidden_sizes\[0\] must be"),
        (lambda: DeepBoltzmannMachine(None), "hidden_sizes must be"),
        (lambda: DeepBoltzmannMachine(3), "hidden_sizes must be"),
        (lambda: DeepBoltzmannMachine((2.5,)), r"hidden_sizes\[0\] must be"),
        (lambda: DeepBoltzmannMachine((4,), learning_rate=None), "learning_rate must be"),
        (lambda: model.sample(3, clamped={None: 1}), "clamped features are"),
        (lambda: model.sample(3, clamped={0.7: 1}), "clamped features are"),
        (lambda: model.log_partition(temperatures=["a"]), "temperatures must be numbers"),
    ]
    for call, message in calls:
        with pytest.raises(InvalidInputError, match=message):
            call()
    assert DeepBoltzmannMachine((np.int64(3),)).hidden_sizes == (3,)
