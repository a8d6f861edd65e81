//! Python bindings of the tissue kernels: argument conversion, GIL release, error mapping.
//!
//! `x` is a 2-D `float32` or `float64` numpy array, C- or Fortran-contiguous (read in place, no
//! copy); `codes` an `int64` array of group codes; `n_groups` the number of groups. Validation
//! messages for users live in `omicsembed.stats`; these functions still refuse bad input with
//! typed errors.

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::{Expr, Layout, Matrix};
use crate::error::{CoreError, CoreResult};
use crate::python::{to_py_err, without_gil};

/// Run `kernel` on `x` (float32 or float64) with the GIL released.
fn dispatch<R: Send>(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    kernel32: impl Send + FnOnce(&Matrix<'_, f32>) -> CoreResult<R>,
    kernel64: impl Send + FnOnce(&Matrix<'_, f64>) -> CoreResult<R>,
) -> PyResult<R> {
    if let Ok(a) = x.cast::<PyArray2<f32>>() {
        let a = a.try_readonly()?;
        let (n, m) = (a.shape()[0], a.shape()[1]);
        let layout = layout_of(a.is_c_contiguous());
        let data = a.as_slice().map_err(|_| not_contiguous())?;
        return without_gil(py, || kernel32(&Matrix::new(data, n, m, layout)?));
    }
    if let Ok(a) = x.cast::<PyArray2<f64>>() {
        let a = a.try_readonly()?;
        let (n, m) = (a.shape()[0], a.shape()[1]);
        let layout = layout_of(a.is_c_contiguous());
        let data = a.as_slice().map_err(|_| not_contiguous())?;
        return without_gil(py, || kernel64(&Matrix::new(data, n, m, layout)?));
    }
    Err(to_py_err(CoreError::invalid(
        "X must be a 2-D numpy array of dtype float32 or float64",
    )))
}

fn layout_of(c_contiguous: bool) -> Layout {
    if c_contiguous {
        Layout::RowMajor
    } else {
        Layout::ColMajor
    }
}

fn not_contiguous() -> PyErr {
    to_py_err(CoreError::invalid(
        "X must be C- or Fortran-contiguous; pass np.ascontiguousarray(X)",
    ))
}

fn codes_not_contiguous() -> PyErr {
    to_py_err(CoreError::invalid(
        "codes must be a contiguous int64 array; pass np.ascontiguousarray(codes)",
    ))
}

/// A kernel over one matrix type: `(x, codes, n_groups) -> values`.
type Kernel<T> = fn(&Matrix<'_, T>, &[i64], usize) -> CoreResult<Vec<f64>>;

fn generic<T: Expr>(
    kernel: Kernel<T>,
    codes: &[i64],
    n_groups: usize,
) -> impl Send + FnOnce(&Matrix<'_, T>) -> CoreResult<Vec<f64>> + '_ {
    move |x| kernel(x, codes, n_groups)
}

/// Tau tissue-specificity index of every gene: `(n, m)` matrix, `(n,)` codes → `(m,)` float64.
#[pyfunction]
fn tau_index<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    codes: PyReadonlyArray1<'py, i64>,
    n_groups: usize,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let codes = codes.as_slice().map_err(|_| codes_not_contiguous())?;
    let tau = dispatch(
        py,
        x,
        generic(super::tau_index::<f32>, codes, n_groups),
        generic(super::tau_index::<f64>, codes, n_groups),
    )?;
    Ok(PyArray1::from_vec(py, tau))
}

/// Tissue-specific Wasserstein distance: `(n, m)` matrix, `(n,)` codes → `(m, n_groups)` float64.
#[pyfunction]
fn tissue_wasserstein<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    codes: PyReadonlyArray1<'py, i64>,
    n_groups: usize,
) -> PyResult<Bound<'py, PyArray2<f64>>> {
    let codes = codes.as_slice().map_err(|_| codes_not_contiguous())?;
    let distances = dispatch(
        py,
        x,
        generic(super::tissue_wasserstein::<f32>, codes, n_groups),
        generic(super::tissue_wasserstein::<f64>, codes, n_groups),
    )?;
    let m = distances.len() / n_groups.max(1);
    let array = Array2::from_shape_vec((m, n_groups), distances)
        .map_err(|e| to_py_err(CoreError::shape(e.to_string())))?;
    Ok(array.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tau_index, m)?)?;
    m.add_function(wrap_pyfunction!(tissue_wasserstein, m)?)?;
    Ok(())
}
