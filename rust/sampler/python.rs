//! Python bindings of the narrow-format sampler: argument conversion, GIL release, errors.
//!
//! X is not copied: the sampler keeps a reference to the numpy array (`Py<PyArray2<T>>`,
//! float32 or float64, any strides) and borrows it read-only while it fills a batch. Batches
//! are returned as freshly allocated numpy arrays that take ownership of the Rust vectors
//! (no copy).

use numpy::ndarray::{Array2, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{Descriptors, Grid, NarrowSampler, SamplerConfig, Side};
use crate::python::{to_py_err, without_gil};

/// A strided numpy view as a [`Grid`].
struct View<'a, T>(ArrayView2<'a, T>);

impl Grid<f32> for View<'_, f32> {
    fn shape(&self) -> (usize, usize) {
        self.0.dim()
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.0.get((i, j)).copied().unwrap_or(f32::NAN)
    }
}

impl Grid<f32> for View<'_, f64> {
    fn shape(&self) -> (usize, usize) {
        self.0.dim()
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.0.get((i, j)).map_or(f32::NAN, |&v| v as f32)
    }
}

impl Grid<u8> for View<'_, u8> {
    fn shape(&self) -> (usize, usize) {
        self.0.dim()
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> u8 {
        self.0.get((i, j)).copied().unwrap_or(0)
    }
}

/// X as passed from Python.
#[derive(FromPyObject)]
enum MatrixArg<'py> {
    F32(Bound<'py, PyArray2<f32>>),
    F64(Bound<'py, PyArray2<f64>>),
}

/// The held reference to X.
enum Matrix {
    F32(Py<PyArray2<f32>>),
    F64(Py<PyArray2<f64>>),
}

type BatchArrays<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Option<Bound<'py, PyArray2<i64>>>,
    Bound<'py, PyArray1<f32>>,
);

/// Narrow-format minibatch sampler over a float32/float64 matrix (see `omicsembed.train`).
#[pyclass(module = "omicsembed._core", name = "NarrowSampler", frozen)]
pub struct PyNarrowSampler {
    core: NarrowSampler,
    x: Matrix,
}

#[pymethods]
impl PyNarrowSampler {
    #[new]
    #[pyo3(signature = (
        x, *, batch_size = 10_000, seed = 0, mask = None, descriptors = None,
        holdout_fraction = 0.0, holdout_seed = 0, side = "all", drop_last = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        x: MatrixArg<'_>,
        batch_size: usize,
        seed: u64,
        mask: Option<PyReadonlyArray2<'_, u8>>,
        descriptors: Option<PyReadonlyArray2<'_, i64>>,
        holdout_fraction: f64,
        holdout_seed: u64,
        side: &str,
        drop_last: bool,
    ) -> PyResult<Self> {
        let config = SamplerConfig {
            batch_size,
            seed,
            holdout_fraction,
            holdout_seed,
            side: Side::parse(side).map_err(to_py_err)?,
            drop_last,
        };
        let descriptors = match descriptors {
            None => None,
            Some(d) => {
                let view = d.as_array();
                let (rows, cols) = view.dim();
                let data: Vec<i64> = view.iter().copied().collect();
                Some(Descriptors::new(data, rows, cols).map_err(to_py_err)?)
            }
        };
        let mask_view = mask.as_ref().map(|m| View(m.as_array()));
        let mask_grid = mask_view.as_ref().map(|m| m as &dyn Grid<u8>);
        let (core, x) = match x {
            MatrixArg::F32(a) => {
                let guard = a.try_readonly()?;
                let view = View(guard.as_array());
                let core = without_gil(py, || {
                    NarrowSampler::new(&view, mask_grid, descriptors, config)
                })?;
                (core, Matrix::F32(a.clone().unbind()))
            }
            MatrixArg::F64(a) => {
                let guard = a.try_readonly()?;
                let view = View(guard.as_array());
                let core = without_gil(py, || {
                    NarrowSampler::new(&view, mask_grid, descriptors, config)
                })?;
                (core, Matrix::F64(a.clone().unbind()))
            }
        };
        Ok(Self { core, x })
    }

    /// Batch `index` of epoch `epoch`: (samples int64[b], genes int64[b],
    /// descriptors int64[b, d] or None, values float32[b]).
    fn batch<'py>(&self, py: Python<'py>, index: u64, epoch: u64) -> PyResult<BatchArrays<'py>> {
        let batch = match &self.x {
            Matrix::F32(a) => {
                let guard = a.bind(py).try_readonly()?;
                let view = View(guard.as_array());
                without_gil(py, || self.core.batch(&view, index, epoch))?
            }
            Matrix::F64(a) => {
                let guard = a.bind(py).try_readonly()?;
                let view = View(guard.as_array());
                without_gil(py, || self.core.batch(&view, index, epoch))?
            }
        };
        let len = batch.samples.len();
        let descriptors = if self.core.has_descriptors() {
            let table = Array2::from_shape_vec((len, self.core.n_descriptors()), batch.descriptors)
                .map_err(|e| PyValueError::new_err(format!("descriptor batch: {e}")))?;
            Some(table.into_pyarray(py))
        } else {
            None
        };
        Ok((
            PyArray1::from_vec(py, batch.samples),
            PyArray1::from_vec(py, batch.genes),
            descriptors,
            PyArray1::from_vec(py, batch.values),
        ))
    }

    /// Included entries per epoch.
    #[getter]
    fn n_entries(&self) -> u64 {
        self.core.n_entries()
    }

    /// Batches per epoch.
    #[getter]
    fn n_batches(&self) -> u64 {
        self.core.n_batches()
    }

    /// (n, m) of X.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        self.core.shape()
    }

    /// Descriptor columns d (0 without descriptors).
    #[getter]
    fn n_descriptors(&self) -> usize {
        self.core.n_descriptors()
    }

    /// Whether descriptors were given.
    #[getter]
    fn has_descriptors(&self) -> bool {
        self.core.has_descriptors()
    }

    /// Bytes of the included-entry bitmap and block counts (0 when nothing is excluded).
    #[getter]
    fn index_bytes(&self) -> usize {
        self.core.index_bytes()
    }

    /// Entries per batch.
    #[getter]
    fn batch_size(&self) -> usize {
        self.core.config().batch_size
    }

    /// Seed of the per-epoch permutations.
    #[getter]
    fn seed(&self) -> u64 {
        self.core.config().seed
    }

    /// Fraction of observed entries on the validation side.
    #[getter]
    fn holdout_fraction(&self) -> f64 {
        self.core.config().holdout_fraction
    }

    /// Seed of the held-out split.
    #[getter]
    fn holdout_seed(&self) -> u64 {
        self.core.config().holdout_seed
    }

    /// "train", "validation" or "all".
    #[getter]
    fn side(&self) -> &'static str {
        self.core.config().side.name()
    }

    /// Whether the last short batch is dropped.
    #[getter]
    fn drop_last(&self) -> bool {
        self.core.config().drop_last
    }
}

/// Whether the sampler may use rayon threads in this process (False in forked children).
#[pyfunction]
fn _sampler_parallelism_allowed() -> bool {
    crate::parallel::parallelism_allowed()
}

#[cfg(unix)]
extern "C" fn disable_parallelism_in_child() {
    crate::parallel::disable_parallelism();
}

/// Register a `pthread_atfork` child handler once: rayon's threads do not survive `fork`
/// (torch `DataLoader` workers), so forked children fill batches on one thread.
fn register_fork_handler() {
    #[cfg(unix)]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: registers a plain `extern "C"` function that only stores an atomic flag
            // (async-signal-safe), as required for code running in a child after fork.
            unsafe {
                libc::pthread_atfork(None, None, Some(disable_parallelism_in_child));
            }
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    register_fork_handler();
    m.add_class::<PyNarrowSampler>()?;
    m.add_function(wrap_pyfunction!(_sampler_parallelism_allowed, m)?)?;
    Ok(())
}
