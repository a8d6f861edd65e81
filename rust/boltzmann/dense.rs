//! Dense float64 kernels of training and mean-field inference.
//!
//! Large products go through `ndarray` (matrixmultiply GEMM, runtime AVX/FMA dispatch), split into
//! fixed row blocks run by rayon; small ones (minibatches of a few rows) use row-axpy kernels
//! that skip zero inputs (binary data) and avoid GEMM packing. Row blocks are fixed, so results do
//! not depend on the number of threads.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// A row-major matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Self { rows, cols, data }
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    #[inline]
    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The rows `index` of `self`, in that order.
    pub fn gather(&self, index: &[usize]) -> Self {
        let mut out = Vec::with_capacity(index.len() * self.cols);
        for &r in index {
            out.extend_from_slice(self.row(r));
        }
        Self::from_vec(index.len(), self.cols, out)
    }

    /// The first `rows` rows.
    pub fn head(&self, rows: usize) -> Self {
        Self::from_vec(rows, self.cols, self.data[..rows * self.cols].to_vec())
    }

    /// Column means.
    pub fn column_means(&self) -> Vec<f64> {
        let mut sums = vec![0.0; self.cols];
        for r in 0..self.rows {
            for (s, &v) in sums.iter_mut().zip(self.row(r)) {
                *s += v;
            }
        }
        let n = self.rows.max(1) as f64;
        sums.iter_mut().for_each(|s| *s /= n);
        sums
    }
}

const BLOCK_ROWS: usize = 128;
const SMALL_WORK: usize = 1 << 17;

#[inline]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// log(1 + exp(x)) without overflow.
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

pub fn sigmoid_inplace(m: &mut Mat) {
    m.data.iter_mut().for_each(|v| *v = sigmoid(*v));
}

fn view(data: &[f64], rows: usize, cols: usize) -> ArrayView2<'_, f64> {
    // The callers pass `rows * cols == data.len()`; an empty view is the (unreachable) fallback.
    ArrayView2::from_shape((rows, cols), data)
        .unwrap_or_else(|_| ArrayView2::from(&[] as &[[f64; 0]]))
}

/// `out = factor * (x · w + bias)` with `x` (b×k), `w` (k×n, row-major), `bias` (n).
pub fn affine_up(x: &Mat, w: &[f64], n: usize, bias: &[f64], factor: f64) -> Mat {
    let (b, k) = (x.rows, x.cols);
    let mut out = Mat::zeros(b, n);
    if b * k * n >= SMALL_WORK && b >= 16 {
        let wv = view(w, k, n);
        out.data
            .par_chunks_mut(BLOCK_ROWS * n)
            .zip(x.data.par_chunks(BLOCK_ROWS * k))
            .for_each(|(o, xs)| {
                let rows = xs.len() / k.max(1);
                let xv = view(xs, rows, k);
                if let Ok(mut ov) = ArrayViewMut2::from_shape((rows, n), o) {
                    general_mat_mul(1.0, &xv, &wv, 0.0, &mut ov);
                }
            });
    } else {
        for r in 0..b {
            axpy_rows(out.row_mut(r), x.row(r), w, n);
        }
    }
    finish_affine(&mut out, bias, factor);
    out
}

/// `out = factor * (h · wᵀ + bias)` with `h` (b×n), `w` (k×n, row-major), `bias` (k).
pub fn affine_down(h: &Mat, w: &[f64], k: usize, bias: &[f64], factor: f64) -> Mat {
    let (b, n) = (h.rows, h.cols);
    let mut out = Mat::zeros(b, k);
    if b * k * n >= SMALL_WORK && b >= 16 {
        let wv = view(w, k, n);
        let wt = wv.t();
        out.data
            .par_chunks_mut(BLOCK_ROWS * k)
            .zip(h.data.par_chunks(BLOCK_ROWS * n))
            .for_each(|(o, hs)| {
                let rows = hs.len() / n.max(1);
                let hv = view(hs, rows, n);
                if let Ok(mut ov) = ArrayViewMut2::from_shape((rows, k), o) {
                    general_mat_mul(1.0, &hv, &wt, 0.0, &mut ov);
                }
            });
    } else {
        for r in 0..b {
            dots_rows(out.row_mut(r), h.row(r), w, n);
        }
    }
    finish_affine(&mut out, bias, factor);
    out
}

fn finish_affine(out: &mut Mat, bias: &[f64], factor: f64) {
    let n = out.cols;
    if n == 0 {
        return;
    }
    for row in out.data.chunks_mut(n) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = factor * (*v + b);
        }
    }
}

/// `w += alpha · xᵀ y` with `x` (b×k), `y` (b×n), `w` (k×n).
pub fn add_outer(w: &mut [f64], alpha: f64, x: &Mat, y: &Mat) {
    let (b, k, n) = (x.rows, x.cols, y.cols);
    if b * k * n >= SMALL_WORK && b >= 16 {
        let xv = view(&x.data, b, k);
        let yv = view(&y.data, b, n);
        let block = 64usize;
        w.par_chunks_mut(block * n).enumerate().for_each(|(i, wb)| {
            let rows = wb.len() / n.max(1);
            let xs = xv.slice(ndarray::s![.., i * block..i * block + rows]);
            if let Ok(mut wv) = ArrayViewMut2::from_shape((rows, n), wb) {
                general_mat_mul(alpha, &xs.t(), &yv, 1.0, &mut wv);
            }
        });
    } else {
        for r in 0..b {
            let yr = y.row(r);
            for (i, &xi) in x.row(r).iter().enumerate() {
                if xi != 0.0 {
                    axpy(&mut w[i * n..(i + 1) * n], alpha * xi, yr);
                }
            }
        }
    }
}

#[inline]
fn axpy(out: &mut [f64], a: f64, x: &[f64]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// `out += Σ_i x_i · w[i, :]` (skips zero inputs).
#[inline]
fn axpy_rows(out: &mut [f64], x: &[f64], w: &[f64], n: usize) {
    for (i, &xi) in x.iter().enumerate() {
        if xi != 0.0 {
            axpy(out, xi, &w[i * n..(i + 1) * n]);
        }
    }
}

/// `out[i] = Σ_j h_j · w[i, j]` (four-lane dot products).
#[inline]
fn dots_rows(out: &mut [f64], h: &[f64], w: &[f64], n: usize) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = dot(h, &w[i * n..(i + 1) * n]);
    }
}

/// Dot product with eight independent accumulators (vectorises; fixed summation order).
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}
