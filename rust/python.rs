//! The `omicsembed._core` Python module: error mapping, GIL helper and the
//! registration of every area's bindings.

use pyo3::import_exception;
use pyo3::prelude::*;

use crate::error::{CoreError, ErrorKind};

// The exception hierarchy is defined in Python (`omicsembed/exceptions.py`) so that
// `InvalidInputError` can subclass both `OmicsEmbedError` and `ValueError`; Rust imports the classes.
import_exception!(omicsembed.exceptions, InvalidInputError);
import_exception!(omicsembed.exceptions, ShapeMismatchError);
import_exception!(omicsembed.exceptions, ConvergenceError);

/// The one place where a kernel error becomes a Python exception.
pub fn to_py_err(error: CoreError) -> PyErr {
    match error.kind {
        ErrorKind::InvalidInput => InvalidInputError::new_err(error.message),
        ErrorKind::ShapeMismatch => ShapeMismatchError::new_err(error.message),
        ErrorKind::Convergence => ConvergenceError::new_err(error.message),
    }
}

/// Run `work` without the GIL and convert its error. Every long kernel call goes through here,
/// and through [`crate::parallel::run`], so that it does not wait for rayon threads a forked
/// process does not have.
pub fn without_gil<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: Send + FnOnce() -> Result<T, CoreError>,
{
    py.detach(|| crate::parallel::run(work)).map_err(to_py_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    crate::tissue::python::register(m)?;
    crate::sampler::python::register(m)?;
    crate::loglinear::python::register(m)?;
    crate::boltzmann::python::register(m)?;
    Ok(())
}
