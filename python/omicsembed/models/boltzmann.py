"""Bernoulli restricted and deep Boltzmann machines (Rust core), scikit-learn style.

The algorithms follow BoltzmannMachines.jl (Lenz S, Hess M, Binder H. "Deep generative models in
DataSHIELD", BMC Med Res Methodol 21:64, 2021; package by S. Lenz) and Salakhutdinov R, Hinton G.
"An efficient learning procedure for deep Boltzmann machines", Neural Computation 24:1967-2006
(2012), as used for omics data in Hess M, Hackenberg M, Binder H. "Exploring generative deep
learning for omics data using log-linear models", Bioinformatics 36:5045-5053 (2020), §2.3:

* RBM training by (persistent) contrastive divergence, weights initialised N(0, 1)/sqrt(n_visible),
  visible biases at the logit of the feature means (``fitrbm``, ``initrbm``); a feature that
  is always 0 gets bias 0 (as ``initvisiblebias``), and one that is always 1 also 0, to stay
  finite (BoltzmannMachines.jl: +Inf).
* DBM pretraining by stacking RBMs with the doubled-input factors of Salakhutdinov & Hinton
  (2012) §4.1 (``stackrbms(...; predbm = true)``), then fine-tuning with a mean-field positive
  phase (tolerance 1e-3) and persistent Gibbs particles (100 particles, 5 sweeps per update),
  learning rates ``lr · 11 / (10 + epoch)`` (``fitdbm``, ``traindbm!``).
* Log-likelihood by annealed importance sampling with alternate layers summed out
  (Salakhutdinov & Hinton 2012, algorithm 4), the mean-field lower bound (Salakhutdinov 2015,
  eq. 38), and exact enumeration for tiny models.

Gibbs sweeps are blocked by default (odd layers given even ones, then even given odd), an exact
Gibbs sampler. BoltzmannMachines.jl's DBM sampler (``gibbssample!``) updates all layers at once
from the previous state: two interleaved chains, so that adjacent layers of a particle are
independent and the negative phase of fine-tuning lacks their correlation. Sampling always uses
blocked sweeps; fine-tuning offers the authors' schedule as ``gibbs_schedule="synchronous"``
(exactly BoltzmannMachines.jl). On planted data it overgrows the weights (about twice the norm)
and ends with a lower exact likelihood than blocked fine-tuning (``tests/test_boltzmann.py``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from numpy.typing import ArrayLike
from safetensors.numpy import load_file, save_file
from scipy import sparse

from omicsembed import _core
from omicsembed._clamping import Clamped, clamp_arrays
from omicsembed._memory import check_memory
from omicsembed._seeds import RUST_SEEDS, Seed, seed_int
from omicsembed._settings import settings
from omicsembed.exceptions import InvalidInputError, ShapeMismatchError
from omicsembed.models._data import binary_matrix, feature_names, match_features
from omicsembed.models._folder import damaged_model_errors, read_model_folder, write_model_folder

__all__ = ["BernoulliRBM", "BoltzmannMonitor", "DeepBoltzmannMachine"]

Params = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
Monitor = Callable[[Any, int], None]


def _binary_matrix(data: AnnData | np.ndarray, layer: str | None, what: str) -> np.ndarray:
    """Return the (n, p) float64 0/1 dense matrix of ``data``; NaN or non-binary values raise."""
    matrix: Any = binary_matrix(data, layer=layer, what=what, model="Boltzmann machines")
    dense = matrix.toarray() if sparse.issparse(matrix) else matrix
    return np.ascontiguousarray(dense, dtype=np.float64)


def _schedule(temperatures: ArrayLike | None) -> list[float] | None:
    """Return an AIS temperature schedule as floats (checked in Rust: 0 … 1, non-decreasing)."""
    if temperatures is None:
        return None
    try:
        schedule = np.asarray(temperatures, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"temperatures must be numbers, got {temperatures!r}") from error
    if schedule.ndim != 1:
        raise InvalidInputError(f"temperatures must be 1-D, got shape {schedule.shape}")
    return [float(t) for t in schedule]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInputError(f"{name} must be a positive int, got {value!r}")


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative int, got {value!r}")


def _check_memory(values: int, what: str) -> None:
    """Refuse ``values`` float64 numbers beyond this machine's memory (see :mod:`_memory`)."""
    check_memory(8 * int(values), what)


def _check_schedule(epochs: int) -> None:
    """Refuse a learning-rate schedule (one Python float, then one f64, per epoch) beyond memory."""
    check_memory(40 * int(epochs), f"learning-rate schedules of {int(epochs):,} epochs")


def _check_rate(name: str, value: float) -> None:
    real = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not real or not np.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive finite number, got {value!r}")


@contextlib.contextmanager
def _progress(enabled: bool, description: str, total: int) -> Iterator[Callable[[], None]]:
    """Show a rich progress bar advanced by the yielded function (a no-op when disabled)."""
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=False
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


class _BoltzmannMachine:
    """Shared state and methods of fitted RBMs and DBMs (a stack of RBMs)."""

    weights_: list[np.ndarray]
    visible_biases_: list[np.ndarray]
    hidden_biases_: list[np.ndarray]
    feature_names_: list[str]
    history_: list[dict[str, Any]]

    def __init__(self, *, seed: Seed, progress: bool | None) -> None:
        self.seed = seed
        self.progress = progress
        self.history_ = []

    # ------------------------------------------------------------------ state
    def _settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def _fitted(self) -> Params:
        if not getattr(self, "weights_", None):
            raise InvalidInputError(f"this {type(self).__name__} is not fitted; call fit() first")
        return list(zip(self.weights_, self.visible_biases_, self.hidden_biases_, strict=True))

    def _set_params(self, params: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        self.weights_ = [np.asarray(w, dtype=np.float64) for w, _, _ in params]
        self.visible_biases_ = [np.asarray(a, dtype=np.float64) for _, a, _ in params]
        self.hidden_biases_ = [np.asarray(b, dtype=np.float64) for _, _, b in params]

    @property
    def n_features_in_(self) -> int:
        """Number of visible units (features)."""
        return int(self._fitted()[0][0].shape[0])

    @property
    def layer_sizes_(self) -> list[int]:
        """Units per layer, visible layer first."""
        params = self._fitted()
        return [int(params[0][0].shape[0])] + [int(w.shape[1]) for w, _, _ in params]

    def _show_progress(self) -> bool:
        return settings.progress_bar if self.progress is None else bool(self.progress)

    def _data(self, data: AnnData | np.ndarray, layer: str | None, what: str = "X") -> np.ndarray:
        self._fitted()
        if isinstance(data, AnnData):
            data = match_features(data, self.feature_names_)
        matrix = _binary_matrix(data, layer, what)
        if matrix.shape[1] != self.n_features_in_:
            raise ShapeMismatchError(
                f"{what} has {matrix.shape[1]} features (columns) but the model has "
                f"{self.n_features_in_} visible units"
            )
        return matrix

    # ------------------------------------------------------------------ inference
    def mean_field(
        self,
        data: AnnData | np.ndarray,
        *,
        layer: str | None = None,
        eps: float = 1e-3,
        max_iter: int = 1000,
    ) -> list[np.ndarray]:
        """Mean-field activations of every hidden layer (BoltzmannMachines.jl ``meanfield``).

        Initialised by one bottom-up pass with doubled input for all but the top layer
        (Salakhutdinov & Hinton 2012, p. 1985), then layer-wise fixed-point updates until the
        largest change is at most ``eps``. For an RBM this is the exact ``P(h = 1 | v)``.

        Parameters
        ----------
        data
            (n, p) binary samples (AnnData: ``.X`` or ``.layers[layer]``, features matched by
            name).
        layer
            AnnData layer to read instead of ``.X``.
        eps
            Convergence tolerance (largest absolute change of an activation).
        max_iter
            Cap on the fixed-point iterations.

        Returns
        -------
        list of numpy.ndarray
            One float64 (n, n_l) array per hidden layer, values in (0, 1).

        Raises
        ------
        InvalidInputError
            Unfitted model, non-binary or missing values.
        ShapeMismatchError
            Wrong number of features.

        """
        _check_rate("eps", eps)
        _check_positive(max_iter=max_iter)
        x = self._data(data, layer)
        return list(_core.mean_field(self._fitted(), x, eps=eps, max_iter=max_iter))

    def transform(self, data: AnnData | np.ndarray, *, layer: str | None = None) -> np.ndarray:
        """Mean-field activations of the top hidden layer: float64 (n, n_top) in (0, 1)."""
        return self.mean_field(data, layer=layer)[-1]

    def sample(
        self,
        n_samples: int,
        *,
        burn_in: int = 50,
        seed: Seed = None,
        clamped: Clamped | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Draw samples of all layers by blocked Gibbs sampling.

        Chains start from Bernoulli(1/2) states (``initparticles``) and run ``burn_in`` sweeps;
        a sweep samples the odd layers (h1, h3, …) given the even ones, then the even layers
        (v, h2, …) given the new odd ones. Each sample is the last state of its own chain.

        Parameters
        ----------
        n_samples
            Number of independent chains / samples (≥ 1).
        burn_in
            Gibbs sweeps per chain (BoltzmannMachines.jl ``samples`` uses 50).
        seed
            Seed (int in [0, 2**64) or numpy Generator); None uses the model's ``seed`` (or,
            if that is None, ``omicsembed.settings.seed``), so repeated calls repeat the draw.
            Results do not depend on the number of threads.
        clamped
            Visible units held fixed (conditional sampling, ``gibbssamplecond!``): a dict
            ``{feature index or name: 0/1}``, or ``(mask, values)`` with a boolean mask of length
            p and 0/1 values of shape (p,) or (n_samples, p) (only masked entries are used).

        Returns
        -------
        visible, hidden
            uint8 (n_samples, p) visible states and a list of uint8 (n_samples, n_l) states of
            the hidden layers.

        Raises
        ------
        InvalidInputError
            Unfitted model, bad counts, unknown feature names, non-binary clamp values.
        ShapeMismatchError
            Clamp mask or values of the wrong shape.

        """
        _check_positive(n_samples=n_samples)
        _check_non_negative(burn_in=burn_in)
        params = self._fitted()
        stream_seed = seed_int(seed if seed is not None else self.seed, below=RUST_SEEDS)
        sizes = self.layer_sizes_
        _check_memory(int(n_samples) * sum(sizes), f"{n_samples} samples of {sum(sizes)} units")
        init: list[np.ndarray] | None = None
        mask_array: np.ndarray | None = None
        if clamped is not None:
            mask, values = clamp_arrays(
                clamped, n_samples, self.n_features_in_, self.feature_names_
            )
            rng = np.random.default_rng(stream_seed)
            init = [rng.integers(0, 2, size=(n_samples, n), dtype=np.uint8) for n in sizes]
            init[0] = np.where(mask[None, :], values, init[0]).astype(np.uint8)
            mask_array = mask.astype(np.uint8)
        layers = _core.gibbs_sample(
            params,
            n_samples,
            n_sweeps=burn_in,
            seed=stream_seed,
            init=init,
            clamp_mask=mask_array,
        )
        return layers[0], list(layers[1:])

    def generate(
        self, n_samples: int, *, seed: Seed = None, burn_in: int = 50
    ) -> tuple[np.ndarray, np.ndarray]:
        """Synthetic binary features and the binary top-layer units that produced them.

        For the log-linear explanation of Hess et al. (2020, §2.5): one Gibbs chain per sample
        (see :meth:`sample`); the latent units are the sampled states of the last hidden layer.

        Parameters
        ----------
        n_samples
            Number of synthetic samples (≥ 1).
        seed
            Seed (see :meth:`sample`).
        burn_in
            Gibbs sweeps per chain.

        Returns
        -------
        features, latent
            uint8 (n_samples, p) and uint8 (n_samples, n_top) 0/1 arrays.

        """
        visible, hidden = self.sample(n_samples, burn_in=burn_in, seed=seed)
        return visible, hidden[-1]

    # ------------------------------------------------------------------ likelihood
    def _check_ais(self, n_particles: int, n_temperatures: int, burn_in: int) -> None:
        """Check AIS settings: counts ≥ 1 (``burn_in`` ≥ 0), particles that fit in memory."""
        _check_positive(n_particles=n_particles, n_temperatures=n_temperatures)
        _check_non_negative(burn_in=burn_in)
        units = sum(self.layer_sizes_)
        _check_memory(int(n_particles) * units, f"{n_particles} AIS particles of {units} units")

    def log_partition(
        self,
        *,
        method: Literal["ais", "exact"] = "ais",
        n_particles: int = 100,
        n_temperatures: int = 100,
        temperatures: ArrayLike | None = None,
        burn_in: int = 5,
        seed: Seed = None,
    ) -> float:
        """Return log Z by AIS (``logpartitionfunction``) or by exact enumeration (tiny models).

        AIS anneals from the model with zero weights (same biases) at temperatures
        0, 1/n_temperatures, …, 1 (or the given ``temperatures``) with ``n_particles`` chains
        and ``burn_in`` Gibbs sweeps per temperature, summing out the visible layer (RBM) or the
        odd layers (DBM) analytically. Exact enumeration runs over the smaller of the two
        alternate layer sets (≤ 28 units).

        Two details differ from BoltzmannMachines.jl's ``aislogimpweights``, both so that every
        transition leaves its intermediate distribution invariant: the sweeps at each
        temperature are blocked (summed-out layers first; the Julia package updates all layers
        at once, see the module notes), and the chains start as exact samples of the base
        model, whose biases for a layer between two weight matrices are the sum of both RBMs'
        (Julia starts them from ``initparticles(...; biased = true)``, one RBM's bias, which its
        source marks as a to-do). The estimates agree with exact log Z within AIS noise.

        Parameters
        ----------
        method
            ``"ais"`` or ``"exact"``.
        n_particles, n_temperatures, burn_in
            AIS settings (defaults of BoltzmannMachines.jl).
        temperatures
            AIS schedule (float64, non-decreasing from 0 to 1, at least two values); replaces
            the evenly spaced ``n_temperatures`` (e.g. denser near 1, where the model changes
            most).
        seed
            Seed of the AIS chains (int in [0, 2**64) or numpy Generator).

        Returns
        -------
        float
            log Z (nats).

        Raises
        ------
        InvalidInputError
            Unknown method, bad counts or schedule, or a model too large for exact
            enumeration.

        """
        params = self._fitted()
        if method == "exact":
            return float(_core.log_partition_exact(params))
        if method != "ais":
            raise InvalidInputError(f"method must be 'ais' or 'exact', got {method!r}")
        self._check_ais(n_particles, n_temperatures, burn_in)
        log_z, _, _ = _core.log_partition_ais(
            params,
            temperatures=_schedule(temperatures),
            n_temperatures=n_temperatures,
            n_particles=n_particles,
            burn_in=burn_in,
            seed=seed_int(seed if seed is not None else self.seed, below=RUST_SEEDS),
        )
        return float(log_z)

    def log_likelihood(
        self,
        data: AnnData | np.ndarray,
        *,
        method: Literal["ais", "exact", "lower_bound"] = "ais",
        layer: str | None = None,
        n_particles: int = 100,
        n_temperatures: int = 100,
        temperatures: ArrayLike | None = None,
        burn_in: int = 5,
        log_z: float | None = None,
        seed: Seed = None,
        per_sample: bool = False,
    ) -> float | np.ndarray:
        """Mean log-likelihood (nats) of binary samples.

        ``"ais"``: log Z by AIS and, for DBMs, every sample's unnormalised log probability by its
        own AIS run in the model of the hidden layers (``loglikelihood(dbm, x)``; exact free
        energy for RBMs). ``"exact"``: enumeration (tiny models). ``"lower_bound"``: the
        mean-field variational lower bound (``logproblowerbound``) with log Z by AIS.

        Parameters
        ----------
        data
            (n, p) binary samples.
        method
            ``"ais"``, ``"exact"`` or ``"lower_bound"``.
        layer
            AnnData layer to read instead of ``.X``.
        n_particles, n_temperatures, burn_in
            AIS settings (defaults of BoltzmannMachines.jl).
        temperatures
            AIS schedule for both estimates (see :meth:`log_partition`).
        log_z
            A known log partition function (skips its estimation).
        seed
            Seed of the AIS runs (int in [0, 2**64) or numpy Generator).
        per_sample
            Return the (n,) float64 values instead of their mean.

        Returns
        -------
        float or numpy.ndarray
            The mean (or per-sample values) of log p(v).

        Raises
        ------
        InvalidInputError
            Unknown method, non-binary data, a model too large for exact enumeration, AIS
            settings below 1 (``burn_in`` below 0) or a ``log_z`` that is not finite.
        ShapeMismatchError
            Wrong number of features.

        """
        x = self._data(data, layer)
        params = self._fitted()
        stream_seed = seed_int(seed if seed is not None else self.seed, below=RUST_SEEDS)
        # checked here too: a given log_z skips log_partition, which checks them otherwise
        self._check_ais(n_particles, n_temperatures, burn_in)
        if log_z is not None:
            value = np.asarray(log_z)
            if value.ndim != 0 or value.dtype.kind not in "iuf" or not np.isfinite(value):
                raise InvalidInputError(f"log_z must be a finite number, got {log_z!r}")
            log_z = float(value)
        if method == "exact":
            values = _core.log_likelihood_exact(params, x, log_z=log_z)
        elif method in ("ais", "lower_bound"):
            if log_z is None:
                log_z = self.log_partition(
                    n_particles=n_particles,
                    n_temperatures=n_temperatures,
                    temperatures=temperatures,
                    burn_in=burn_in,
                    seed=stream_seed,
                )
            if method == "ais":
                values = _core.log_likelihood_ais(
                    params,
                    x,
                    log_z=log_z,
                    temperatures=_schedule(temperatures),
                    n_temperatures=n_temperatures,
                    n_particles=n_particles,
                    burn_in=burn_in,
                    seed=stream_seed,
                )
            else:
                values = _core.log_prob_lower_bound(params, x, log_z=log_z)
        else:
            raise InvalidInputError(
                f"method must be 'ais', 'exact' or 'lower_bound', got {method!r}"
            )
        return values if per_sample else float(np.mean(values))

    def reconstruction_error(
        self, data: AnnData | np.ndarray, *, layer: str | None = None
    ) -> float:
        """Mean over samples of Σ_j |v_j − p_j| (``reconstructionerror``).

        p is the visible probability given the hidden layer: ``σ(W σ(Wᵀv + b) + a)`` for an RBM,
        ``σ(W₁ μ₁ + a)`` with the mean-field posterior μ₁ for a DBM.
        """
        x = self._data(data, layer)
        return float(np.mean(_core.reconstruction_error(self._fitted(), x)))

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to ``folder`` (safetensors weights + JSON settings).

        Files are written atomically (temporary file, then rename), the JSON last.

        Returns
        -------
        Path
            The folder.

        """
        params = self._fitted()
        tensors: dict[str, np.ndarray] = {}
        for i, (w, a, b) in enumerate(params):
            tensors[f"weights.{i}"] = np.ascontiguousarray(w)
            tensors[f"visible_bias.{i}"] = np.ascontiguousarray(a)
            tensors[f"hidden_bias.{i}"] = np.ascontiguousarray(b)
        meta = {
            "settings": self._settings(),
            "n_layers": len(params),
            "feature_names": self.feature_names_,
            "history": self.history_,
        }
        return write_model_folder(
            folder, type(self).__name__, meta, lambda target: save_file(tensors, str(target))
        )

    @classmethod
    def load(cls, folder: str | Path, *, progress: bool | None = None) -> Any:
        """Restore a model written by :meth:`save`.

        Raises
        ------
        InvalidInputError
            If the folder does not hold a saved model of this class, or a damaged one.

        """
        weights, meta = read_model_folder(folder, cls.__name__)
        with damaged_model_errors(folder):
            model = cls(**meta["settings"], progress=progress)
            tensors = load_file(str(weights))
            n_layers = int(meta["n_layers"])
            stored = sum(name.startswith("weights.") for name in tensors)
            if n_layers < 1 or n_layers != stored:
                raise InvalidInputError(
                    f"{folder}: model.json names {n_layers} layers, the weights hold {stored}"
                )
            model._set_params(
                [
                    (
                        tensors[f"weights.{i}"],
                        tensors[f"visible_bias.{i}"],
                        tensors[f"hidden_bias.{i}"],
                    )
                    for i in range(n_layers)
                ]
            )
            model.feature_names_ = [str(name) for name in meta["feature_names"]]
            model.history_ = list(meta.get("history") or [])
        return model


class BoltzmannMonitor:
    """Per-epoch monitoring of a Boltzmann machine (BoltzmannMachines.jl ``monitor*`` functions).

    Pass an instance as ``fit(..., monitor=...)``. Every call records, for every named data set,
    the mean reconstruction error, the mean-field lower bound of the log-likelihood (log Z by
    AIS) and, if requested, the AIS log-likelihood (one AIS run per sample: slow on large sets).

    Parameters
    ----------
    datasets
        Named binary data sets, e.g. ``{"train": X_train, "test": X_test}``.
    metrics
        Any of ``"reconstruction_error"``, ``"lower_bound"``, ``"log_likelihood"``.
    n_particles, n_temperatures
        AIS settings.
    seed
        Seed of the AIS runs (the same every epoch, so curves are comparable).

    Attributes
    ----------
    records
        One dict per value: ``epoch``, ``metric``, ``dataset``, ``value`` (and ``log_z``).

    """

    METRICS = ("reconstruction_error", "lower_bound", "log_likelihood")

    def __init__(
        self,
        datasets: Mapping[str, AnnData | np.ndarray],
        *,
        metrics: Sequence[str] = ("reconstruction_error", "lower_bound"),
        n_particles: int = 100,
        n_temperatures: int = 100,
        seed: int = 0,
    ) -> None:
        unknown = [m for m in metrics if m not in self.METRICS]
        if unknown:
            raise InvalidInputError(f"unknown metrics {unknown}; choose from {self.METRICS}")
        if not datasets:
            raise InvalidInputError("give at least one named data set to monitor")
        self.datasets = dict(datasets)
        self.metrics = tuple(metrics)
        self.n_particles = n_particles
        self.n_temperatures = n_temperatures
        self.seed = seed
        self.records: list[dict[str, Any]] = []

    def __call__(self, model: _BoltzmannMachine, epoch: int) -> None:
        """Evaluate ``model`` after ``epoch`` and append the values to :attr:`records`."""
        log_z = None
        if any(m in self.metrics for m in ("lower_bound", "log_likelihood")):
            log_z = model.log_partition(
                n_particles=self.n_particles, n_temperatures=self.n_temperatures, seed=self.seed
            )
        for name, data in self.datasets.items():
            for metric in self.metrics:
                if metric == "reconstruction_error":
                    value = model.reconstruction_error(data)
                else:
                    value = float(
                        model.log_likelihood(
                            data,
                            method="ais" if metric == "log_likelihood" else "lower_bound",
                            log_z=log_z,
                            n_particles=self.n_particles,
                            n_temperatures=self.n_temperatures,
                            seed=self.seed,
                        )
                    )
                self.records.append(
                    {
                        "epoch": epoch,
                        "metric": metric,
                        "dataset": name,
                        "value": value,
                        "log_z": log_z,
                    }
                )

    def to_frame(self) -> pd.DataFrame:
        """Return the records as a tidy DataFrame (epoch, metric, dataset, value, log_z)."""
        return pd.DataFrame(self.records, columns=["epoch", "metric", "dataset", "value", "log_z"])


def _check_monitor(monitor: Monitor | None, monitor_every: int) -> None:
    if monitor is not None and not callable(monitor):
        raise InvalidInputError("monitor must be a callable monitor(model, epoch) or None")
    _check_positive(monitor_every=monitor_every)


class BernoulliRBM(_BoltzmannMachine):
    """Bernoulli restricted Boltzmann machine trained by (persistent) contrastive divergence.

    BoltzmannMachines.jl ``fitrbm`` (defaults: learning rate 0.005, batch size 1, PCD, one Gibbs
    step): per minibatch, the positive phase uses P(h | v) of the data; the persistent chains take
    ``cd_steps`` Gibbs steps, the last without sampling; the gradient is the difference of the
    minibatch means of v hᵀ (as the package's ``LoglikelihoodOptimizer``; its releases before
    the optimizer interface summed v hᵀ over the minibatch, a step ``batch_size`` times larger for
    the weights; the two agree at the default batch size 1). ``n_hidden`` defaults to 100;
    ``fitrbm`` uses as many hidden units as features.

    Parameters
    ----------
    n_hidden
        Hidden units.
    epochs
        Passes over the data.
    learning_rate
        Step size of every epoch.
    batch_size
        Samples per update (at most the number of samples). With 4 or more, 64 hidden units or
        more and batch_size · n_features · n_hidden ≥ 150,000, each epoch runs on two cores
        (the hidden units in two halves); the result does not depend on the number of threads.
    cd_steps
        Gibbs steps per update.
    pcd
        Persistent chains (True) or chains started at the data (CD, False).
    seed
        Seed (int in [0, 2**64) or numpy Generator; None: ``omicsembed.settings.seed``).
    progress
        Show a progress bar (None: ``omicsembed.settings.progress_bar``).

    """

    def __init__(
        self,
        n_hidden: int = 100,
        *,
        epochs: int = 10,
        learning_rate: float = 0.005,
        batch_size: int = 1,
        cd_steps: int = 1,
        pcd: bool = True,
        seed: Seed = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(seed=seed, progress=progress)
        self.n_hidden = n_hidden
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.cd_steps = cd_steps
        self.pcd = pcd

    def _settings(self) -> dict[str, Any]:
        return {
            "n_hidden": self.n_hidden,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "cd_steps": self.cd_steps,
            "pcd": self.pcd,
            "seed": self.seed if not isinstance(self.seed, np.random.Generator) else None,
        }

    def fit(
        self,
        data: AnnData | np.ndarray,
        *,
        layer: str | None = None,
        monitor: Monitor | None = None,
        monitor_every: int = 1,
    ) -> BernoulliRBM:
        """Fit to binary samples (AnnData ``.X`` / ``.layers[layer]`` or an (n, p) array).

        Parameters
        ----------
        data
            (n, p) binary samples.
        layer
            AnnData layer to read instead of ``.X``.
        monitor
            Called as ``monitor(model, epoch)`` after every ``monitor_every``-th epoch (e.g. a
            :class:`BoltzmannMonitor`); the model holds the current parameters.
        monitor_every
            Epochs between monitor calls.

        Returns
        -------
        BernoulliRBM
            ``self``, fitted.

        Raises
        ------
        InvalidInputError
            Non-binary or missing values, bad settings, a batch larger than the data.
        ConvergenceError
            If training diverges (non-finite parameters).

        """
        _check_positive(n_hidden=self.n_hidden, batch_size=self.batch_size, cd_steps=self.cd_steps)
        _check_non_negative(epochs=self.epochs)
        _check_rate("learning_rate", self.learning_rate)
        _check_monitor(monitor, monitor_every)
        _check_schedule(self.epochs)
        x = _binary_matrix(data, layer, "X")
        _check_memory(
            int(self.n_hidden) * x.shape[1], f"the weights of {self.n_hidden} hidden units"
        )
        if self.batch_size > x.shape[0]:
            raise InvalidInputError(
                f"batch_size {self.batch_size} exceeds the number of samples ({x.shape[0]})"
            )
        self.feature_names_ = feature_names(data, x.shape[1])
        self.history_ = []
        with _progress(self._show_progress(), "RBM", self.epochs) as advance:

            def on_epoch(epoch: int, params: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
                advance()
                if monitor is not None and epoch % monitor_every == 0:
                    self._set_params([params])
                    monitor(self, epoch)

            params = _core.persistent_contrastive_divergence(
                x,
                self.n_hidden,
                learning_rates=[float(self.learning_rate)] * self.epochs,
                batch_size=self.batch_size,
                cd_steps=self.cd_steps,
                pcd=self.pcd,
                seed=seed_int(self.seed, below=RUST_SEEDS),
                callback=on_epoch,
            )
        self._set_params([params])
        if isinstance(monitor, BoltzmannMonitor):
            self.history_ = list(monitor.records)
        return self


class DeepBoltzmannMachine(_BoltzmannMachine):
    """Deep Boltzmann machine for binary data (BoltzmannMachines.jl ``fitdbm``).

    Greedy layer-wise pretraining of a stack of RBMs by PCD (bottom layer with doubled upward
    input, middle layers doubled both ways, top layer doubled downward; a single hidden layer is
    pretrained with doubled upward input too, as ``stackrbms`` does; later layers are trained
    on the hidden probabilities of the layer below), then fine-tuning of the whole machine:
    per update, ``n_gibbs_sweeps`` Gibbs sweeps of ``n_particles`` persistent particles
    (negative phase) and mean-field inference on the data (positive phase, tolerance 1e-3), with
    learning rates ``learning_rate · 11 / (10 + epoch)``.

    Parameters
    ----------
    hidden_sizes
        Units per hidden layer, bottom first. The default is the authors' Tasic cortex DBM
        (Hess et al. 2020); ``fitdbm``'s default is two layers as wide as the data.
    pretraining_epochs
        Epochs of every RBM in pretraining (None: ``epochs``).
    epochs
        Fine-tuning epochs.
    learning_rate
        Initial fine-tuning learning rate, decayed as ``lr · 11 / (10 + epoch)``.
    pretraining_learning_rate
        Constant pretraining learning rate (None: ``learning_rate``).
    batch_size
        Pretraining minibatch size (BoltzmannMachines.jl default 1).
    fine_tuning_batch_size
        Samples per fine-tuning update (None: the whole data set per epoch, the default of
        ``fitdbm``).
    n_particles
        Persistent Gibbs particles of fine-tuning.
    n_gibbs_sweeps
        Gibbs sweeps of the particles per update.
    gibbs_schedule
        Layer order within a sweep of the fine-tuning particles. ``"blocked"`` (default): odd
        layers given the even ones, then even given the new odd ones, a valid Gibbs sampler of
        the joint state. ``"synchronous"``: every layer given the previous state of its
        neighbours, exactly as BoltzmannMachines.jl's ``gibbssample!``; the particle's adjacent
        layers then come from two independent chains, so the negative phase of the weights is
        the product of the marginal means rather than the joint mean.
    seed
        Seed (int in [0, 2**64) or numpy Generator; None: ``omicsembed.settings.seed``).
    progress
        Show progress bars (None: ``omicsembed.settings.progress_bar``).

    Raises
    ------
    InvalidInputError
        Bad settings (empty or non-positive layer sizes, negative epochs, unknown
        ``gibbs_schedule``, non-finite or non-positive learning rates), here and in :meth:`fit`.

    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (100, 20, 10),
        *,
        pretraining_epochs: int | None = None,
        epochs: int = 10,
        learning_rate: float = 0.005,
        pretraining_learning_rate: float | None = None,
        batch_size: int = 1,
        fine_tuning_batch_size: int | None = None,
        n_particles: int = 100,
        n_gibbs_sweeps: int = 5,
        gibbs_schedule: Literal["blocked", "synchronous"] = "blocked",
        seed: Seed = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(seed=seed, progress=progress)
        if isinstance(hidden_sizes, str) or not isinstance(hidden_sizes, Sequence | np.ndarray):
            raise InvalidInputError(
                f"hidden_sizes must be a sequence of layer sizes, e.g. (100, 20), got "
                f"{hidden_sizes!r}"
            )
        # checked (not truncated: 2.5 is an error) by _check_settings
        self.hidden_sizes = tuple(int(n) if isinstance(n, np.integer) else n for n in hidden_sizes)
        self.pretraining_epochs = pretraining_epochs
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.pretraining_learning_rate = pretraining_learning_rate
        self.batch_size = batch_size
        self.fine_tuning_batch_size = fine_tuning_batch_size
        self.n_particles = n_particles
        self.n_gibbs_sweeps = n_gibbs_sweeps
        self.gibbs_schedule = gibbs_schedule
        self._check_settings()  # again in fit(), for settings changed afterwards

    def _settings(self) -> dict[str, Any]:
        return {
            "hidden_sizes": list(self.hidden_sizes),
            "pretraining_epochs": self.pretraining_epochs,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "pretraining_learning_rate": self.pretraining_learning_rate,
            "batch_size": self.batch_size,
            "fine_tuning_batch_size": self.fine_tuning_batch_size,
            "n_particles": self.n_particles,
            "n_gibbs_sweeps": self.n_gibbs_sweeps,
            "gibbs_schedule": self.gibbs_schedule,
            "seed": self.seed if not isinstance(self.seed, np.random.Generator) else None,
        }

    def synthetic_bytes(self, n_samples: int, n_features: int) -> int:
        """Bytes :meth:`generate` allocates for ``n_samples`` cells of ``n_features`` genes.

        The float64 states of every layer, as :meth:`sample` counts them; known before
        fitting, so that a job can refuse a size beyond memory before any training.
        """
        return 8 * int(n_samples) * (int(n_features) + sum(int(n) for n in self.hidden_sizes))

    def _check_settings(self) -> None:
        if not self.hidden_sizes:
            raise InvalidInputError("hidden_sizes must name at least one hidden layer")
        _check_positive(**{f"hidden_sizes[{i}]": n for i, n in enumerate(self.hidden_sizes)})
        _check_positive(
            batch_size=self.batch_size,
            n_particles=self.n_particles,
        )
        _check_non_negative(epochs=self.epochs, n_gibbs_sweeps=self.n_gibbs_sweeps)
        if self.gibbs_schedule not in ("blocked", "synchronous"):
            raise InvalidInputError(
                f"gibbs_schedule must be 'blocked' or 'synchronous', got {self.gibbs_schedule!r}"
            )
        if self.pretraining_epochs is not None:
            _check_non_negative(pretraining_epochs=self.pretraining_epochs)
        if self.fine_tuning_batch_size is not None:
            _check_positive(fine_tuning_batch_size=self.fine_tuning_batch_size)
        _check_rate("learning_rate", self.learning_rate)
        if self.pretraining_learning_rate is not None:
            _check_rate("pretraining_learning_rate", self.pretraining_learning_rate)
        pretraining = self.epochs if self.pretraining_epochs is None else self.pretraining_epochs
        _check_schedule(pretraining + self.epochs)

    def fit(
        self,
        data: AnnData | np.ndarray,
        *,
        layer: str | None = None,
        monitor: Monitor | None = None,
        monitor_every: int = 1,
    ) -> DeepBoltzmannMachine:
        """Pretrain and fine-tune on binary samples (AnnData or an (n, p) array).

        Parameters
        ----------
        data
            (n, p) binary samples (AnnData: ``.X`` or ``.layers[layer]``).
        layer
            AnnData layer to read instead of ``.X``.
        monitor
            Called as ``monitor(model, epoch)`` after every ``monitor_every``-th fine-tuning
            epoch (e.g. a :class:`BoltzmannMonitor`); the model holds the current parameters.
        monitor_every
            Fine-tuning epochs between monitor calls.

        Returns
        -------
        DeepBoltzmannMachine
            ``self``, fitted.

        Raises
        ------
        InvalidInputError
            Non-binary or missing values, bad settings, a pretraining batch larger than the
            data.
        ConvergenceError
            If training diverges (non-finite parameters).

        """
        self._check_settings()
        _check_monitor(monitor, monitor_every)
        x = _binary_matrix(data, layer, "X")
        units = [int(n) for n in (x.shape[1], *self.hidden_sizes)]
        weights = sum(a * b for a, b in itertools.pairwise(units))
        _check_memory(weights, f"the weights of {len(units) - 1} layers {units}")
        _check_memory(int(self.n_particles) * sum(units), f"{self.n_particles} Gibbs particles")
        pre_epochs = self.epochs if self.pretraining_epochs is None else self.pretraining_epochs
        if self.batch_size > x.shape[0]:
            raise InvalidInputError(
                f"batch_size {self.batch_size} exceeds the number of samples ({x.shape[0]})"
            )
        self.feature_names_ = feature_names(data, x.shape[1])
        self.history_ = []
        seed = seed_int(self.seed, below=RUST_SEEDS)
        pre_rate = (
            self.learning_rate
            if self.pretraining_learning_rate is None
            else self.pretraining_learning_rate
        )
        show = self._show_progress()
        with _progress(show, "DBM pretraining", pre_epochs * len(self.hidden_sizes)) as advance:
            params = _core.stack_rbms(
                x,
                list(self.hidden_sizes),
                learning_rates=[float(pre_rate)] * pre_epochs,
                batch_size=self.batch_size,
                seed=seed,
                callback=lambda layer, epoch: advance(),
            )
        self._set_params(params)
        rates = [self.learning_rate * 11.0 / (10.0 + e) for e in range(1, self.epochs + 1)]
        with _progress(show, "DBM fine-tuning", self.epochs) as advance:

            def on_epoch(epoch: int, current: Params) -> None:
                advance()
                if monitor is not None and epoch % monitor_every == 0:
                    self._set_params(current)
                    monitor(self, epoch)

            params = _core.dbm_fine_tune(
                params,
                x,
                learning_rates=rates,
                n_particles=self.n_particles,
                n_gibbs_sweeps=self.n_gibbs_sweeps,
                synchronous=self.gibbs_schedule == "synchronous",
                batch_size=self.fine_tuning_batch_size,
                seed=seed,
                callback=on_epoch,
            )
        self._set_params(params)
        if isinstance(monitor, BoltzmannMonitor):
            self.history_ = list(monitor.records)
        return self
