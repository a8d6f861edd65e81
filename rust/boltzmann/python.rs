//! Python bindings of the Boltzmann machine kernels: argument conversion, GIL release, progress
//! callbacks and error mapping. A model crosses as a list of `(W, a, b)` float64 arrays (one per
//! RBM of the stack, `W` of shape `(n_lower, n_upper)`); data as 2-D float64 arrays. Validation
//! messages for users live in `omicsembed.models.boltzmann`.

use std::sync::Mutex;

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::ais::{self, default_temperatures};
use super::dbm::{self, FineTuning};
use super::dense::{Mat, MatRef};
use super::gibbs::{self, Particles, Sampler, Schedule};
use super::rbm::{self, RbmTraining};
use super::rng::Purpose;
use super::{check_data, Dbm, Rbm};
use crate::error::{CoreError, CoreResult};
use crate::python::{to_py_err, without_gil};

type PyParams<'py> = (
    PyReadonlyArray2<'py, f64>,
    PyReadonlyArray1<'py, f64>,
    PyReadonlyArray1<'py, f64>,
);
type OutParams<'py> = (
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
);

fn to_mat(x: &PyReadonlyArray2<'_, f64>) -> Mat {
    let view = x.as_array();
    let (rows, cols) = view.dim();
    // a C-ordered array is one memcpy; anything else (Fortran order, strides) is read in
    // logical order element by element
    let data = match view.as_slice() {
        Some(slice) => slice.to_vec(),
        None => view.iter().copied().collect(),
    };
    Mat::from_vec(rows, cols, data)
}

fn to_rbm(p: &PyParams<'_>) -> CoreResult<Rbm> {
    let w = p.0.as_array();
    let (n_visible, n_hidden) = w.dim();
    Rbm::new(
        n_visible,
        n_hidden,
        w.iter().copied().collect(),
        p.1.as_array().iter().copied().collect(),
        p.2.as_array().iter().copied().collect(),
    )
}

fn to_dbm(params: &[PyParams<'_>]) -> PyResult<Dbm> {
    let layers = params
        .iter()
        .map(to_rbm)
        .collect::<CoreResult<Vec<_>>>()
        .map_err(to_py_err)?;
    Dbm::new(layers).map_err(to_py_err)
}

fn rbm_out<'py>(py: Python<'py>, rbm: &Rbm) -> PyResult<OutParams<'py>> {
    let w = Array2::from_shape_vec((rbm.n_visible, rbm.n_hidden), rbm.weights.clone())
        .map_err(|e| to_py_err(CoreError::shape(e.to_string())))?;
    Ok((
        w.into_pyarray(py),
        PyArray1::from_vec(py, rbm.visible_bias.clone()),
        PyArray1::from_vec(py, rbm.hidden_bias.clone()),
    ))
}

fn dbm_out<'py>(py: Python<'py>, dbm: &Dbm) -> PyResult<Vec<OutParams<'py>>> {
    dbm.layers.iter().map(|l| rbm_out(py, l)).collect()
}

fn mat_out<'py>(py: Python<'py>, m: Mat) -> PyResult<Bound<'py, PyArray2<f64>>> {
    Ok(Array2::from_shape_vec((m.rows, m.cols), m.data)
        .map_err(|e| to_py_err(CoreError::shape(e.to_string())))?
        .into_pyarray(py))
}

/// A Python callable run (with the GIL) between epochs; its exception is kept and re-raised.
struct Callback {
    function: Option<Py<PyAny>>,
    error: Mutex<Option<PyErr>>,
}

impl Callback {
    fn new(function: Option<Py<PyAny>>) -> Self {
        Self {
            function,
            error: Mutex::new(None),
        }
    }

    /// Check for Ctrl-C and call the function with the arguments built by `args`.
    fn call<F>(&self, args: F) -> CoreResult<()>
    where
        F: for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>>,
    {
        Python::attach(|py| {
            let result = py.check_signals().and_then(|()| match &self.function {
                Some(f) => f.call1(py, args(py)?).map(|_| ()),
                None => Ok(()),
            });
            result.map_err(|error| {
                if let Ok(mut slot) = self.error.lock() {
                    *slot = Some(error);
                }
                CoreError::invalid("interrupted by the callback")
            })
        })
    }

    /// The callback's exception if it raised one, else the kernel error.
    fn finish<T>(self, result: PyResult<T>) -> PyResult<T> {
        match result {
            Ok(v) => Ok(v),
            Err(e) => match self.error.into_inner() {
                Ok(Some(stored)) => Err(stored),
                _ => Err(e),
            },
        }
    }
}

fn check_learning_rates(learning_rates: &[f64]) -> PyResult<()> {
    if let Some(lr) = learning_rates.iter().find(|v| !v.is_finite()) {
        return Err(to_py_err(CoreError::invalid(format!(
            "learning rates must be finite, got {lr}"
        ))));
    }
    Ok(())
}

/// Train a Bernoulli RBM by (persistent) contrastive divergence (`fitrbm`); one epoch per
/// learning rate. `callback(epoch, (W, a, b))` runs after every epoch.
#[pyfunction]
#[pyo3(signature = (x, n_hidden, *, learning_rates, batch_size=1, cd_steps=1, pcd=true, up_factor=1.0, down_factor=1.0, seed=0, start=None, callback=None))]
#[allow(clippy::too_many_arguments)]
fn persistent_contrastive_divergence<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    n_hidden: usize,
    learning_rates: Vec<f64>,
    batch_size: usize,
    cd_steps: usize,
    pcd: bool,
    up_factor: f64,
    down_factor: f64,
    seed: u64,
    start: Option<PyParams<'py>>,
    callback: Option<Py<PyAny>>,
) -> PyResult<OutParams<'py>> {
    check_learning_rates(&learning_rates)?;
    // a C-ordered array is read in place (`as_slice` also accepts Fortran order, whose
    // memory order is not the row-major one); anything else is copied in logical order
    let (rows, cols) = x.as_array().dim();
    let in_place = x.is_c_contiguous().then(|| x.as_slice().ok()).flatten();
    let copy;
    let x = match in_place {
        Some(data) => MatRef::new(rows, cols, data),
        None => {
            copy = to_mat(&x);
            copy.view()
        }
    };
    let start = start.as_ref().map(to_rbm).transpose().map_err(to_py_err)?;
    let cfg = RbmTraining {
        epochs: learning_rates.len(),
        learning_rates,
        batch_size,
        cd_steps,
        pcd,
        up_factor,
        down_factor,
    };
    let callback = Callback::new(callback);
    let result = without_gil(py, || {
        check_data(x, x.cols, false, "x")?;
        let mut hook = |epoch: usize, rbm: &Rbm| {
            callback.call(|py| {
                let params = rbm_out(py, rbm)?;
                pyo3::types::PyTuple::new(
                    py,
                    [
                        epoch.into_pyobject(py)?.into_any(),
                        params.into_pyobject(py)?.into_any(),
                    ],
                )
            })
        };
        rbm::fit_rbm(x, n_hidden, &cfg, seed, 0, start, Some(&mut hook))
    });
    let rbm = callback.finish(result)?;
    rbm_out(py, &rbm)
}

/// Greedy layerwise DBM pretraining (`stackrbms(...; predbm = true)`); one epoch per learning
/// rate for every layer. `callback(layer, epoch)` runs after every epoch.
#[pyfunction]
#[pyo3(signature = (x, hidden_sizes, *, learning_rates, batch_size=1, seed=0, callback=None))]
fn stack_rbms<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, f64>,
    hidden_sizes: Vec<usize>,
    learning_rates: Vec<f64>,
    batch_size: usize,
    seed: u64,
    callback: Option<Py<PyAny>>,
) -> PyResult<Vec<OutParams<'py>>> {
    check_learning_rates(&learning_rates)?;
    let x = to_mat(&x);
    let template = RbmTraining {
        epochs: learning_rates.len(),
        learning_rates,
        batch_size,
        cd_steps: 1,
        pcd: true,
        up_factor: 1.0,
        down_factor: 1.0,
    };
    let callback = Callback::new(callback);
    let result = without_gil(py, || {
        check_data(x.view(), x.cols, true, "x")?;
        let mut hook = |layer: usize, epoch: usize, _: &Rbm| {
            callback.call(|py| pyo3::types::PyTuple::new(py, [layer, epoch]))
        };
        rbm::stack_rbms(&x, &hidden_sizes, &template, seed, Some(&mut hook))
    });
    let dbm = callback.finish(result)?;
    dbm_out(py, &dbm)
}

/// DBM fine-tuning (`traindbm!`): mean-field positive phase, persistent Gibbs particles; one
/// epoch per learning rate. `callback(epoch, params)` runs after every epoch.
#[pyfunction]
#[pyo3(signature = (params, x, *, learning_rates, n_particles=100, n_gibbs_sweeps=5, synchronous=false, batch_size=None, eps=1e-3, max_iter=1000, seed=0, callback=None))]
#[allow(clippy::too_many_arguments)]
fn dbm_fine_tune<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    x: PyReadonlyArray2<'py, f64>,
    learning_rates: Vec<f64>,
    n_particles: usize,
    n_gibbs_sweeps: usize,
    synchronous: bool,
    batch_size: Option<usize>,
    eps: f64,
    max_iter: usize,
    seed: u64,
    callback: Option<Py<PyAny>>,
) -> PyResult<Vec<OutParams<'py>>> {
    check_learning_rates(&learning_rates)?;
    let mut model = to_dbm(&params)?;
    let x = to_mat(&x);
    let cfg = FineTuning {
        learning_rates,
        n_particles,
        n_gibbs_sweeps,
        schedule: if synchronous {
            Schedule::Synchronous
        } else {
            Schedule::Blocked
        },
        batch_size,
        eps,
        max_iter,
    };
    let callback = Callback::new(callback);
    let result = without_gil(py, || {
        check_data(x.view(), model.n_visible(), true, "x")?;
        let mut hook = |epoch: usize, dbm: &Dbm| {
            callback.call(|py| {
                let params = dbm_out(py, dbm)?;
                pyo3::types::PyTuple::new(
                    py,
                    [
                        epoch.into_pyobject(py)?.into_any(),
                        params.into_pyobject(py)?.into_any(),
                    ],
                )
            })
        };
        dbm::fine_tune(&mut model, &x, &cfg, seed, Some(&mut hook))
    });
    callback.finish(result)?;
    dbm_out(py, &model)
}

/// Mean-field activations of the hidden layers (`meanfield`): a list of `(n, n_l)` arrays.
#[pyfunction]
#[pyo3(signature = (params, x, *, eps=1e-3, max_iter=1000))]
fn mean_field<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    x: PyReadonlyArray2<'py, f64>,
    eps: f64,
    max_iter: usize,
) -> PyResult<Vec<Bound<'py, PyArray2<f64>>>> {
    let model = to_dbm(&params)?;
    let x = to_mat(&x);
    let mu = without_gil(py, || {
        check_data(x.view(), model.n_visible(), false, "x")?;
        Ok(dbm::mean_field(&model, &x, eps, max_iter).0)
    })?;
    mu.into_iter().map(|m| mat_out(py, m)).collect()
}

/// Blocked Gibbs sampling: `n_sweeps` sweeps from `init` (list of uint8 0/1 arrays, one per
/// layer) or from random particles; `clamp_mask` (uint8, one per visible unit) keeps flagged
/// visible units at their initial values. Returns the states of every layer (uint8).
#[pyfunction]
#[pyo3(signature = (params, n_samples, *, n_sweeps, seed=0, init=None, clamp_mask=None))]
fn gibbs_sample<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    n_samples: usize,
    n_sweeps: usize,
    seed: u64,
    init: Option<Vec<PyReadonlyArray2<'py, u8>>>,
    clamp_mask: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<Vec<Bound<'py, PyArray2<u8>>>> {
    let model = to_dbm(&params)?;
    let sizes = model.sizes();
    let init: Option<Vec<Vec<u8>>> = init.map(|layers| {
        layers
            .iter()
            .map(|a| a.as_array().iter().copied().collect())
            .collect()
    });
    let mask: Option<Vec<bool>> =
        clamp_mask.map(|m| m.as_array().iter().map(|&v| v != 0).collect());
    let particles = without_gil(py, || {
        let mut particles = match &init {
            Some(layers) => {
                let views: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
                let p = Particles::pack(&sizes, &views)?;
                if p.n != n_samples {
                    return Err(CoreError::shape(format!(
                        "init has {} particles but n_samples is {n_samples}",
                        p.n
                    )));
                }
                p
            }
            None => Particles::random(
                &Sampler::from_dbm(&model),
                n_samples,
                seed,
                Purpose::Sample,
                1,
            ),
        };
        gibbs::gibbs_sample(&model, &mut particles, n_sweeps, seed, mask.as_deref())?;
        Ok(particles)
    })?;
    (0..sizes.len())
        .map(|l| {
            Array2::from_shape_vec((particles.n, sizes[l]), particles.unpack(l))
                .map(|a| a.into_pyarray(py))
                .map_err(|e| to_py_err(CoreError::shape(e.to_string())))
        })
        .collect()
}

fn temperatures_or_default(temperatures: Option<Vec<f64>>, n_temperatures: usize) -> Vec<f64> {
    temperatures.unwrap_or_else(|| default_temperatures(n_temperatures))
}

/// AIS estimate of log Z: `(log_z, log_z0, log_weights)`.
#[pyfunction]
#[pyo3(signature = (params, *, temperatures=None, n_temperatures=100, n_particles=100, burn_in=5, seed=0))]
#[allow(clippy::type_complexity)]
fn log_partition_ais<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    temperatures: Option<Vec<f64>>,
    n_temperatures: usize,
    n_particles: usize,
    burn_in: usize,
    seed: u64,
) -> PyResult<(f64, f64, Bound<'py, PyArray1<f64>>)> {
    let model = to_dbm(&params)?;
    let temperatures = temperatures_or_default(temperatures, n_temperatures);
    let estimate = without_gil(py, || {
        ais::log_partition_ais(&model, &temperatures, n_particles, burn_in, seed)
    })?;
    Ok((
        estimate.log_z,
        estimate.log_z0,
        PyArray1::from_vec(py, estimate.log_weights),
    ))
}

/// Exact log Z by enumeration (tiny models only).
#[pyfunction]
fn log_partition_exact(py: Python<'_>, params: Vec<PyParams<'_>>) -> PyResult<f64> {
    let model = to_dbm(&params)?;
    without_gil(py, || ais::log_partition_exact(&model))
}

/// Exact per-sample log-likelihood; `log_z=None` computes log Z exactly too.
#[pyfunction]
#[pyo3(signature = (params, x, *, log_z=None))]
fn log_likelihood_exact<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    x: PyReadonlyArray2<'py, f64>,
    log_z: Option<f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let model = to_dbm(&params)?;
    let x = to_mat(&x);
    let values = without_gil(py, || {
        check_data(x.view(), model.n_visible(), true, "x")?;
        let log_z = match log_z {
            Some(z) => z,
            None => ais::log_partition_exact(&model)?,
        };
        Ok(ais::log_unnormalized_exact(&model, &x)?
            .into_iter()
            .map(|v| v - log_z)
            .collect())
    })?;
    Ok(PyArray1::from_vec(py, values))
}

/// Per-sample AIS log-likelihood given log Z (`loglikelihood(dbm, x, logz)`).
#[pyfunction]
#[pyo3(signature = (params, x, *, log_z, temperatures=None, n_temperatures=100, n_particles=100, burn_in=5, seed=0))]
#[allow(clippy::too_many_arguments)]
fn log_likelihood_ais<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    x: PyReadonlyArray2<'py, f64>,
    log_z: f64,
    temperatures: Option<Vec<f64>>,
    n_temperatures: usize,
    n_particles: usize,
    burn_in: usize,
    seed: u64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let model = to_dbm(&params)?;
    let x = to_mat(&x);
    let temperatures = temperatures_or_default(temperatures, n_temperatures);
    let values = without_gil(py, || {
        check_data(x.view(), model.n_visible(), true, "x")?;
        ais::log_likelihood_ais(&model, &x, log_z, &temperatures, n_particles, burn_in, seed)
    })?;
    Ok(PyArray1::from_vec(py, values))
}

/// Per-sample mean-field lower bound of log p(v) given log Z (`logproblowerbound`).
#[pyfunction]
#[pyo3(signature = (params, x, *, log_z, eps=1e-3, max_iter=1000))]
fn log_prob_lower_bound<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    x: PyReadonlyArray2<'py, f64>,
    log_z: f64,
    eps: f64,
    max_iter: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let model = to_dbm(&params)?;
    let x = to_mat(&x);
    let values = without_gil(py, || {
        check_data(x.view(), model.n_visible(), true, "x")?;
        Ok(ais::log_prob_lower_bound(&model, &x, log_z, eps, max_iter))
    })?;
    Ok(PyArray1::from_vec(py, values))
}

/// Per-sample reconstruction error (`reconstructionerror`; mean-field for DBMs).
#[pyfunction]
#[pyo3(signature = (params, x, *, eps=1e-3, max_iter=1000))]
fn reconstruction_error<'py>(
    py: Python<'py>,
    params: Vec<PyParams<'py>>,
    x: PyReadonlyArray2<'py, f64>,
    eps: f64,
    max_iter: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let model = to_dbm(&params)?;
    let x = to_mat(&x);
    let values = without_gil(py, || {
        check_data(x.view(), model.n_visible(), false, "x")?;
        Ok(ais::reconstruction_error(&model, &x, eps, max_iter))
    })?;
    Ok(PyArray1::from_vec(py, values))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(persistent_contrastive_divergence, m)?)?;
    m.add_function(wrap_pyfunction!(stack_rbms, m)?)?;
    m.add_function(wrap_pyfunction!(dbm_fine_tune, m)?)?;
    m.add_function(wrap_pyfunction!(mean_field, m)?)?;
    m.add_function(wrap_pyfunction!(gibbs_sample, m)?)?;
    m.add_function(wrap_pyfunction!(log_partition_ais, m)?)?;
    m.add_function(wrap_pyfunction!(log_partition_exact, m)?)?;
    m.add_function(wrap_pyfunction!(log_likelihood_exact, m)?)?;
    m.add_function(wrap_pyfunction!(log_likelihood_ais, m)?)?;
    m.add_function(wrap_pyfunction!(log_prob_lower_bound, m)?)?;
    m.add_function(wrap_pyfunction!(reconstruction_error, m)?)?;
    Ok(())
}
