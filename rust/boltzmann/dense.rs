//! Dense float64 kernels of training and mean-field inference.
//!
//! Large products go through `ndarray` (matrixmultiply GEMM, runtime AVX/FMA dispatch), split into
//! fixed row blocks run by rayon; small ones (minibatches of a few rows, gradient steps of few
//! samples) use two register-blocked kernels without GEMM packing: `small_gemm` (`c += a·b`, also
//! for the transposed `a` of gradient outer products) and `small_abt` (`c += a·bᵀ`, dot products
//! of rows). Row blocks are fixed, so results do not depend on the number of threads.

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
        self.view().row(r)
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

    /// The whole matrix as a borrowed view.
    #[inline]
    pub fn view(&self) -> MatRef<'_> {
        MatRef::new(self.rows, self.cols, &self.data)
    }
}

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
    sigmoid_slice(&mut m.data);
}

/// [`sigmoid`] of every value, in place (four at a time with fused multiply-adds where the CPU
/// has AVX2 and FMA).
#[inline(always)]
pub fn sigmoid_slice(values: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if fma::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { fma::sigmoid_slice(values) };
    }
    values.iter_mut().for_each(|v| *v = sigmoid(*v));
}

/// Asks the CPU to bring `values` into the cache ahead of use (a hint: no effect on results).
#[inline(always)]
pub fn prefetch(values: &[f64]) {
    #[cfg(target_arch = "x86_64")]
    for line in values
        .chunks(8)
        .chain(values.last().map(std::slice::from_ref))
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch has no side effects, and the address lies in a live slice.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// Rows per block of the threaded GEMM paths.
const BLOCK_ROWS: usize = 128;
/// Up to this many rows, affine maps use the register-blocked kernels (GEMM packing of the whole
/// weight matrix does not pay off).
const SMALL_ROWS: usize = 16;
/// Gradient outer products go through GEMM from this many rows on.
const OUTER_GEMM_ROWS: usize = 64;
/// Work (multiply-adds) from which gradient outer products are split over threads.
const PARALLEL_WORK: usize = 1 << 22;

/// A borrowed row-major matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [f64],
}

impl<'a> MatRef<'a> {
    #[inline]
    pub fn new(rows: usize, cols: usize, data: &'a [f64]) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Self { rows, cols, data }
    }

    #[inline]
    pub fn row(self, r: usize) -> &'a [f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Column means.
    pub fn column_means(self) -> Vec<f64> {
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

    fn ndarray(self) -> ArrayView2<'a, f64> {
        // `rows * cols == data.len()` by construction; an empty view is the (unreachable) fallback.
        ArrayView2::from_shape((self.rows, self.cols), self.data)
            .unwrap_or_else(|_| ArrayView2::from(&[] as &[[f64; 0]]))
    }

    /// The transpose as a new row-major matrix.
    fn transpose(self) -> Vec<f64> {
        let mut out = vec![0.0; self.data.len()];
        transpose_into(&mut out, self);
        out
    }
}

/// `out` (`m.cols × m.rows`, row-major) `= mᵀ`: 4×4 tiles through registers, then the edges.
#[inline(always)]
pub fn transpose_into(out: &mut [f64], m: MatRef) {
    const T: usize = 4;
    let (rows, cols) = (m.rows, m.cols);
    let (rows_t, cols_t) = (rows / T * T, cols / T * T);
    for i0 in (0..rows_t).step_by(T) {
        for j0 in (0..cols_t).step_by(T) {
            let mut tile = [[0.0; T]; T];
            for (t, row) in tile.iter_mut().enumerate() {
                row.copy_from_slice(&m.data[(i0 + t) * cols + j0..][..T]);
            }
            for t in 0..T {
                let dst = &mut out[(j0 + t) * rows + i0..][..T];
                for (d, row) in dst.iter_mut().zip(&tile) {
                    *d = row[t];
                }
            }
        }
    }
    for i in 0..rows {
        let first = if i < rows_t { cols_t } else { 0 };
        for j in first..cols {
            out[j * rows + i] = m.data[i * cols + j];
        }
    }
}

/// Where element `(r, c)` of a matrix lies in its slice: `r * row + c * col`.
#[derive(Clone, Copy, Debug)]
struct Layout {
    row: usize,
    col: usize,
}

impl Layout {
    fn row_major(cols: usize) -> Self {
        Self { row: cols, col: 1 }
    }

    /// The transpose of a row-major matrix with `cols` columns, read in place.
    fn transposed(cols: usize) -> Self {
        Self { row: 1, col: cols }
    }

    #[inline(always)]
    fn at(self, r: usize, c: usize) -> usize {
        r * self.row + c * self.col
    }
}

/// `factor * (x · w + bias)` with `x` (b×k), `w` (k×n, row-major), `bias` (n).
#[inline(always)]
pub fn affine_up(x: &Mat, w: &[f64], n: usize, bias: &[f64], factor: f64) -> Mat {
    let mut out = Mat::zeros(x.rows, n);
    affine_up_into(
        &mut out.data,
        x.view(),
        MatRef::new(x.cols, n, w),
        bias,
        factor,
    );
    out
}

/// `out = factor * (x · w + bias)` with `x` (b×k), `w` (k×n), `bias` (n), `out` (b×n).
#[inline(always)]
pub fn affine_up_into(out: &mut [f64], x: MatRef, w: MatRef, bias: &[f64], factor: f64) {
    fill_rows(out, bias);
    let b = x.rows;
    if b * x.cols * w.cols == 0 {
    } else if b <= BLOCK_ROWS && is_sparse_binary(x.data) {
        if !fma_add_product(out, x, w, FmaProduct::ActiveRows) {
            add_active_rows(out, x, w);
        }
    } else if b <= SMALL_ROWS {
        if !fma_add_product(out, x, w, FmaProduct::Dense) {
            let layout = Layout::row_major(x.cols);
            SmallGemm::new(x.data, layout, b, w).add_to(out, None, 1.0);
        }
    } else {
        gemm_row_blocks(out, x, w.ndarray());
    }
    scale(out, factor);
}

/// `factor * (h · wᵀ + bias)` with `h` (b×n), `w` (k×n, row-major), `bias` (k).
#[inline(always)]
pub fn affine_down(h: &Mat, w: &[f64], k: usize, bias: &[f64], factor: f64) -> Mat {
    let mut out = Mat::zeros(h.rows, k);
    affine_down_into(
        &mut out.data,
        h.view(),
        MatRef::new(k, h.cols, w),
        bias,
        factor,
    );
    out
}

/// `out = factor * (h · wᵀ + bias)` with `h` (b×n), `w` (k×n), `bias` (k), `out` (b×k).
#[inline(always)]
pub fn affine_down_into(out: &mut [f64], h: MatRef, w: MatRef, bias: &[f64], factor: f64) {
    fill_rows(out, bias);
    let b = h.rows;
    if b * h.cols * w.rows == 0 {
    } else if b == 1 {
        for (o, wr) in out.iter_mut().zip(w.data.chunks_exact(w.cols)) {
            *o += dot(h.data, wr);
        }
    } else if b <= SMALL_ROWS {
        // outᵀ (k×b) = w (k×n) · hᵀ (n×b).
        let ht = h.transpose();
        let mut out_t = vec![0.0; w.rows * b];
        SmallGemm::new(
            w.data,
            Layout::row_major(w.cols),
            w.rows,
            MatRef::new(h.cols, b, &ht),
        )
        .add_to(&mut out_t, None, 1.0);
        for (i, row) in out_t.chunks_exact(b).enumerate() {
            for (r, v) in row.iter().enumerate() {
                out[r * w.rows + i] += v;
            }
        }
    } else {
        gemm_row_blocks(out, h, w.ndarray().reversed_axes());
    }
    scale(out, factor);
}

/// Every row of `out` set to `bias`.
#[inline(always)]
fn fill_rows(out: &mut [f64], bias: &[f64]) {
    if !bias.is_empty() {
        for row in out.chunks_exact_mut(bias.len()) {
            row.copy_from_slice(bias);
        }
    }
}

#[inline(always)]
fn scale(values: &mut [f64], factor: f64) {
    if factor != 1.0 {
        values.iter_mut().for_each(|v| *v *= factor);
    }
}

/// `w += alpha · xᵀ y` with `x` (b×k), `y` (b×n), `w` (k×n): the sum of the outer products of
/// the rows.
#[inline(always)]
pub fn add_outer(w: &mut [f64], alpha: f64, x: MatRef, y: MatRef) {
    let (b, k, n) = (x.rows, x.cols, y.cols);
    if b * k * n == 0 {
    } else if b < OUTER_GEMM_ROWS {
        if !fma_add_outer(w, None, alpha, x, y) {
            let layout = Layout::transposed(k);
            SmallGemm::new(x.data, layout, k, y).add_to(w, None, alpha);
        }
    } else if b * k * n < PARALLEL_WORK {
        gemm_acc(w, alpha, x.ndarray().reversed_axes(), y.ndarray());
    } else {
        let block = 64usize;
        let (xv, yv) = (x.ndarray(), y.ndarray());
        w.par_chunks_mut(block * n).enumerate().for_each(|(i, wb)| {
            let rows = wb.len() / n;
            let xs = xv.slice(ndarray::s![.., i * block..i * block + rows]);
            gemm_acc(wb, alpha, xs.t(), yv);
        });
    }
}

/// [`add_outer`] that keeps `wt` (n×k) equal to `wᵀ`: the small-batch kernel writes every updated
/// block of `w` to both; larger batches transpose afterwards.
#[inline(always)]
pub fn add_outer_mirrored(w: &mut [f64], wt: &mut [f64], alpha: f64, x: MatRef, y: MatRef) {
    let (b, k, n) = (x.rows, x.cols, y.cols);
    if b < OUTER_GEMM_ROWS && b * k * n > 0 {
        if !fma_add_outer(w, Some(&mut *wt), alpha, x, y) {
            let layout = Layout::transposed(k);
            SmallGemm::new(x.data, layout, k, y).add_to(w, Some(wt), alpha);
        }
    } else {
        add_outer(w, alpha, x, y);
        transpose_into(wt, MatRef::new(k, n, w));
    }
}

/// `w += alpha · xᵀ y` (and `wt = wᵀ` when given) through the AVX2+FMA kernel; `false` (nothing
/// done) where the CPU lacks AVX2 or FMA or the shapes do not match.
#[inline(always)]
fn fma_add_outer(w: &mut [f64], wt: Option<&mut [f64]>, alpha: f64, x: MatRef, y: MatRef) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let (b, k, n) = (x.rows, x.cols, y.cols);
        let shapes = y.rows == b
            && x.data.len() == b * k
            && y.data.len() == b * n
            && w.len() == k * n
            && wt.as_ref().is_none_or(|wt| wt.len() == k * n);
        if shapes && fma::available() {
            // SAFETY: AVX2 and FMA are available and the slice lengths were checked above.
            unsafe { fma::add_outer(w, wt, alpha, x.data, y.data, (b, k, n)) };
            return true;
        }
    }
    let _ = (w, wt, alpha, x, y);
    false
}

/// The AVX2+FMA kernels for `out += x · w` (see [`fma_add_product`]).
#[derive(Clone, Copy)]
enum FmaProduct {
    /// Register-blocked product of any `x`.
    Dense,
    /// [`add_active_rows`] for binary `x` (same results as the portable version).
    ActiveRows,
}

/// `out += x · w` through the AVX2+FMA `kernel`; `false` (nothing done) where the CPU lacks
/// AVX2 or FMA or the shapes do not match.
#[inline(always)]
fn fma_add_product(out: &mut [f64], x: MatRef, w: MatRef, kernel: FmaProduct) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let (b, k, n) = (x.rows, x.cols, w.cols);
        let shapes =
            w.rows == k && x.data.len() == b * k && w.data.len() == k * n && out.len() == b * n;
        if shapes && fma::available() {
            let (x, w) = (x.data, w.data);
            // SAFETY: AVX2 and FMA are available and the slice lengths were checked above.
            unsafe {
                match kernel {
                    FmaProduct::Dense => fma::add_product(out, x, w, (b, k, n)),
                    FmaProduct::ActiveRows => fma::add_active_rows(out, x, w, (b, k, n)),
                }
            }
            return true;
        }
    }
    let _ = (out, x, w, kernel);
    false
}

/// `out += x · b` through GEMM: in one call up to [`BLOCK_ROWS`] rows of `x`, else in blocks of
/// [`BLOCK_ROWS`] rows over threads (each block's result is the same whatever the thread count).
fn gemm_row_blocks(out: &mut [f64], x: MatRef, b: ArrayView2<'_, f64>) {
    if x.rows <= BLOCK_ROWS {
        gemm_acc(out, 1.0, x.ndarray(), b);
    } else {
        out.par_chunks_mut(BLOCK_ROWS * b.ncols())
            .zip(x.data.par_chunks(BLOCK_ROWS * x.cols))
            .for_each(|(o, xs)| {
                let rows = xs.len() / x.cols;
                gemm_acc(o, 1.0, MatRef::new(rows, x.cols, xs).ndarray(), b);
            });
    }
}

/// `c += alpha · a · b` through GEMM, `c` row-major with the shape of the product.
fn gemm_acc(c: &mut [f64], alpha: f64, a: ArrayView2<'_, f64>, b: ArrayView2<'_, f64>) {
    if let Ok(mut cv) = ArrayViewMut2::from_shape((a.nrows(), b.ncols()), c) {
        general_mat_mul(alpha, &a, &b, 1.0, &mut cv);
    }
}

/// Whether all values are 0 or 1 and at most 60 % are 1 (then skipping zeros beats GEMM).
/// Branch-free (random 0/1 data would defeat branch prediction).
#[inline(always)]
fn is_sparse_binary(values: &[f64]) -> bool {
    let mut ones = 0usize;
    let mut other = false;
    for &v in values {
        ones += usize::from(v == 1.0);
        other |= (v != 0.0) & (v != 1.0);
    }
    !other && ones * 5 <= values.len() * 3
}

/// `out += x · w` for binary `x`: each output row adds the sum of the rows of `w` of its active
/// units, without multiplications. Column strips of 16 (then 8, 4, 1) are summed in registers
/// for one output row after the other, so that a strip of `w` is read from L1 by all rows.
#[inline(always)]
fn add_active_rows(out: &mut [f64], x: MatRef, w: MatRef) {
    let n = w.cols;
    // Offsets in `w` of the active weight rows, row after row of `x`; `ends[r]` closes row `r`.
    // Branch-free compaction: every offset is written, the length only grows for active units.
    let mut starts = vec![0; x.data.len() + 1];
    let mut ends = Vec::with_capacity(x.rows);
    let mut len = 0;
    for xr in x.data.chunks_exact(x.cols) {
        for (i, &v) in xr.iter().enumerate() {
            starts[len] = i * n;
            len += usize::from(v != 0.0);
        }
        ends.push(len);
    }
    let mut c0 = 0;
    while c0 + 16 <= n {
        add_strip::<16>(out, w, &starts, &ends, c0);
        c0 += 16;
    }
    while c0 + 8 <= n {
        add_strip::<8>(out, w, &starts, &ends, c0);
        c0 += 8;
    }
    if c0 + 4 <= n {
        add_strip::<4>(out, w, &starts, &ends, c0);
        c0 += 4;
    }
    for c0 in c0..n {
        add_strip::<1>(out, w, &starts, &ends, c0);
    }
}

/// Columns `c0..c0 + C` of [`add_active_rows`]; two partial sums (even and odd active units)
/// double the independent add chains.
#[inline(always)]
fn add_strip<const C: usize>(
    out: &mut [f64],
    w: MatRef,
    starts: &[usize],
    ends: &[usize],
    c0: usize,
) {
    let mut begin = 0;
    for (o, &end) in out.chunks_exact_mut(w.cols).zip(ends) {
        let mut acc = [[0.0; C]; 2];
        let mut pairs = starts[begin..end].chunks_exact(2);
        for pair in &mut pairs {
            for (acc, &s) in acc.iter_mut().zip(pair) {
                for (a, v) in acc.iter_mut().zip(&w.data[s + c0..s + c0 + C]) {
                    *a += v;
                }
            }
        }
        for &s in pairs.remainder() {
            for (a, v) in acc[0].iter_mut().zip(&w.data[s + c0..s + c0 + C]) {
                *a += v;
            }
        }
        for ((o, a0), a1) in o[c0..c0 + C].iter_mut().zip(acc[0]).zip(acc[1]) {
            *o += a0 + a1;
        }
        begin = end;
    }
}

/// `c += alpha · a · b` without packing, for products with few rows or few terms: `a` (p×s) is
/// read through strides (so a transposed operand costs no copy), `b` (s×q) and `c` (p×q) are
/// row-major. For every block of up to 6 rows, their part of `a` is copied term by term into a
/// small panel; blocks of these rows × 8 columns of `c` (12 AVX2 registers) then accumulate while
/// the `s` rows of `b` stream past, with one broadcast from the panel per row and term. The
/// summation order is fixed; multiply-adds are fused where the CPU has FMA (one rounding), plain
/// elsewhere.
#[derive(Clone, Copy)]
struct SmallGemm<'a> {
    a: &'a [f64],
    a_layout: Layout,
    /// `p`
    rows: usize,
    b: MatRef<'a>,
}

impl<'a> SmallGemm<'a> {
    #[inline(always)]
    fn new(a: &'a [f64], a_layout: Layout, rows: usize, b: MatRef<'a>) -> Self {
        Self {
            a,
            a_layout,
            rows,
            b,
        }
    }

    /// `c += alpha · a · b`; `ct`, when given, receives the updated `cᵀ` (q×p).
    fn add_to(self, c: &mut [f64], ct: Option<&mut [f64]>, alpha: f64) {
        #[cfg(target_arch = "x86_64")]
        {
            // Separate copies with and without the mirror keep each one lean.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fused(gemm: SmallGemm, c: &mut [f64], alpha: f64) {
                gemm.add_all::<true>(c, None, alpha);
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fused_mirrored(gemm: SmallGemm, c: &mut [f64], ct: &mut [f64], alpha: f64) {
                gemm.add_all::<true>(c, Some(ct), alpha);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                return unsafe {
                    match ct {
                        Some(ct) => fused_mirrored(self, c, ct, alpha),
                        None => fused(self, c, alpha),
                    }
                };
            }
        }
        self.add_all::<false>(c, ct, alpha);
    }

    #[inline(always)]
    fn add_all<const FUSED: bool>(self, c: &mut [f64], ct: Option<&mut [f64]>, alpha: f64) {
        let q = self.b.cols;
        // With a mirror, blocks of 4 rows (each column of a block is one 4-wide store into
        // `ct`), then single rows; otherwise blocks of 6 rows.
        let block = if ct.is_some() { 4 } else { 6 };
        let mut panel = vec![0.0; block * self.b.rows];
        let mut ct = ct;
        let mut r0 = 0;
        while r0 < self.rows {
            let left = self.rows - r0;
            let rows = if left >= block || ct.is_none() {
                left.min(block)
            } else {
                1
            };
            let panel = &mut panel[..rows * self.b.rows];
            if self.a_layout.row == 1 {
                // A transposed `a`: the `rows` values of a term are adjacent (copies of a fixed
                // length for full blocks, which compile to moves rather than `memcpy` calls).
                match rows {
                    4 => self.copy_adjacent::<4>(panel, r0),
                    6 => self.copy_adjacent::<6>(panel, r0),
                    _ => {
                        for (l, p) in panel.chunks_exact_mut(rows).enumerate() {
                            for (r, p) in p.iter_mut().enumerate() {
                                *p = self.a[l * self.a_layout.col + r0 + r];
                            }
                        }
                    }
                }
            } else {
                for (l, p) in panel.chunks_exact_mut(rows).enumerate() {
                    for (r, p) in p.iter_mut().enumerate() {
                        *p = self.a[self.a_layout.at(r0 + r, l)];
                    }
                }
            }
            let c = &mut c[r0 * q..(r0 + rows) * q];
            match ct.as_deref_mut() {
                Some(ct) => {
                    let m = Some(Mirror {
                        ct,
                        first: r0,
                        stride: self.rows,
                    });
                    match rows {
                        4 => self.add_rows::<4, 8, FUSED>(c, panel, alpha, m),
                        _ => self.add_rows::<1, 32, FUSED>(c, panel, alpha, m),
                    }
                }
                // A literal `None` lets these kernels drop the mirror code.
                None => match rows {
                    1 => self.add_rows::<1, 32, FUSED>(c, panel, alpha, None),
                    2 => self.add_rows::<2, 16, FUSED>(c, panel, alpha, None),
                    3 => self.add_rows::<3, 8, FUSED>(c, panel, alpha, None),
                    4 => self.add_rows::<4, 8, FUSED>(c, panel, alpha, None),
                    5 => self.add_rows::<5, 8, FUSED>(c, panel, alpha, None),
                    _ => self.add_rows::<6, 8, FUSED>(c, panel, alpha, None),
                },
            }
            r0 += rows;
        }
    }

    /// Panel of a transposed `a` for rows `r0..r0 + R`.
    #[inline(always)]
    fn copy_adjacent<const R: usize>(self, panel: &mut [f64], r0: usize) {
        for (l, p) in panel.chunks_exact_mut(R).enumerate() {
            p.copy_from_slice(&self.a[l * self.a_layout.col + r0..][..R]);
        }
    }

    /// `R` rows of `c` from their panel (`R` values of `a` per term), in column blocks of `C` (at
    /// least 8 independent accumulator chains, so that latency does not limit few rows), then of
    /// 8, 4, 2 and 1.
    #[inline(always)]
    fn add_rows<const R: usize, const C: usize, const FUSED: bool>(
        self,
        c: &mut [f64],
        panel: &[f64],
        alpha: f64,
        mut mirror: Option<Mirror>,
    ) {
        let q = self.b.cols;
        let mut c0 = 0;
        while c0 + C <= q {
            self.add_block::<R, C, FUSED>(c, panel, c0, alpha, mirror.as_mut());
            c0 += C;
        }
        while c0 + 8 <= q {
            self.add_block::<R, 8, FUSED>(c, panel, c0, alpha, mirror.as_mut());
            c0 += 8;
        }
        if c0 + 4 <= q {
            self.add_block::<R, 4, FUSED>(c, panel, c0, alpha, mirror.as_mut());
            c0 += 4;
        }
        if c0 + 2 <= q {
            self.add_block::<R, 2, FUSED>(c, panel, c0, alpha, mirror.as_mut());
            c0 += 2;
        }
        if c0 < q {
            self.add_block::<R, 1, FUSED>(c, panel, c0, alpha, mirror.as_mut());
        }
    }

    /// Columns `c0..c0 + C` of the `R` rows, accumulated in registers over all terms; the updated
    /// values also go to the mirror, column by column (`R` adjacent values of `cᵀ` each).
    #[inline(always)]
    fn add_block<const R: usize, const C: usize, const FUSED: bool>(
        self,
        c: &mut [f64],
        panel: &[f64],
        c0: usize,
        alpha: f64,
        mirror: Option<&mut Mirror>,
    ) {
        let mut acc = [[0.0; C]; R];
        for (a, b_row) in panel
            .chunks_exact(R)
            .zip(self.b.data.chunks_exact(self.b.cols))
        {
            let b_row = &b_row[c0..c0 + C];
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = a[r];
                for (v, &y) in acc.iter_mut().zip(b_row) {
                    *v = if FUSED { x.mul_add(y, *v) } else { *v + x * y };
                }
            }
        }
        // Constant trip counts over the accumulators keep them in registers.
        let q = self.b.cols;
        for (r, acc) in acc.iter().enumerate() {
            let c_row = &mut c[r * q + c0..][..C];
            c_row.iter_mut().zip(acc).for_each(|(c, v)| *c += alpha * v);
        }
        if let Some(m) = mirror {
            #[cfg(target_arch = "x86_64")]
            if FUSED && R == 4 && C.is_multiple_of(4) {
                for j in (0..C).step_by(4) {
                    let src = &c[c0 + j..][..3 * q + 4];
                    let dst = &mut m.ct[(c0 + j) * m.stride + m.first..][..3 * m.stride + 4];
                    // SAFETY: `FUSED` kernels only run where the CPU has AVX2 and FMA (see
                    // `add_to`); `src` and `dst` hold the 4×4 tiles read and written (their
                    // lengths are checked by the slicing above).
                    unsafe { transpose4x4(src.as_ptr(), q, dst.as_mut_ptr(), m.stride) };
                }
                return;
            }
            for j in 0..C {
                let dst = &mut m.ct[(c0 + j) * m.stride + m.first..][..R];
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = c[r * q + c0 + j];
                }
            }
        }
    }
}

/// `dst[t * dst_stride + r] = src[r * src_stride + t]` for a 4×4 tile, through registers
/// (two rounds of lane shuffles).
///
/// # Safety
/// The CPU must support AVX; `s` must point to `3 * src_stride + 4` readable values and `d` to
/// `3 * dst_stride + 4` writable ones.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose4x4(s: *const f64, src_stride: usize, d: *mut f64, dst_stride: usize) {
    use std::arch::x86_64::*;
    let r0 = _mm256_loadu_pd(s);
    let r1 = _mm256_loadu_pd(s.add(src_stride));
    let r2 = _mm256_loadu_pd(s.add(2 * src_stride));
    let r3 = _mm256_loadu_pd(s.add(3 * src_stride));
    // (r0[0] r1[0] r0[2] r1[2]), (r0[1] r1[1] r0[3] r1[3]), likewise for r2, r3.
    let t0 = _mm256_unpacklo_pd(r0, r1);
    let t1 = _mm256_unpackhi_pd(r0, r1);
    let t2 = _mm256_unpacklo_pd(r2, r3);
    let t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(d, _mm256_permute2f128_pd::<0x20>(t0, t2));
    _mm256_storeu_pd(d.add(dst_stride), _mm256_permute2f128_pd::<0x20>(t1, t3));
    _mm256_storeu_pd(
        d.add(2 * dst_stride),
        _mm256_permute2f128_pd::<0x31>(t0, t2),
    );
    _mm256_storeu_pd(
        d.add(3 * dst_stride),
        _mm256_permute2f128_pd::<0x31>(t1, t3),
    );
}

/// Where [`SmallGemm`] writes `cᵀ`: row `j` of `ct` holds column `j` of `c`, whose rows start
/// at `first` (`stride` = rows of `c`).
struct Mirror<'a> {
    ct: &'a mut [f64],
    first: usize,
    stride: usize,
}

/// Dot product with eight independent accumulators, two four-lane vectors (fixed summation
/// order).
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lo = [0.0f64; 4];
    let mut hi = [0.0f64; 4];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            lo[l] += x[l] * y[l];
            hi[l] += x[l + 4] * y[l + 4];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    // Halves of the vector added lane-wise (cheap horizontal reduction).
    let s: [f64; 4] = std::array::from_fn(|l| lo[l] + hi[l]);
    (s[0] + s[2]) + (s[1] + s[3]) + tail
}

/// Register-blocked AVX2+FMA kernels for products with few rows, without panels: every
/// accumulator starts from the value in the output and takes the terms one after the other with a
/// fused multiply-add (the order of the naive loop), columns in chunks of a few four-lane
/// vectors (split evenly), the last `cols % 4` columns one by one.
#[cfg(target_arch = "x86_64")]
mod fma {
    use std::arch::x86_64::*;

    /// Whether the CPU runs these kernels (AVX2 and FMA).
    #[inline]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// Most vectors per column chunk of [`add_outer`] (13 accumulators and two broadcasts).
    const OUTER_VECTORS: usize = 13;
    /// Most rows per block of [`add_product`] (10 accumulators of 2 vectors).
    const PRODUCT_ROWS: usize = 5;

    /// Column chunks of at most `most` vectors covering `vectors` vectors, as even as possible:
    /// `(first vector, vectors)`.
    #[inline(always)]
    fn chunks(vectors: usize, most: usize) -> impl Iterator<Item = (usize, usize)> {
        let count = vectors.div_ceil(most);
        (0..count).map(move |c| {
            let start = c * vectors / count;
            (start, (c + 1) * vectors / count - start)
        })
    }

    /// `w += alpha · xᵀ y` (`x` b×k, `y` b×n, `w` k×n, all row-major) row after row of `w`, the
    /// terms in the order of the rows of `x`, skipping those whose value of `x` is zero (they add
    /// exactly zero for finite `y`; binary data rows are about half zeros); `wt` (n×k), when
    /// given, receives `wᵀ` of every updated strip of 4 rows (4×4 tiles through registers).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `w` and `wt` must hold `k·n`, `x` `b·k` and `y` `b·n`
    /// values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_outer(
        w: &mut [f64],
        mut wt: Option<&mut [f64]>,
        alpha: f64,
        x: &[f64],
        y: &[f64],
        (b, k, n): (usize, usize, usize),
    ) {
        let (wp, xp, yp) = (w.as_mut_ptr(), x.as_ptr(), y.as_ptr());
        // The terms of one row of `w`: coefficients `alpha · x[r, i]` and offsets `r · n` of the
        // rows of `y`, compacted without branches (every term is written, the count only grows
        // for non-zero coefficients).
        let mut coefficients: Vec<f64> = Vec::with_capacity(b);
        let mut offsets: Vec<usize> = Vec::with_capacity(b);
        let (cp, op) = (coefficients.as_mut_ptr(), offsets.as_mut_ptr());
        let full = n / 4 * 4;
        for i in 0..k {
            let mut terms = 0;
            for r in 0..b {
                let c = *xp.add(r * k + i);
                cp.add(terms).write(alpha * c);
                op.add(terms).write(r * n);
                terms += usize::from(c != 0.0);
            }
            let row = wp.add(i * n);
            for (v0, v) in chunks(n / 4, OUTER_VECTORS) {
                outer_chunk_dispatch(v, row.add(4 * v0), cp, op, terms, yp.add(4 * v0));
            }
            for j in full..n {
                let mut acc = *row.add(j);
                for t in 0..terms {
                    acc = (*cp.add(t)).mul_add(*yp.add(*op.add(t) + j), acc);
                }
                *row.add(j) = acc;
            }
            if let Some(wt) = wt.as_deref_mut() {
                let tp = wt.as_mut_ptr();
                if i % 4 == 3 {
                    let i0 = i - 3;
                    for j0 in (0..full).step_by(4) {
                        super::transpose4x4(wp.add(i0 * n + j0), n, tp.add(j0 * k + i0), k);
                    }
                    for j in full..n {
                        for t in i0..=i {
                            *tp.add(j * k + t) = *wp.add(t * n + j);
                        }
                    }
                } else if i + 1 == k {
                    for t in k / 4 * 4..k {
                        for j in 0..n {
                            *tp.add(j * k + t) = *wp.add(t * n + j);
                        }
                    }
                }
            }
        }
    }

    /// [`outer_chunk`] for `v` vectors.
    #[inline(always)]
    unsafe fn outer_chunk_dispatch(
        v: usize,
        w: *mut f64,
        coefficients: *const f64,
        offsets: *const usize,
        terms: usize,
        y: *const f64,
    ) {
        macro_rules! run {
            ($($v:literal)*) => {
                match v {
                    $($v => outer_chunk::<$v>(w, coefficients, offsets, terms, y),)*
                    _ => outer_chunk::<OUTER_VECTORS>(w, coefficients, offsets, terms, y),
                }
            };
        }
        run!(1 2 3 4 5 6 7 8 9 10 11 12)
    }

    /// `V` vectors of one row of `w` plus `Σ_t coefficients[t] · y[offsets[t] ..]`, two terms
    /// per round.
    #[inline(always)]
    unsafe fn outer_chunk<const V: usize>(
        w: *mut f64,
        coefficients: *const f64,
        offsets: *const usize,
        terms: usize,
        y: *const f64,
    ) {
        let mut acc = [_mm256_setzero_pd(); V];
        for (v, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_pd(w.add(4 * v));
        }
        let mut t = 0;
        while t + 2 <= terms {
            let (c0, c1) = (
                _mm256_broadcast_sd(&*coefficients.add(t)),
                _mm256_broadcast_sd(&*coefficients.add(t + 1)),
            );
            let (y0, y1) = (y.add(*offsets.add(t)), y.add(*offsets.add(t + 1)));
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_pd(c0, _mm256_loadu_pd(y0.add(4 * v)), *a);
                *a = _mm256_fmadd_pd(c1, _mm256_loadu_pd(y1.add(4 * v)), *a);
            }
            t += 2;
        }
        if t < terms {
            let (c, y0) = (
                _mm256_broadcast_sd(&*coefficients.add(t)),
                y.add(*offsets.add(t)),
            );
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_pd(c, _mm256_loadu_pd(y0.add(4 * v)), *a);
            }
        }
        for (v, a) in acc.iter().enumerate() {
            _mm256_storeu_pd(w.add(4 * v), *a);
        }
    }

    /// `out += x · w` (`x` b×k, `w` k×n, `out` b×n, row-major), in column strips of 2 vectors
    /// (then 1) with blocks of up to [`PRODUCT_ROWS`] rows each, the terms in the order of the
    /// rows of `w`. A strip of `w` (2 vectors × `k` rows) stays in L1 for all row blocks.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `out` must hold `b·n`, `x` `b·k` and `w` `k·n` values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_product(
        out: &mut [f64],
        x: &[f64],
        w: &[f64],
        (b, k, n): (usize, usize, usize),
    ) {
        let (op, xp, wp) = (out.as_mut_ptr(), x.as_ptr(), w.as_ptr());
        // Per block of rows `r0..r0 + rows`, a panel at `r0·k` holding their `rows` values of
        // each term next to each other.
        let mut panel: Vec<f64> = Vec::with_capacity(b * k);
        let pp = panel.as_mut_ptr();
        let mut r0 = 0;
        while r0 < b {
            let rows = (b - r0).min(PRODUCT_ROWS);
            for i in 0..k {
                for r in 0..rows {
                    pp.add(r0 * k + i * rows + r)
                        .write(*xp.add((r0 + r) * k + i));
                }
            }
            r0 += rows;
        }
        let full = n / 4 * 4;
        let mut c0 = 0;
        while c0 < full {
            let v = if c0 + 8 <= full { 2 } else { 1 };
            let mut r0 = 0;
            while r0 < b {
                let rows = (b - r0).min(PRODUCT_ROWS);
                let (o, x, w) = (op.add(r0 * n + c0), pp.add(r0 * k), wp.add(c0));
                macro_rules! run {
                    ($($r:literal)*) => {
                        match (rows, v) {
                            $(($r, 1) => product_block::<$r, 1>(o, x, w, k, n),)*
                            $(($r, _) => product_block::<$r, 2>(o, x, w, k, n),)*
                            (_, 1) => product_block::<PRODUCT_ROWS, 1>(o, x, w, k, n),
                            (_, _) => product_block::<PRODUCT_ROWS, 2>(o, x, w, k, n),
                        }
                    };
                }
                run!(1 2 3 4);
                r0 += rows;
            }
            c0 += 4 * v;
        }
        for r in 0..b {
            for j in full..n {
                let mut acc = *op.add(r * n + j);
                for i in 0..k {
                    acc = (*xp.add(r * k + i)).mul_add(*wp.add(i * n + j), acc);
                }
                *op.add(r * n + j) = acc;
            }
        }
    }

    /// `R` rows × `V` vectors of `out` (row stride `n`) plus `x · w` over `k` terms (`x` the
    /// panel of the `R` rows, `w` row stride `n`).
    #[inline(always)]
    unsafe fn product_block<const R: usize, const V: usize>(
        out: *mut f64,
        x: *const f64,
        w: *const f64,
        k: usize,
        n: usize,
    ) {
        let mut acc = [[_mm256_setzero_pd(); V]; R];
        for (r, acc) in acc.iter_mut().enumerate() {
            for (v, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_pd(out.add(r * n + 4 * v));
            }
        }
        let mut w = w;
        for i in 0..k {
            let mut wv = [_mm256_setzero_pd(); V];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = _mm256_loadu_pd(w.add(4 * v));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let c = _mm256_broadcast_sd(&*x.add(i * R + r));
                for (a, wv) in acc.iter_mut().zip(wv) {
                    *a = _mm256_fmadd_pd(c, wv, *a);
                }
            }
            w = w.add(n);
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, a) in acc.iter().enumerate() {
                _mm256_storeu_pd(out.add(r * n + 4 * v), *a);
            }
        }
    }

    /// `out += x · w` for binary `x` (`x` b×k, `w` k×n, `out` b×n, row-major): the sums of the
    /// rows of `w` of the active units, in the order and column strips of the portable
    /// [`super::add_active_rows`] (same results), without bounds checks.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `out` must hold `b·n`, `x` `b·k` and `w` `k·n` values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_active_rows(
        out: &mut [f64],
        x: &[f64],
        w: &[f64],
        (b, k, n): (usize, usize, usize),
    ) {
        // Offsets in `w` of the active weight rows, row after row of `x`; `ends[r]` closes row
        // `r`. Every offset is written (at most `b·k`), the length only grows for active units.
        let mut starts: Vec<usize> = Vec::with_capacity(b * k);
        let mut ends = Vec::with_capacity(b);
        let (sp, xp) = (starts.as_mut_ptr(), x.as_ptr());
        let mut len = 0;
        for r in 0..b {
            let xr = xp.add(r * k);
            for i in 0..k {
                sp.add(len).write(i * n);
                len += usize::from(*xr.add(i) != 0.0);
            }
            ends.push(len);
        }
        let (op, wp) = (out.as_mut_ptr(), w.as_ptr());
        let mut c0 = 0;
        while c0 + 16 <= n {
            active_strip::<4>(op.add(c0), n, wp.add(c0), sp, &ends);
            c0 += 16;
        }
        while c0 + 8 <= n {
            active_strip::<2>(op.add(c0), n, wp.add(c0), sp, &ends);
            c0 += 8;
        }
        if c0 + 4 <= n {
            active_strip::<1>(op.add(c0), n, wp.add(c0), sp, &ends);
            c0 += 4;
        }
        for c0 in c0..n {
            let mut begin = 0;
            for (r, &end) in ends.iter().enumerate() {
                let (mut a0, mut a1) = (0.0, 0.0);
                let mut t = begin;
                while t + 2 <= end {
                    a0 += *wp.add(*sp.add(t) + c0);
                    a1 += *wp.add(*sp.add(t + 1) + c0);
                    t += 2;
                }
                if t < end {
                    a0 += *wp.add(*sp.add(t) + c0);
                }
                *op.add(r * n + c0) += a0 + a1;
                begin = end;
            }
        }
    }

    /// `4V` columns of [`add_active_rows`] (`out` and `w` start at the strip); two partial sums
    /// (even and odd active units) double the independent add chains.
    #[inline(always)]
    unsafe fn active_strip<const V: usize>(
        out: *mut f64,
        n: usize,
        w: *const f64,
        starts: *const usize,
        ends: &[usize],
    ) {
        let mut begin = 0;
        for (r, &end) in ends.iter().enumerate() {
            let mut a0 = [_mm256_setzero_pd(); V];
            let mut a1 = [_mm256_setzero_pd(); V];
            let mut t = begin;
            while t + 2 <= end {
                let (s0, s1) = (w.add(*starts.add(t)), w.add(*starts.add(t + 1)));
                for v in 0..V {
                    a0[v] = _mm256_add_pd(a0[v], _mm256_loadu_pd(s0.add(4 * v)));
                    a1[v] = _mm256_add_pd(a1[v], _mm256_loadu_pd(s1.add(4 * v)));
                }
                t += 2;
            }
            if t < end {
                let s0 = w.add(*starts.add(t));
                for (v, a) in a0.iter_mut().enumerate() {
                    *a = _mm256_add_pd(*a, _mm256_loadu_pd(s0.add(4 * v)));
                }
            }
            let o = out.add(r * n);
            for v in 0..V {
                let sum = _mm256_add_pd(a0[v], a1[v]);
                _mm256_storeu_pd(
                    o.add(4 * v),
                    _mm256_add_pd(_mm256_loadu_pd(o.add(4 * v)), sum),
                );
            }
            begin = end;
        }
    }

    /// [`super::sigmoid`] of every value, four at a time: the same range reduction and
    /// degree-12 polynomial as [`super::exp_f64`], with fused multiply-adds (one rounding each).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sigmoid_slice(values: &mut [f64]) {
        let mut quads = values.chunks_exact_mut(4);
        for q in &mut quads {
            let p = q.as_mut_ptr();
            _mm256_storeu_pd(p, sigmoid4(_mm256_loadu_pd(p)));
        }
        let tail = quads.into_remainder();
        if !tail.is_empty() {
            // The last values through the same lanes (padded with zeros).
            let mut quad = [0.0; 4];
            quad[..tail.len()].copy_from_slice(tail);
            _mm256_storeu_pd(quad.as_mut_ptr(), sigmoid4(_mm256_loadu_pd(quad.as_ptr())));
            tail.copy_from_slice(&quad[..tail.len()]);
        }
    }

    /// `1 / (1 + exp(-x))` of four values.
    #[inline(always)]
    unsafe fn sigmoid4(x: __m256d) -> __m256d {
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        const LN2_HI: f64 = 0.693_147_180_369_123_8;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        const COEFFICIENTS: [f64; 12] = [
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ];
        let one = _mm256_set1_pd(1.0);
        let x = _mm256_sub_pd(_mm256_setzero_pd(), x);
        // max/min return their second operand when one is NaN: the constant first keeps NaN
        let x = _mm256_min_pd(
            _mm256_set1_pd(709.0),
            _mm256_max_pd(_mm256_set1_pd(-708.0), x),
        );
        let shifted = _mm256_fmadd_pd(
            x,
            _mm256_set1_pd(std::f64::consts::LOG2_E),
            _mm256_set1_pd(MAGIC),
        );
        let n = _mm256_sub_pd(shifted, _mm256_set1_pd(MAGIC));
        // 2^n: the integer n sits in the low bits of `shifted`.
        let bias = 1023i64.wrapping_sub(MAGIC.to_bits() as i64);
        let scale = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_add_epi64(
            _mm256_castpd_si256(shifted),
            _mm256_set1_epi64x(bias),
        )));
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_HI), x);
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_LO), r);
        let mut p = _mm256_set1_pd(1.0 / 479_001_600.0);
        for c in COEFFICIENTS {
            p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c));
        }
        _mm256_div_pd(one, _mm256_fmadd_pd(p, scale, one))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Random `rows × cols` values: 0/1 with `binary` (sparse enough for the active-row path),
    /// else uniform in [-1, 1].
    fn random(rows: usize, cols: usize, binary: bool, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..rows * cols)
            .map(|_| match binary {
                true => f64::from(u8::from(rng.random::<f64>() < 0.4)),
                false => rng.random::<f64>() * 2.0 - 1.0,
            })
            .collect()
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "{what}: {g} vs {w}"
            );
        }
    }

    /// The vectorised sigmoid (and its tail of fewer than four values) against `1 / (1 + exp(-x))`
    /// from libm over the clamped range, against the scalar [`sigmoid`] beyond (up to subnormals).
    #[test]
    fn sigmoid_slice_is_accurate() {
        let xs: Vec<f64> = (-150_001..=150_001)
            .map(|i| f64::from(i) * 0.005_123)
            .collect();
        for len in [xs.len(), 1, 2, 3, 5, 7] {
            let mut got = xs[..len].to_vec();
            sigmoid_slice(&mut got);
            for (&x, &g) in xs.iter().zip(&got) {
                // beyond ±708 the input is clamped, as in the scalar `sigmoid`
                let want = match x.abs() <= 708.0 {
                    true => 1.0 / (1.0 + (-x).exp()),
                    false => sigmoid(x),
                };
                let tolerance = 3e-15 * want + f64::MIN_POSITIVE;
                assert!(
                    (g - want).abs() <= tolerance,
                    "sigmoid({x}) = {g} vs {want}"
                );
                assert_eq!(g, sigmoid_slice_one(x), "sigmoid({x}) of a slice and alone");
            }
        }
        // non-finite inputs as the scalar sigmoid: NaN stays NaN (also in a full vector of four)
        let mut special = vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, f64::NAN];
        sigmoid_slice(&mut special);
        assert!(special[0].is_nan() && special[4].is_nan(), "{special:?}");
        assert_eq!(
            &special[1..4],
            &[sigmoid(f64::INFINITY), sigmoid(f64::NEG_INFINITY), 0.5]
        );
    }

    fn sigmoid_slice_one(x: f64) -> f64 {
        let mut one = [x];
        sigmoid_slice(&mut one);
        one[0]
    }

    /// Every fast path of the affine maps and outer-product updates against naive loops, for
    /// row counts around the kernel blocks (1–17, 70, and 300 for the threaded row blocks) and
    /// odd widths.
    #[test]
    fn small_matrix_kernels_match_naive_loops() {
        for (case, (b, k, n)) in [1, 2, 3, 4, 5, 7, 8, 10, 16, 17, 70, 300]
            .into_iter()
            .flat_map(|b| {
                [
                    (b, 1, 1),
                    (b, 5, 3),
                    (b, 13, 17),
                    (b, 65, 33),
                    (b, 31, 102),
                    (b, 9, 24),
                    (b, 7, 40),
                ]
            })
            .enumerate()
        {
            let case = case as u64;
            for binary in [false, true] {
                let x = random(b, k, binary, 3 * case);
                let w = random(k, n, false, 3 * case + 1);
                let bias = random(1, n, false, 3 * case + 2);
                let what = format!("b {b} k {k} n {n} binary {binary}");
                // up: out = 0.5 (x w + bias)
                let mut want = vec![0.0; b * n];
                for r in 0..b {
                    for j in 0..n {
                        let s: f64 = (0..k).map(|i| x[r * k + i] * w[i * n + j]).sum();
                        want[r * n + j] = 0.5 * (s + bias[j]);
                    }
                }
                let mut got = vec![0.0; b * n];
                affine_up_into(
                    &mut got,
                    MatRef::new(b, k, &x),
                    MatRef::new(k, n, &w),
                    &bias,
                    0.5,
                );
                assert_close(&got, &want, &format!("up {what}"));
                // each product kernel of the up map, fast (AVX2+FMA) and portable, on `x w`
                let (xm, wm) = (MatRef::new(b, k, &x), MatRef::new(k, n, &w));
                let unscaled: Vec<f64> = want
                    .iter()
                    .zip(bias.iter().cycle())
                    .map(|(v, c)| 2.0 * v - c)
                    .collect();
                let mut portable = vec![0.0; b * n];
                SmallGemm::new(&x, Layout::row_major(k), b, wm).add_all::<false>(
                    &mut portable,
                    None,
                    1.0,
                );
                assert_close(&portable, &unscaled, &format!("portable product {what}"));
                let mut got = vec![0.0; b * n];
                if fma_add_product(&mut got, xm, wm, FmaProduct::Dense) {
                    assert_close(&got, &unscaled, &format!("fma product {what}"));
                }
                if binary {
                    let mut portable = vec![0.0; b * n];
                    add_active_rows(&mut portable, xm, wm);
                    assert_close(
                        &portable,
                        &unscaled,
                        &format!("portable active rows {what}"),
                    );
                    let mut got = vec![0.0; b * n];
                    if fma_add_product(&mut got, xm, wm, FmaProduct::ActiveRows) {
                        assert_eq!(got, portable, "fma active rows {what}");
                    }
                }
                // down: out = 2 (h wᵀ + bias) with h = x as b×k states and w read as n×k
                let wt = MatRef::new(k, n, &w).transpose();
                let bias_down = &bias[..n.min(bias.len())];
                let mut want = vec![0.0; b * n];
                for r in 0..b {
                    for j in 0..n {
                        let s: f64 = (0..k).map(|i| x[r * k + i] * wt[j * k + i]).sum();
                        want[r * n + j] = 2.0 * (s + bias_down[j]);
                    }
                }
                let mut got = vec![0.0; b * n];
                let w_down = MatRef::new(n, k, &wt);
                affine_down_into(&mut got, MatRef::new(b, k, &x), w_down, bias_down, 2.0);
                assert_close(&got, &want, &format!("down {what}"));
                // outer products: w += α xᵀ y, with and without the transposed mirror
                let y = random(b, n, false, 3 * case + 7);
                let mut want = w.clone();
                for r in 0..b {
                    for i in 0..k {
                        for j in 0..n {
                            want[i * n + j] += 0.3 * x[r * k + i] * y[r * n + j];
                        }
                    }
                }
                let (xm, ym) = (MatRef::new(b, k, &x), MatRef::new(b, n, &y));
                let mut got = w.clone();
                add_outer(&mut got, 0.3, xm, ym);
                assert_close(&got, &want, &format!("outer {what}"));
                let (mut got, mut mirror) = (w.clone(), wt.clone());
                add_outer_mirrored(&mut got, &mut mirror, 0.3, xm, ym);
                assert_close(&got, &want, &format!("mirrored {what}"));
                assert_eq!(mirror, MatRef::new(k, n, &got).transpose(), "mirror {what}");
                // the fast (AVX2+FMA) and portable kernels (what CPUs without AVX2/FMA run)
                // agree too
                let (mut got, mut mirror) = (w.clone(), wt.clone());
                if fma_add_outer(&mut got, Some(&mut mirror), 0.3, xm, ym) {
                    assert_close(&got, &want, &format!("fma outer {what}"));
                    assert_eq!(mirror, MatRef::new(k, n, &got).transpose(), "fma {what}");
                }
                let mut got = w.clone();
                if fma_add_outer(&mut got, None, 1.0, xm, ym) {
                    // α = 1: (want - w) / 0.3 added to w
                    let unit: Vec<f64> = want
                        .iter()
                        .zip(&w)
                        .map(|(a, w)| w + (a - w) / 0.3)
                        .collect();
                    assert_close(&got, &unit, &format!("fma outer α=1 {what}"));
                }
                if b < OUTER_GEMM_ROWS {
                    let (mut got, mut mirror) = (w.clone(), wt.clone());
                    SmallGemm::new(&x, Layout::transposed(k), k, ym).add_all::<false>(
                        &mut got,
                        Some(&mut mirror),
                        0.3,
                    );
                    assert_close(&got, &want, &format!("portable {what}"));
                    assert_eq!(
                        mirror,
                        MatRef::new(k, n, &got).transpose(),
                        "portable {what}"
                    );
                }
            }
        }
    }
}
