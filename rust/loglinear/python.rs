//! Python bindings of the log-linear kernels: argument conversion, GIL release, error mapping.
//! User-facing validation messages and docstrings live in `omicsembed.explain.loglinear`.

use numpy::ndarray::{Array3, ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArray1, PyArray3, PyArrayDyn, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use super::select::{Binary, Model, SelectOptions};
use crate::error::CoreError;
use crate::python::{to_py_err, without_gil};

fn contiguous<'a, T: numpy::Element, D: numpy::ndarray::Dimension>(
    a: &'a numpy::PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    // `as_slice` also accepts Fortran order, whose memory order is not the row-major one read
    let slice = a.is_c_contiguous().then(|| a.as_slice().ok()).flatten();
    slice.ok_or_else(|| {
        to_py_err(CoreError::invalid(format!(
            "{name} must be C-contiguous; pass np.ascontiguousarray({name})"
        )))
    })
}

fn to_dyn(shape: &[usize], values: Vec<f64>) -> PyResult<ArrayD<f64>> {
    ArrayD::from_shape_vec(IxDyn(shape), values)
        .map_err(|e| to_py_err(CoreError::shape(e.to_string())))
}

/// Counts of every cell (int64 array of shape `levels`) of the uint8 `(n, q)` matrix `x`.
#[pyfunction]
#[pyo3(signature = (x, levels=None))]
fn contingency_table<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, u8>,
    levels: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
    let (n, q) = (x.shape()[0], x.shape()[1]);
    let data = contiguous(&x, "x")?;
    let (levels, counts) = without_gil(py, || {
        super::contingency_table(data, n, q, levels.as_deref())
    })?;
    let counts: Vec<i64> = counts.into_iter().map(|c| c as i64).collect();
    let array = ArrayD::from_shape_vec(IxDyn(&levels), counts)
        .map_err(|e| to_py_err(CoreError::shape(e.to_string())))?;
    Ok(array.into_pyarray(py))
}

/// G² = 2 Σ n ln(n / m) over cells with n > 0 of two float64 tables of the same shape.
#[pyfunction]
fn g_squared(
    observed: PyReadonlyArrayDyn<'_, f64>,
    fitted: PyReadonlyArrayDyn<'_, f64>,
) -> PyResult<f64> {
    if observed.shape() != fitted.shape() {
        return Err(to_py_err(CoreError::shape(format!(
            "observed has shape {:?} but fitted has shape {:?}",
            observed.shape(),
            fitted.shape()
        ))));
    }
    super::g_squared(
        contiguous(&observed, "observed")?,
        contiguous(&fitted, "fitted")?,
    )
    .map_err(to_py_err)
}

/// IPF of a hierarchical model: `(fitted, iterations, converged, max_deviation)`.
#[pyfunction]
#[pyo3(signature = (table, margins, tol=1e-10, max_iter=1000))]
fn ipf<'py>(
    py: Python<'py>,
    table: PyReadonlyArrayDyn<'py, f64>,
    margins: Vec<Vec<usize>>,
    tol: f64,
    max_iter: usize,
) -> PyResult<(Bound<'py, PyArrayDyn<f64>>, usize, bool, f64)> {
    let levels = table.shape().to_vec();
    let data = contiguous(&table, "table")?;
    let fit = without_gil(py, || super::ipf(data, &levels, &margins, tol, max_iter))?;
    let fitted = to_dyn(&levels, fit.fitted)?.into_pyarray(py);
    Ok((fitted, fit.iterations, fit.converged, fit.max_deviation))
}

/// Closed-form fitted values of a decomposable hierarchical model.
#[pyfunction]
fn loglinear_closed_form<'py>(
    py: Python<'py>,
    table: PyReadonlyArrayDyn<'py, f64>,
    margins: Vec<Vec<usize>>,
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let levels = table.shape().to_vec();
    let data = contiguous(&table, "table")?;
    let fitted = without_gil(py, || super::closed_form(data, &levels, &margins))?;
    Ok(to_dyn(&levels, fitted)?.into_pyarray(py))
}

/// Whether the hierarchical model with these generators over `n_vars` variables is decomposable.
#[pyfunction]
fn is_decomposable(margins: Vec<Vec<usize>>, n_vars: usize) -> PyResult<bool> {
    super::is_decomposable(&margins, n_vars).map_err(to_py_err)
}

type SelectionTuple<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray3<f64>>,
    Option<Bound<'py, PyArray1<f64>>>,
);

/// Stepwise G² selection: `(selected, latent_units (-1 = none), g2, scores (k, p, r), p_values)`.
#[pyfunction]
#[pyo3(signature = (x, u, k, conditional=false, n_permutations=0, seed=0))]
fn select_features_loglinear<'py>(
    py: Python<'py>,
    x: PyReadonlyArray2<'py, u8>,
    u: Option<PyReadonlyArray2<'py, u8>>,
    k: usize,
    conditional: bool,
    n_permutations: usize,
    seed: u64,
) -> PyResult<SelectionTuple<'py>> {
    let (n, p) = (x.shape()[0], x.shape()[1]);
    let x_data = contiguous(&x, "X")?;
    let u_parts = match &u {
        Some(u) => Some((contiguous(u, "U")?, u.shape()[0], u.shape()[1])),
        None => None,
    };
    let options = SelectOptions {
        k,
        model: if conditional {
            Model::Conditional
        } else {
            Model::Marginal
        },
        n_permutations,
        seed,
    };
    let selection = without_gil(py, || {
        let xb = Binary::new(x_data, n, p, "X")?;
        let ub = match u_parts {
            Some((data, un, r)) => Some(Binary::new(data, un, r, "U")?),
            None => None,
        };
        super::select_features(&xb, ub.as_ref(), &options)
    })?;
    let steps = selection.selected.len();
    let scores = Array3::from_shape_vec((steps, p, selection.r), selection.scores)
        .map_err(|e| to_py_err(CoreError::shape(e.to_string())))?;
    Ok((
        PyArray1::from_vec(py, selection.selected.iter().map(|&i| i as i64).collect()),
        PyArray1::from_vec(
            py,
            selection
                .latent_units
                .iter()
                .map(|j| j.map_or(-1, |j| j as i64))
                .collect(),
        ),
        PyArray1::from_vec(py, selection.g2),
        scores.into_pyarray(py),
        selection.p_values.map(|v| PyArray1::from_vec(py, v)),
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(contingency_table, m)?)?;
    m.add_function(wrap_pyfunction!(g_squared, m)?)?;
    m.add_function(wrap_pyfunction!(ipf, m)?)?;
    m.add_function(wrap_pyfunction!(loglinear_closed_form, m)?)?;
    m.add_function(wrap_pyfunction!(is_decomposable, m)?)?;
    m.add_function(wrap_pyfunction!(select_features_loglinear, m)?)?;
    Ok(())
}
