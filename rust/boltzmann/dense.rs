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
/// From this many rows on, products go through GEMM (packing pays off).
const GEMM_ROWS: usize = 4;
/// Gradient outer products go through GEMM from this many rows on.
const OUTER_GEMM_ROWS: usize = 64;
/// Work (multiply-adds) from which gradient outer products are split over threads.
const PARALLEL_WORK: usize = 1 << 22;

/// `1 / (1 + exp(-x))` with the branch-free [`exp_f64`] (vectorises in loops).
#[inline(always)]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + exp_f64(-x))
}

/// `exp(x)` for float64 without branches or calls: range reduction by ln 2 (rounding with the
/// 1.5·2^52 trick), degree-12 Taylor polynomial on |r| ≤ ln2/2 (relative error < 3e-15 against
/// libm over [-700, 700]); `x` is clamped to [-708, 709].
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.clamp(-708.0, 709.0);
    let shifted = x * std::f64::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let exponent = (shifted.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    p * f64::from_bits((exponent.wrapping_add(1023) as u64) << 52)
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

#[inline(always)]
pub fn sigmoid_inplace(m: &mut Mat) {
    m.data.iter_mut().for_each(|v| *v = sigmoid(*v));
}

fn view(data: &[f64], rows: usize, cols: usize) -> ArrayView2<'_, f64> {
    // The callers pass `rows * cols == data.len()`; an empty view is the (unreachable) fallback.
    ArrayView2::from_shape((rows, cols), data)
        .unwrap_or_else(|_| ArrayView2::from(&[] as &[[f64; 0]]))
}

/// `out = factor * (x · w + bias)` with `x` (b×k), `w` (k×n, row-major), `bias` (n).
#[inline(always)]
pub fn affine_up(x: &Mat, w: &[f64], n: usize, bias: &[f64], factor: f64) -> Mat {
    let (b, k) = (x.rows, x.cols);
    let mut out = Mat::zeros(b, n);
    if b <= BLOCK_ROWS && is_sparse_binary(&x.data) {
        // Binary inputs (data rows, sampled states): sum the weight rows of the active units.
        for (o, xr) in out
            .data
            .chunks_exact_mut(n.max(1))
            .zip(x.data.chunks_exact(k.max(1)))
        {
            for (i, &xi) in xr.iter().enumerate() {
                if xi != 0.0 {
                    for (a, wv) in o.iter_mut().zip(&w[i * n..(i + 1) * n]) {
                        *a += wv;
                    }
                }
            }
        }
    } else if (GEMM_ROWS..=BLOCK_ROWS).contains(&b) {
        let (xv, wv) = (view(&x.data, b, k), view(w, k, n));
        if let Ok(mut ov) = ArrayViewMut2::from_shape((b, n), out.data.as_mut_slice()) {
            general_mat_mul(1.0, &xv, &wv, 0.0, &mut ov);
        }
    } else if b >= GEMM_ROWS {
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
        small_xw(&mut out.data, &x.data, w, b, k, n);
    }
    finish_affine(&mut out, bias, factor);
    out
}

/// `out = factor * (h · wᵀ + bias)` with `h` (b×n), `w` (k×n, row-major), `bias` (k).
#[inline(always)]
pub fn affine_down(h: &Mat, w: &[f64], k: usize, bias: &[f64], factor: f64) -> Mat {
    let (b, n) = (h.rows, h.cols);
    let mut out = Mat::zeros(b, k);
    if (GEMM_ROWS..=BLOCK_ROWS).contains(&b) {
        let (hv, wv) = (view(&h.data, b, n), view(w, k, n));
        if let Ok(mut ov) = ArrayViewMut2::from_shape((b, k), out.data.as_mut_slice()) {
            general_mat_mul(1.0, &hv, &wv.t(), 0.0, &mut ov);
        }
    } else if b >= GEMM_ROWS {
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
        small_hwt(&mut out.data, &h.data, w, b, k, n);
    }
    finish_affine(&mut out, bias, factor);
    out
}

#[inline(always)]
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
#[inline(always)]
pub fn add_outer(w: &mut [f64], alpha: f64, x: &Mat, y: &Mat) {
    let (b, k, n) = (x.rows, x.cols, y.cols);
    if b >= OUTER_GEMM_ROWS && b * k * n < PARALLEL_WORK {
        let (xv, yv) = (view(&x.data, b, k), view(&y.data, b, n));
        if let Ok(mut wv) = ArrayViewMut2::from_shape((k, n), w) {
            general_mat_mul(alpha, &xv.t(), &yv, 1.0, &mut wv);
        }
    } else if b >= OUTER_GEMM_ROWS {
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
        small_add_outer(w, alpha, &x.data, &y.data, b, k, n);
    }
}

/// Whether all values are 0 or 1 and at most 60 % are 1 (then skipping zeros beats GEMM).
#[inline(always)]
fn is_sparse_binary(values: &[f64]) -> bool {
    let mut ones = 0usize;
    for &v in values {
        if v == 1.0 {
            ones += 1;
        } else if v != 0.0 {
            return false;
        }
    }
    ones * 5 <= values.len() * 3
}

/// Columns per register block of the small kernels (four AVX2 vectors of f64).
const CB: usize = 16;

/// `out = x · w` for few rows: two rows of `x` × 16 columns of `w` accumulate in registers.
#[inline(always)]
fn small_xw(out: &mut [f64], x: &[f64], w: &[f64], b: usize, k: usize, n: usize) {
    let mut r0 = 0;
    while r0 < b {
        let two = r0 + 1 < b;
        let mut c0 = 0;
        while c0 + CB <= n {
            let mut a0 = [0f64; CB];
            let mut a1 = [0f64; CB];
            for i in 0..k {
                let row = &w[i * n + c0..i * n + c0 + CB];
                let x0 = x[r0 * k + i];
                let x1 = if two { x[(r0 + 1) * k + i] } else { 0.0 };
                for j in 0..CB {
                    a0[j] += x0 * row[j];
                    a1[j] += x1 * row[j];
                }
            }
            out[r0 * n + c0..r0 * n + c0 + CB].copy_from_slice(&a0);
            if two {
                out[(r0 + 1) * n + c0..(r0 + 1) * n + c0 + CB].copy_from_slice(&a1);
            }
            c0 += CB;
        }
        if c0 < n {
            for r in r0..(r0 + 2).min(b) {
                let o = &mut out[r * n + c0..(r + 1) * n];
                o.fill(0.0);
                for i in 0..k {
                    let xi = x[r * k + i];
                    if xi != 0.0 {
                        axpy(o, xi, &w[i * n + c0..(i + 1) * n]);
                    }
                }
            }
        }
        r0 += 2;
    }
}

/// `out = h · wᵀ` for few rows: two rows of `h` × four rows of `w`, four-lane partial sums.
#[inline(always)]
fn small_hwt(out: &mut [f64], h: &[f64], w: &[f64], b: usize, k: usize, n: usize) {
    let n4 = n / 4 * 4;
    let mut r0 = 0;
    while r0 < b {
        let two = r0 + 1 < b;
        let h0 = &h[r0 * n..(r0 + 1) * n];
        let h1 = if two {
            &h[(r0 + 1) * n..(r0 + 2) * n]
        } else {
            h0
        };
        let mut i0 = 0;
        while i0 + 4 <= k {
            let mut acc = [[[0f64; 4]; 4]; 2];
            let rows = [
                &w[i0 * n..(i0 + 1) * n],
                &w[(i0 + 1) * n..(i0 + 2) * n],
                &w[(i0 + 2) * n..(i0 + 3) * n],
                &w[(i0 + 3) * n..(i0 + 4) * n],
            ];
            let mut j = 0;
            while j < n4 {
                for (q, row) in rows.iter().enumerate() {
                    for l in 0..4 {
                        acc[0][q][l] += h0[j + l] * row[j + l];
                        acc[1][q][l] += h1[j + l] * row[j + l];
                    }
                }
                j += 4;
            }
            for (q, row) in rows.iter().enumerate() {
                let mut tail = [0f64; 2];
                for jj in n4..n {
                    tail[0] += h0[jj] * row[jj];
                    tail[1] += h1[jj] * row[jj];
                }
                for (t, (a, tail)) in acc
                    .iter()
                    .zip(tail)
                    .enumerate()
                    .take(if two { 2 } else { 1 })
                {
                    out[(r0 + t) * k + i0 + q] = (a[q][0] + a[q][2]) + (a[q][1] + a[q][3]) + tail;
                }
            }
            i0 += 4;
        }
        for i in i0..k {
            let row = &w[i * n..(i + 1) * n];
            out[r0 * k + i] = dot(h0, row);
            if two {
                out[(r0 + 1) * k + i] = dot(h1, row);
            }
        }
        r0 += 2;
    }
}

/// `w += alpha · xᵀ y` for few rows: a 16-column block of a row of `w` stays in registers
/// while the rows of `y` are added (zero coefficients skipped).
#[inline(always)]
fn small_add_outer(w: &mut [f64], alpha: f64, x: &[f64], y: &[f64], b: usize, k: usize, n: usize) {
    for i in 0..k {
        let mut c0 = 0;
        while c0 + CB <= n {
            let mut acc = [0f64; CB];
            acc.copy_from_slice(&w[i * n + c0..i * n + c0 + CB]);
            for r in 0..b {
                let coef = alpha * x[r * k + i];
                if coef != 0.0 {
                    let yr = &y[r * n + c0..r * n + c0 + CB];
                    for j in 0..CB {
                        acc[j] += coef * yr[j];
                    }
                }
            }
            w[i * n + c0..i * n + c0 + CB].copy_from_slice(&acc);
            c0 += CB;
        }
        if c0 < n {
            for r in 0..b {
                let coef = alpha * x[r * k + i];
                if coef != 0.0 {
                    axpy(
                        &mut w[i * n + c0..(i + 1) * n],
                        coef,
                        &y[r * n + c0..(r + 1) * n],
                    );
                }
            }
        }
    }
}

#[inline(always)]
fn axpy(out: &mut [f64], a: f64, x: &[f64]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// Dot product with eight independent accumulators (vectorises; fixed summation order).
#[inline(always)]
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
