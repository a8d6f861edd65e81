//! Stepwise log-linear feature selection (`PatternsByLogLin.bestset`, Hess et al. 2020 §2.5).
//!
//! Every candidate table (U_j, S…, X_i) is binary with 2^(|S|+2) cells. With empty cells
//! replaced by 0.5, the models used here are decomposable, so their fitted values are closed
//! forms of the (0.5-filled) margins and
//!
//! * `[U S][X]`:   G²/2 = Σ n' ln n' − Σ_{u,s} n'(u,s) ln n'(u,s) − Σ_x n'(x) ln n'(x) + N' ln N'
//! * `[U S][S X]`: G²/2 = Σ_s [Σ_{u,x} n' ln n' − Σ_u n'(u,s) ln n'(u,s) − Σ_x n'(s,x) ln n'(s,x)
//!   + n'(s) ln n'(s)]
//! * `[S][X]`:     G²/2 = Σ n' ln n' − Σ_s n'(s) ln n'(s) − Σ_x n'(x) ln n'(x) + N' ln N'
//!
//! where `n'` are the filled counts. Only configurations `s` of the selected features that occur
//! in the data ("occupied strata", at most n) are visited; the cells of the other 2^|S| − m
//! strata are all 0.5 and enter through closed-form constants. All filled counts are
//! half-integers, so every `x ln x` is a table look-up. Counts are accumulated by adding whole
//! rows of a block of features per sample, with the samples sorted by stratum.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::table::xlogx;
use crate::error::{CoreError, CoreResult};

/// Relative tolerance under which a permutation statistic counts as equal to the observed one.
const TIE_TOLERANCE: f64 = 1e-10;

/// Features per parallel task.
const BLOCK: usize = 64;

/// A row-major binary (0/1) matrix.
#[derive(Debug, Clone, Copy)]
pub struct Binary<'a> {
    pub data: &'a [u8],
    pub n: usize,
    pub cols: usize,
}

impl<'a> Binary<'a> {
    /// Wrap `data` (row-major `n × cols`) after checking its length and that every value is 0
    /// or 1 (an error names the first offending row and column of `name`).
    pub fn new(data: &'a [u8], n: usize, cols: usize, name: &str) -> CoreResult<Self> {
        if n.checked_mul(cols) != Some(data.len()) {
            return Err(CoreError::shape(format!(
                "{name} has {} values, expected {n} × {cols}",
                data.len()
            )));
        }
        if let Some(pos) = data.iter().position(|&v| v > 1) {
            let (row, col) = (pos / cols.max(1), pos % cols.max(1));
            return Err(CoreError::invalid(format!(
                "{name} must be binary (0/1), but {name}[{row}, {col}] = {}; dichotomise column \
                 {col} first (e.g. omicsembed.pp.dichotomize)",
                data[pos]
            )));
        }
        Ok(Self { data, n, cols })
    }

    #[inline]
    fn get(&self, row: usize, col: usize) -> u8 {
        self.data[row * self.cols + col]
    }
}

/// Which model a candidate's G² compares with the saturated model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// `[U_j S][X_i]` (Hess et al. 2020; `PatternsByLogLin.bestset`).
    Marginal,
    /// `[U_j S][S X_i]` (the authors' 2022 variant): X_i and U_j conditionally independent
    /// given the selected features.
    Conditional,
}

/// Options of [`select_features`].
#[derive(Debug, Clone, Copy)]
pub struct SelectOptions {
    /// Number of features to select (1 ≤ k ≤ p).
    pub k: usize,
    pub model: Model,
    /// Permutations per selected feature for p-values (0: none).
    pub n_permutations: usize,
    /// Seed of the permutation streams.
    pub seed: u64,
}

/// Result of [`select_features`].
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Selected feature of each step.
    pub selected: Vec<usize>,
    /// Winning latent unit of each step (`None` without latent units).
    pub latent_units: Vec<Option<usize>>,
    /// G² of the winning candidate of each step.
    pub g2: Vec<f64>,
    /// `k × p × r` scores (row-major; `r = 1` without latent units), NaN for features selected
    /// before that step.
    pub scores: Vec<f64>,
    /// Number of score columns per feature (`r`, or 1 without latent units).
    pub r: usize,
    /// Permutation p-value of each step's feature, if permutations were asked for.
    pub p_values: Option<Vec<f64>>,
}

/// Samples grouped by their configuration of the selected features.
#[derive(Debug, Clone)]
struct Strata {
    /// Stratum of every sample (dense, 0..m).
    id: Vec<u32>,
    /// Number of occupied strata.
    m: usize,
    /// Samples sorted by stratum (stable).
    order: Vec<u32>,
    /// `offsets[s]..offsets[s + 1]` is stratum `s` in `order`.
    offsets: Vec<usize>,
}

impl Strata {
    fn whole(n: usize) -> Self {
        Self {
            id: vec![0; n],
            m: 1,
            order: (0..n as u32).collect(),
            offsets: vec![0, n],
        }
    }

    /// Split every stratum by a binary column (new ids in order of (old id, value)).
    fn split(&self, value: impl Fn(usize) -> u8) -> Self {
        let mut counts = vec![0usize; 2 * self.m];
        for (t, &s) in self.id.iter().enumerate() {
            counts[2 * s as usize + value(t) as usize] += 1;
        }
        let mut dense = vec![u32::MAX; 2 * self.m];
        let mut offsets = vec![0usize];
        for (code, &c) in counts.iter().enumerate() {
            if c > 0 {
                dense[code] = (offsets.len() - 1) as u32;
                offsets.push(offsets[offsets.len() - 1] + c);
            }
        }
        let m = offsets.len() - 1;
        let id: Vec<u32> = self
            .id
            .iter()
            .enumerate()
            .map(|(t, &s)| dense[2 * s as usize + value(t) as usize])
            .collect();
        let mut next = offsets[..m].to_vec();
        let mut order = vec![0u32; id.len()];
        for (t, &s) in id.iter().enumerate() {
            order[next[s as usize]] = t as u32;
            next[s as usize] += 1;
        }
        Self {
            id,
            m,
            order,
            offsets,
        }
    }

    fn size(&self, s: usize) -> u32 {
        (self.offsets[s + 1] - self.offsets[s]) as u32
    }
}

/// `(d/2) ln(d/2)` for the doubled half-integer counts `d = 0 ..= 2n + 4`.
fn half_log_table(n: usize) -> Vec<f64> {
    (0..=2 * n + 4).map(|d| xlogx(d as f64 / 2.0)).collect()
}

/// Doubled filled count: an empty cell becomes 0.5.
#[inline(always)]
fn dbl(count: u32) -> usize {
    if count == 0 {
        1
    } else {
        2 * count as usize
    }
}

/// One stratum's cells (u, x) → its part of G²/2, for the marginal model (without the
/// x-margin terms, which are global).
#[inline(always)]
fn term_marginal(h: &[f64], d00: usize, d01: usize, d10: usize, d11: usize) -> f64 {
    h[d00] + h[d01] + h[d10] + h[d11] - h[d00 + d01] - h[d10 + d11]
}

/// One stratum's part of G²/2 for the conditional model (complete).
#[inline(always)]
fn term_conditional(h: &[f64], d00: usize, d01: usize, d10: usize, d11: usize) -> f64 {
    term_marginal(h, d00, d01, d10, d11) - h[d00 + d10] - h[d01 + d11] + h[d00 + d01 + d10 + d11]
}

/// G² of the marginal models from the stratum sum and the empty-cell counts.
/// `cells_per_stratum` is 2 for `[U S][X]` (u = 0, 1) and 1 for `[S][X]`.
#[inline]
fn finish_marginal(
    half: f64,
    empty0: u32,
    empty1: u32,
    ones: u32,
    n: usize,
    unoccupied: f64,
    cells_per_stratum: f64,
) -> f64 {
    let e0 = empty0 as f64 + cells_per_stratum * unoccupied;
    let e1 = empty1 as f64 + cells_per_stratum * unoccupied;
    let n1 = ones as f64 + 0.5 * e1;
    let n0 = (n - ones as usize) as f64 + 0.5 * e0;
    // each unoccupied stratum: cells_per_stratum·2 cells of 0.5, margins of 1
    let constant = -cells_per_stratum * std::f64::consts::LN_2 * unoccupied;
    2.0 * (half + constant - xlogx(n0) - xlogx(n1) + xlogx(n0 + n1))
}

#[inline(always)]
fn add_row(acc: &mut [u32], row: &[u8]) {
    for (a, &x) in acc.iter_mut().zip(row) {
        *a += x as u32;
    }
}

/// Largest cell size of the two-dimensional cell table.
const CELL_MAX: usize = 64;

/// Per (u, s) cell with `size` samples of which `ones` have x = 1: its part of G²/2,
/// `F(n'₀) + F(n'₁) − F(n'₀ + n'₁)` with 0.5-filled counts, tabulated for `size ≤ CELL_MAX`.
struct CellTable {
    g: Vec<f64>,
}

impl CellTable {
    fn new(h: &[f64]) -> Self {
        let mut g = vec![0.0; (CELL_MAX + 1) * (CELL_MAX + 1)];
        for size in 0..=CELL_MAX.min((h.len() - 5) / 2) {
            for ones in 0..=size {
                let (d0, d1) = (dbl((size - ones) as u32), dbl(ones as u32));
                g[size * (CELL_MAX + 1) + ones] = h[d0] + h[d1] - h[d0 + d1];
            }
        }
        Self { g }
    }

    #[inline(always)]
    fn row(&self, size: u32) -> Option<&[f64; CELL_MAX + 1]> {
        let q = size as usize * (CELL_MAX + 1);
        self.g.get(q..q + CELL_MAX + 1)?.try_into().ok()
    }
}

/// A per-stratum counter: `u16` while no stratum can exceed 65,535 samples, else `u32`.
trait Counter: Copy + Default + PartialEq + Send + Sync {
    fn from_u8(x: u8) -> Self;
    /// Truncating conversion (callers only pass values that fit).
    fn from_u32(x: u32) -> Self;
    fn minus(self, other: Self) -> Self;
    fn plus(self, other: Self) -> Self;
    fn value(self) -> u32;
}

impl Counter for u16 {
    #[inline(always)]
    fn from_u8(x: u8) -> Self {
        x as u16
    }
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x as u16
    }
    #[inline(always)]
    fn minus(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
    #[inline(always)]
    fn plus(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline(always)]
    fn value(self) -> u32 {
        self as u32
    }
}

impl Counter for u32 {
    #[inline(always)]
    fn from_u8(x: u8) -> Self {
        x as u32
    }
    #[inline(always)]
    fn from_u32(x: u32) -> Self {
        x
    }
    #[inline(always)]
    fn minus(self, other: Self) -> Self {
        self.wrapping_sub(other)
    }
    #[inline(always)]
    fn plus(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
    #[inline(always)]
    fn value(self) -> u32 {
        self
    }
}

/// [`Step::block`] compiled with AVX2 (the kernel is inlined here, so its counting loops use
/// 256-bit lanes).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2<C: Counter, const B: usize>(step: &Step<'_>, b0: usize, w: usize) -> Vec<f64> {
    step.block::<C, B>(b0, w)
}

/// [`Step::block`] with AVX2 when the CPU has it (runtime-detected).
fn block_dispatch<C: Counter, const B: usize>(step: &Step<'_>, b0: usize, w: usize) -> Vec<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { block_avx2::<C, B>(step, b0, w) };
        }
    }
    step.block::<C, B>(b0, w)
}

/// [`block_dispatch`] with the narrowest counting width (16, 32 or 64 features) that holds `w`.
fn block_width<C: Counter>(step: &Step<'_>, b0: usize, w: usize) -> Vec<f64> {
    match w {
        0..=16 => block_dispatch::<C, 16>(step, b0, w),
        17..=32 => block_dispatch::<C, 32>(step, b0, w),
        _ => block_dispatch::<C, 64>(step, b0, w),
    }
}

/// Shared, read-only state of one step.
struct Step<'a> {
    /// X sorted by stratum in chunk-major blocked layout (see [`gather_blocked`]).
    xs: &'a [u8],
    /// Latent units equal to 1 of each sorted sample: `u_idx[u_ptr[t]..u_ptr[t + 1]]`.
    u_idx: &'a [u16],
    u_ptr: &'a [usize],
    strata: &'a Strata,
    /// `r × m`: samples with U_j = 1 in each stratum.
    a: &'a [u32],
    /// Column sums of X.
    ones: &'a [u32],
    n: usize,
    p: usize,
    r: usize,
    model: Model,
    /// 2^|S| − m.
    unoccupied: f64,
    h: &'a [f64],
    cells: &'a CellTable,
}

impl Step<'_> {
    /// Scores (`w × max(r, 1)`, row-major by feature) of the features `b0 .. b0 + w`.
    #[inline(always)]
    fn block<C: Counter, const B: usize>(&self, b0: usize, w: usize) -> Vec<f64> {
        let (r, m) = (self.r, self.strata.m);
        let (h, cells) = (self.h, self.cells);
        let rr = r.max(1);
        let zero = C::default();
        let mut wide = [zero; B];
        let mut c1 = [zero; B];
        let mut c11 = vec![zero; r * B];
        let mut acc = vec![0f64; rr * B];
        // empty cells with x = 0 and with x = 1 in the occupied strata (marginal models)
        let mut empty0 = vec![0u32; rr * B];
        let mut empty1 = vec![0u32; rr * B];
        for s in 0..m {
            c1.fill(zero);
            c11.fill(zero);
            for t in self.strata.offsets[s]..self.strata.offsets[s + 1] {
                let start = blocked_offset(t, b0 / BLOCK, self.p);
                let row = &self.xs[start..start + w];
                for (d, &x) in wide.iter_mut().zip(row) {
                    *d = C::from_u8(x);
                }
                for (a, &v) in c1.iter_mut().zip(&wide) {
                    *a = a.plus(v);
                }
                for &j in &self.u_idx[self.u_ptr[t]..self.u_ptr[t + 1]] {
                    let j = j as usize;
                    let target = &mut c11[j * B..(j + 1) * B];
                    for (a, &v) in target.iter_mut().zip(&wide) {
                        *a = a.plus(v);
                    }
                }
            }
            let ns = self.strata.size(s);
            if r == 0 {
                let size = C::from_u32(ns);
                let flags = empty0.iter_mut().zip(empty1.iter_mut()).zip(&c1);
                for ((e0, e1), &c) in flags {
                    *e0 += (c == size) as u32;
                    *e1 += (c == zero) as u32;
                }
                let acc = &mut acc[..w];
                match cells.row(ns) {
                    Some(g) => {
                        for (a, c) in acc.iter_mut().zip(&c1) {
                            *a += g[(c.value() as usize).min(CELL_MAX)];
                        }
                    }
                    None => {
                        for (a, c) in acc.iter_mut().zip(&c1) {
                            let (d0, d1) = (dbl(ns - c.value()), dbl(c.value()));
                            *a += h[d0] + h[d1] - h[d0 + d1];
                        }
                    }
                }
                continue;
            }
            for j in 0..r {
                let a1 = self.a[j * m + s];
                let a0 = ns - a1;
                let range = j * B..(j + 1) * B;
                let c11_j = &c11[range.clone()];
                let acc_j = &mut acc[range.clone()][..w];
                if self.model == Model::Conditional {
                    for ((a, c11), c1) in acc_j.iter_mut().zip(c11_j).zip(&c1) {
                        let n11 = c11.value();
                        let n01 = c1.value() - n11;
                        let (n10, n00) = (a1 - n11, a0 - n01);
                        *a += term_conditional(h, dbl(n00), dbl(n01), dbl(n10), dbl(n11));
                    }
                    continue;
                }
                let (a0c, a1c) = (C::from_u32(a0), C::from_u32(a1));
                let flags = empty0[range.clone()]
                    .iter_mut()
                    .zip(empty1[range].iter_mut())
                    .zip(c11_j.iter().zip(&c1));
                for ((e0, e1), (&c11, &c1)) in flags {
                    let n01 = c1.minus(c11);
                    *e0 += (n01 == a0c) as u32 + (c11 == a1c) as u32;
                    *e1 += (n01 == zero) as u32 + (c11 == zero) as u32;
                }
                match (cells.row(a0), cells.row(a1)) {
                    (Some(g0), Some(g1)) => {
                        for ((a, c11), c1) in acc_j.iter_mut().zip(c11_j).zip(&c1) {
                            let n11 = c11.value() as usize;
                            let n01 = (c1.value() as usize).wrapping_sub(n11).min(CELL_MAX);
                            *a += g0[n01] + g1[n11.min(CELL_MAX)];
                        }
                    }
                    _ => {
                        for ((a, c11), c1) in acc_j.iter_mut().zip(c11_j).zip(&c1) {
                            let n11 = c11.value();
                            let n01 = c1.value() - n11;
                            let (n10, n00) = (a1 - n11, a0 - n01);
                            *a += term_marginal(h, dbl(n00), dbl(n01), dbl(n10), dbl(n11));
                        }
                    }
                }
            }
        }
        let mut out = vec![0f64; w * rr];
        for ii in 0..w {
            for j in 0..rr {
                let q = j * B + ii;
                out[ii * rr + j] = match self.model {
                    Model::Conditional => 2.0 * acc[q],
                    Model::Marginal => finish_marginal(
                        acc[q],
                        empty0[q],
                        empty1[q],
                        self.ones[b0 + ii],
                        self.n,
                        self.unoccupied,
                        if self.r == 0 { 1.0 } else { 2.0 },
                    ),
                };
            }
        }
        out
    }

    /// `p × max(r, 1)` scores of every feature.
    fn all(&self) -> Vec<f64> {
        let blocks: Vec<usize> = (0..self.p).step_by(BLOCK).collect();
        let small = (0..self.strata.m).all(|s| self.strata.size(s) <= u16::MAX as u32);
        blocks
            .par_iter()
            .map(|&b0| {
                let w = BLOCK.min(self.p - b0);
                if small {
                    block_width::<u16>(self, b0, w)
                } else {
                    block_width::<u32>(self, b0, w)
                }
            })
            .collect::<Vec<_>>()
            .concat()
    }
}

/// Latent units equal to 1 of each row of `u` (sorted rows, `n × r`), as CSR (branch-free).
fn latent_lists(us: &[u8], r: usize) -> (Vec<u16>, Vec<usize>) {
    let n = us.len().checked_div(r).unwrap_or(0);
    let mut idx = vec![0u16; us.len() + 1];
    let mut ptr = Vec::with_capacity(n + 1);
    ptr.push(0usize);
    let mut pos = 0usize;
    if r > 0 {
        for row in us.chunks_exact(r) {
            for (j, &v) in row.iter().enumerate() {
                idx[pos] = j as u16;
                pos += v as usize;
            }
            ptr.push(pos);
        }
    }
    idx.truncate(pos);
    (idx, ptr)
}

/// Everything needed to score one (possibly permuted) feature column against fixed strata.
struct Scorer<'a> {
    u: Option<Binary<'a>>,
    strata: &'a Strata,
    /// `r × m` samples with U_j = 1 per stratum.
    a: &'a [u32],
    model: Model,
    unoccupied: f64,
    h: &'a [f64],
}

impl Scorer<'_> {
    /// Best G² over the latent units of the feature column `x` (original sample order), and the
    /// latent unit reaching it (first on ties).
    fn score(&self, x: &[u8]) -> (f64, usize) {
        let m = self.strata.m;
        let n = x.len();
        let h = self.h;
        let mut c1 = vec![0u32; m];
        for (t, &v) in x.iter().enumerate() {
            c1[self.strata.id[t] as usize] += v as u32;
        }
        let ones: u32 = c1.iter().sum();
        let Some(u) = self.u else {
            let (mut acc, mut e0, mut e1) = (0.0, 0u32, 0u32);
            for (s, &n1) in c1.iter().enumerate() {
                let n0 = self.strata.size(s) - n1;
                let (d0, d1) = (dbl(n0), dbl(n1));
                acc += h[d0] + h[d1] - h[d0 + d1];
                e0 += (n0 == 0) as u32;
                e1 += (n1 == 0) as u32;
            }
            return (
                finish_marginal(acc, e0, e1, ones, n, self.unoccupied, 1.0),
                0,
            );
        };
        let r = u.cols;
        let mut c11 = vec![0u32; r * m];
        for (t, &v) in x.iter().enumerate() {
            if v != 0 {
                let s = self.strata.id[t] as usize;
                for j in 0..r {
                    c11[j * m + s] += u.get(t, j) as u32;
                }
            }
        }
        let mut best = (f64::NEG_INFINITY, 0);
        for j in 0..r {
            let (mut acc, mut e0, mut e1) = (0.0, 0u32, 0u32);
            for s in 0..m {
                let ns = self.strata.size(s);
                let a1 = self.a[j * m + s];
                let n11 = c11[j * m + s];
                let n01 = c1[s] - n11;
                let n10 = a1 - n11;
                let n00 = ns - a1 - n01;
                let (d00, d01, d10, d11) = (dbl(n00), dbl(n01), dbl(n10), dbl(n11));
                match self.model {
                    Model::Marginal => {
                        acc += term_marginal(h, d00, d01, d10, d11);
                        e0 += (n00 == 0) as u32 + (n10 == 0) as u32;
                        e1 += (n01 == 0) as u32 + (n11 == 0) as u32;
                    }
                    Model::Conditional => acc += term_conditional(h, d00, d01, d10, d11),
                }
            }
            let g2 = match self.model {
                Model::Marginal => finish_marginal(acc, e0, e1, ones, n, self.unoccupied, 2.0),
                Model::Conditional => 2.0 * acc,
            };
            if g2 > best.0 {
                best = (g2, j);
            }
        }
        best
    }
}

/// Bit-packed columns of X (for the pair step without latent units).
fn pack_columns(x: &Binary<'_>) -> Vec<Vec<u64>> {
    let words = x.n.div_ceil(64);
    (0..x.cols)
        .into_par_iter()
        .map(|i| {
            let mut col = vec![0u64; words];
            for t in 0..x.n {
                col[t / 64] |= (x.get(t, i) as u64) << (t % 64);
            }
            col
        })
        .collect()
}

fn pack(col: &[u8]) -> Vec<u64> {
    let mut out = vec![0u64; col.len().div_ceil(64)];
    for (t, &v) in col.iter().enumerate() {
        out[t / 64] |= (v as u64) << (t % 64);
    }
    out
}

/// G² of `[A][B]` on the 0.5-filled 2 × 2 table of two binary columns.
#[inline]
fn pair_g2(h: &[f64], n: u32, ones_a: u32, ones_b: u32, both: u32) -> f64 {
    let n11 = both;
    let n10 = ones_a - both;
    let n01 = ones_b - both;
    let n00 = n - ones_a - n01;
    2.0 * term_conditional(h, dbl(n00), dbl(n01), dbl(n10), dbl(n11))
}

/// Best `[X_i][X_k]` G² over partners k ≠ i of the packed column `col` (with `ones` ones).
fn best_pair_of(
    h: &[f64],
    n: usize,
    col: &[u64],
    ones: u32,
    i: usize,
    packed: &[Vec<u64>],
    col_ones: &[u32],
) -> f64 {
    let mut best = f64::NEG_INFINITY;
    for (k, other) in packed.iter().enumerate() {
        if k == i {
            continue;
        }
        let both: u32 = col
            .iter()
            .zip(other)
            .map(|(a, b)| (a & b).count_ones())
            .sum();
        best = best.max(pair_g2(h, n as u32, ones, col_ones[k], both));
    }
    best
}

fn validate(x: &Binary<'_>, u: Option<&Binary<'_>>, options: &SelectOptions) -> CoreResult<()> {
    let (n, p) = (x.n, x.cols);
    if n == 0 {
        return Err(CoreError::invalid("X has no samples (rows)"));
    }
    if n >= u32::MAX as usize / 4 {
        return Err(CoreError::invalid(format!(
            "X has {n} samples; at most {} are supported",
            u32::MAX / 4
        )));
    }
    if p == 0 {
        return Err(CoreError::invalid("X has no features (columns)"));
    }
    if options.k == 0 || options.k > p {
        return Err(CoreError::invalid(format!(
            "k = {} features cannot be selected from p = {p}; choose 1 ≤ k ≤ {p}",
            options.k
        )));
    }
    match u {
        Some(u) => {
            if u.n != n {
                return Err(CoreError::shape(format!(
                    "X has {n} samples but U has {}; give one row of latent units per sample",
                    u.n
                )));
            }
            if u.cols > u16::MAX as usize {
                return Err(CoreError::invalid(format!(
                    "U has {} latent units; at most {} are supported",
                    u.cols,
                    u16::MAX
                )));
            }
            if u.cols == 0 {
                return Err(CoreError::invalid(
                    "U has no latent units (columns); pass U=None to select without them",
                ));
            }
        }
        None => {
            if p < 2 {
                return Err(CoreError::invalid(
                    "selection without latent units starts from a pair of features; X needs at \
                     least 2 columns",
                ));
            }
            if options.model == Model::Conditional {
                return Err(CoreError::invalid(
                    "model 'conditional' ([U S][S X]) needs latent units U; without them the \
                     selection uses [S][X]",
                ));
            }
        }
    }
    Ok(())
}

/// Rows `order[..]` of a row-major `n × cols` matrix.
fn gather_rows(data: &[u8], cols: usize, order: &[u32]) -> Vec<u8> {
    let mut out = vec![0u8; order.len() * cols];
    out.par_chunks_mut(cols.max(1) * 1024)
        .zip(order.par_chunks(1024))
        .for_each(|(dst, idx)| {
            for (d, &t) in dst.chunks_exact_mut(cols.max(1)).zip(idx) {
                let t = t as usize;
                d.copy_from_slice(&data[t * cols..(t + 1) * cols]);
            }
        });
    out
}

/// Samples per chunk of the blocked layout.
const CHUNK: usize = 256;

/// Offset of sample `pos` (sorted order) of feature block `block` in the blocked layout: chunks
/// of [`CHUNK`] samples, inside a chunk one run of `CHUNK × BLOCK` bytes per feature block, so
/// every feature block streams contiguous runs.
#[inline(always)]
fn blocked_offset(pos: usize, block: usize, p: usize) -> usize {
    let blocks = p.div_ceil(BLOCK);
    (pos / CHUNK) * blocks * CHUNK * BLOCK + block * CHUNK * BLOCK + (pos % CHUNK) * BLOCK
}

/// Rows `order[..]` of X (row-major `n × p`) in the blocked layout of [`blocked_offset`].
fn gather_blocked(data: &[u8], p: usize, order: &[u32]) -> Vec<u8> {
    let blocks = p.div_ceil(BLOCK);
    let mut out = vec![0u8; order.len().div_ceil(CHUNK) * blocks * CHUNK * BLOCK];
    out.par_chunks_mut(blocks * CHUNK * BLOCK)
        .zip(order.par_chunks(CHUNK))
        .for_each(|(dst, idx)| {
            for (k, &t) in idx.iter().enumerate() {
                let row = &data[t as usize * p..(t as usize + 1) * p];
                for (b, src) in row.chunks(BLOCK).enumerate() {
                    let at = b * CHUNK * BLOCK + k * BLOCK;
                    dst[at..at + src.len()].copy_from_slice(src);
                }
            }
        });
    out
}

/// `r × m` counts of U_j = 1 per stratum, from the rows of U sorted by stratum (`n × r`).
fn latent_counts(us: &[u8], r: usize, strata: &Strata) -> Vec<u32> {
    let m = strata.m;
    let mut a = vec![0u32; r * m];
    if r == 0 {
        return a;
    }
    let mut sums = vec![0u32; r];
    for s in 0..m {
        sums.fill(0);
        for row in us[strata.offsets[s] * r..strata.offsets[s + 1] * r].chunks_exact(r) {
            add_row(&mut sums, row);
        }
        for (j, &v) in sums.iter().enumerate() {
            a[j * m + s] = v;
        }
    }
    a
}

/// Column `i` of a row-major binary matrix.
fn column(x: &Binary<'_>, i: usize) -> Vec<u8> {
    x.data.iter().skip(i).step_by(x.cols).copied().collect()
}

/// Permutation p-value of feature `i`: `(1 + #{G²_perm ≥ G²_obs}) / (B + 1)` (ties within a
/// relative 1e-10 count as ≥), where the
/// statistic is the step's score of the feature (best over latent units, or best over partners
/// at the pair step). Permutation `b` of step `step` shuffles the column with its own ChaCha8
/// stream (`seed`, stream `step · 2^32 + b`), so results do not depend on the thread count.
/// The conditional model permutes within strata of the selected features (its null hypothesis
/// keeps the X–S association); the others permute the whole column.
#[allow(clippy::too_many_arguments)]
fn permutation_p_value(
    x: &Binary<'_>,
    i: usize,
    scorer: &Scorer<'_>,
    pair: Option<(&[Vec<u64>], &[u32])>,
    model: Model,
    n_permutations: usize,
    seed: u64,
    step: usize,
) -> f64 {
    let n = x.n;
    let column = column(x, i);
    let statistic = |col: &[u8]| -> f64 {
        match pair {
            Some((packed, col_ones)) => {
                let ones = col.iter().map(|&v| v as u32).sum();
                best_pair_of(scorer.h, n, &pack(col), ones, i, packed, col_ones)
            }
            None => scorer.score(col).0,
        }
    };
    let observed = statistic(&column);
    // statistics equal up to rounding count as ties (≥)
    let threshold = observed - TIE_TOLERANCE * observed.abs().max(1.0);
    let exceed: usize = (0..n_permutations)
        .into_par_iter()
        .map(|b| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(((step as u64) << 32) | b as u64);
            let permuted = match model {
                Model::Marginal => {
                    let mut col = column.clone();
                    col.shuffle(&mut rng);
                    col
                }
                Model::Conditional => {
                    let strata = scorer.strata;
                    let mut col = column.clone();
                    for s in 0..strata.m {
                        let members = &strata.order[strata.offsets[s]..strata.offsets[s + 1]];
                        let mut values: Vec<u8> =
                            members.iter().map(|&t| column[t as usize]).collect();
                        values.shuffle(&mut rng);
                        for (&t, &v) in members.iter().zip(&values) {
                            col[t as usize] = v;
                        }
                    }
                    col
                }
            };
            (statistic(&permuted) >= threshold) as usize
        })
        .sum();
    (1 + exceed) as f64 / (n_permutations + 1) as f64
}

/// Stepwise selection of `k` binary features of `x` (`n × p`) that best explain the binary
/// latent units `u` (`n × r`), as `PatternsByLogLin.bestset` (latent version, start size 1).
///
/// Step t scores every feature i ∉ S and every latent unit j by the G² of the model
/// `[U_j S][X_i]` (or `[U_j S][S X_i]`) against the saturated model on the 0.5-filled table over
/// (U_j, S…, X_i), and adds the feature with the largest G² (ties: smallest i, then smallest j).
///
/// Without latent units (`u = None`, `bestset` with start size 2): step 0 scores every feature
/// by its best `[X_i][X_k]` G² over partners k ≠ i and adds the best one; the following steps
/// score `[S][X_i]`, so step 1 adds the partner of the best pair and both steps report that
/// pair's G².
pub fn select_features(
    x: &Binary<'_>,
    u: Option<&Binary<'_>>,
    options: &SelectOptions,
) -> CoreResult<Selection> {
    validate(x, u, options)?;
    let (n, p, k) = (x.n, x.cols, options.k);
    let r = u.map_or(0, |u| u.cols);
    let rr = r.max(1);
    let h = half_log_table(n);
    let cells = CellTable::new(&h);
    let ones: Vec<u32> = {
        let mut ones = vec![0u32; p];
        for row in x.data.chunks_exact(p) {
            add_row(&mut ones, row);
        }
        ones
    };
    let packed = if u.is_none() {
        pack_columns(x)
    } else {
        Vec::new()
    };
    let mut strata = Strata::whole(n);
    let mut in_set = vec![false; p];
    let mut selection = Selection {
        selected: Vec::with_capacity(k),
        latent_units: Vec::with_capacity(k),
        g2: Vec::with_capacity(k),
        scores: Vec::with_capacity(k * p * rr),
        r: rr,
        p_values: (options.n_permutations > 0).then(|| Vec::with_capacity(k)),
    };
    for step in 0..k {
        let unoccupied = 2f64.powi(step as i32) - strata.m as f64;
        let us = u.map_or_else(Vec::new, |u| gather_rows(u.data, r, &strata.order));
        let a = latent_counts(&us, r, &strata);
        let mut scores = if u.is_none() && step == 0 {
            (0..p)
                .into_par_iter()
                .map(|i| best_pair_of(&h, n, &packed[i], ones[i], i, &packed, &ones))
                .collect()
        } else {
            let xs = gather_blocked(x.data, p, &strata.order);
            let (u_idx, mut u_ptr) = latent_lists(&us, r);
            if r == 0 {
                u_ptr = vec![0; n + 1];
            }
            Step {
                xs: &xs,
                u_idx: &u_idx,
                u_ptr: &u_ptr,
                strata: &strata,
                a: &a,
                ones: &ones,
                n,
                p,
                r,
                model: options.model,
                unoccupied,
                h: &h,
                cells: &cells,
            }
            .all()
        };
        let mut best: Option<(f64, usize, usize)> = None;
        for (i, &taken) in in_set.iter().enumerate() {
            for j in 0..rr {
                let q = i * rr + j;
                if taken {
                    scores[q] = f64::NAN;
                } else {
                    match best {
                        Some((g, _, _)) if scores[q] <= g || scores[q].is_nan() => {}
                        _ => best = Some((scores[q], i, j)),
                    }
                }
            }
        }
        let Some((g2, i, j)) = best else {
            return Err(CoreError::invalid("no candidate feature left to select"));
        };
        if let Some(p_values) = selection.p_values.as_mut() {
            let scorer = Scorer {
                u: u.copied(),
                strata: &strata,
                a: &a,
                model: options.model,
                unoccupied,
                h: &h,
            };
            let pair = (u.is_none() && step == 0).then_some((&packed[..], &ones[..]));
            p_values.push(permutation_p_value(
                x,
                i,
                &scorer,
                pair,
                options.model,
                options.n_permutations,
                options.seed,
                step,
            ));
        }
        selection.selected.push(i);
        selection.latent_units.push(u.map(|_| j));
        selection.g2.push(g2);
        selection.scores.extend_from_slice(&scores);
        in_set[i] = true;
        let chosen = column(x, i);
        strata = strata.split(|t| chosen[t]);
    }
    Ok(selection)
}

/// G² of one feature against fixed selected features (slow path used by the tests): the score
/// matrix row of feature `i` at the step where `selected` has been chosen.
pub fn feature_scores(
    x: &Binary<'_>,
    u: Option<&Binary<'_>>,
    selected: &[usize],
    i: usize,
    model: Model,
) -> CoreResult<Vec<f64>> {
    let mut strata = Strata::whole(x.n);
    for &f in selected {
        let chosen = column(x, f);
        strata = strata.split(|t| chosen[t]);
    }
    let h = half_log_table(x.n);
    let r = u.map_or(0, |u| u.cols);
    let us = u.map_or_else(Vec::new, |u| gather_rows(u.data, r, &strata.order));
    let a = latent_counts(&us, r, &strata);
    let unoccupied = 2f64.powi(selected.len() as i32) - strata.m as f64;
    let column = column(x, i);
    let Some(u) = u else {
        let scorer = Scorer {
            u: None,
            strata: &strata,
            a: &a,
            model,
            unoccupied,
            h: &h,
        };
        return Ok(vec![scorer.score(&column).0]);
    };
    // one latent unit at a time, through the single-column scorer
    (0..u.cols)
        .map(|j| {
            let single: Vec<u8> = (0..u.n).map(|t| u.get(t, j)).collect();
            let single = Binary::new(&single, u.n, 1, "U")?;
            let a: Vec<u32> = a[j * strata.m..(j + 1) * strata.m].to_vec();
            let scorer = Scorer {
                u: Some(single),
                strata: &strata,
                a: &a,
                model,
                unoccupied,
                h: &h,
            };
            Ok(scorer.score(&column).0)
        })
        .collect()
}
