//! Tissue specificity of genes (pure Rust): the Tau index and the tissue-specific Wasserstein
//! distance (EMD) used in Trofimov et al. 2020, "Factorized embeddings learns rich and
//! biologically meaningful embedding spaces using factorized tensor decomposition"
//! (Bioinformatics 36, i417–i426), §3.2.
//!
//! Both kernels take an `n × m` matrix (samples × genes; `f32` or `f64`; row- or column-major,
//! see [`Matrix`]) and integer group codes (`0 .. n_groups`, e.g. tissue or cancer type) of the
//! `n` samples. Sums are accumulated in `f64` whatever the input type, without converting the
//! matrix.

mod emd;
mod sort;

#[cfg(feature = "python")]
pub mod python;

pub use emd::tissue_wasserstein;

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};

/// Largest accepted magnitude of an expression value (keeps intermediate sums finite).
pub const MAX_ABS: f64 = 1e300;

/// Genes per parallel task of [`tau_index`].
const TAU_BLOCK: usize = 256;

/// An expression value type the kernels accept (`f32`, `f64`).
pub trait Expr: Copy + Send + Sync + 'static {
    /// The value as `f64` (exact).
    fn to_f64(self) -> f64;
    /// An unsigned key whose integer order is the numeric order of finite values.
    fn order_key(self) -> u64;
    /// The value (as `f64`) of a key made by [`Expr::order_key`].
    fn from_key(key: u64) -> f64;
    /// Sort a column of finite values: write the sorted values (as `f64`) into `xs` and the
    /// group code of each into `groups`; `packed` is scratch. Equal values come in an
    /// unspecified order.
    fn sort_column(
        col: &[Self],
        codes: &[u32],
        packed: &mut Vec<u64>,
        xs: &mut [f64],
        groups: &mut [u32],
    );
}

impl Expr for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn order_key(self) -> u64 {
        let bits = self.to_bits();
        let key = if bits >> 31 == 1 {
            !bits
        } else {
            bits | (1 << 31)
        };
        u64::from(key)
    }
    #[inline(always)]
    fn from_key(key: u64) -> f64 {
        let key = key as u32;
        let bits = if key >> 31 == 1 {
            key & !(1 << 31)
        } else {
            !key
        };
        f64::from(f32::from_bits(bits))
    }
    fn sort_column(
        col: &[Self],
        codes: &[u32],
        packed: &mut Vec<u64>,
        xs: &mut [f64],
        groups: &mut [u32],
    ) {
        sort::sort_f32(col, codes, packed, xs, groups);
    }
}

impl Expr for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn order_key(self) -> u64 {
        let bits = self.to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | (1 << 63)
        }
    }
    #[inline(always)]
    fn from_key(key: u64) -> f64 {
        let bits = if key >> 63 == 1 {
            key & !(1 << 63)
        } else {
            !key
        };
        f64::from_bits(bits)
    }
    fn sort_column(
        col: &[Self],
        codes: &[u32],
        packed: &mut Vec<u64>,
        xs: &mut [f64],
        groups: &mut [u32],
    ) {
        sort::sort_f64(col, codes, packed, xs, groups);
    }
}

/// Memory order of a [`Matrix`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// C order: element `(i, j)` at `i * n_cols + j`.
    RowMajor,
    /// Fortran order: element `(i, j)` at `j * n_rows + i`.
    ColMajor,
}

/// A borrowed dense `n_rows × n_cols` matrix (samples × genes).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a, T> {
    data: &'a [T],
    n_rows: usize,
    n_cols: usize,
    layout: Layout,
}

impl<'a, T: Expr> Matrix<'a, T> {
    /// Wrap `data`; errors if it does not hold exactly `n_rows * n_cols` values or is empty.
    pub fn new(data: &'a [T], n_rows: usize, n_cols: usize, layout: Layout) -> CoreResult<Self> {
        if n_rows == 0 || n_cols == 0 {
            return Err(CoreError::invalid(format!(
                "X is empty ({n_rows} samples × {n_cols} genes); pass at least one sample and one gene"
            )));
        }
        if n_rows.checked_mul(n_cols) != Some(data.len()) {
            return Err(CoreError::shape(format!(
                "X buffer holds {} values, expected {n_rows} × {n_cols}",
                data.len()
            )));
        }
        Ok(Self {
            data,
            n_rows,
            n_cols,
            layout,
        })
    }

    /// Number of samples.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of genes.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// Memory order.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The underlying buffer.
    pub fn data(&self) -> &'a [T] {
        self.data
    }
}

/// Validated group codes.
#[derive(Clone, Debug)]
pub struct Groups {
    /// Code of every sample, in `0 .. n_groups`.
    pub codes: Vec<u32>,
    /// Number of samples of every group (all ≥ 1).
    pub sizes: Vec<usize>,
}

/// Check group codes: `n_rows` of them, at least two groups, every code in `0 .. n_groups`, and
/// every group non-empty.
pub fn validate_groups(codes: &[i64], n_groups: usize, n_rows: usize) -> CoreResult<Groups> {
    if codes.len() != n_rows {
        return Err(CoreError::shape(format!(
            "groups has {} labels but X has {n_rows} rows (samples); pass one label per sample",
            codes.len()
        )));
    }
    if n_groups < 2 {
        return Err(CoreError::invalid(format!(
            "tissue specificity needs at least 2 groups, got {n_groups}"
        )));
    }
    if n_groups > u32::MAX as usize {
        return Err(CoreError::invalid(format!("too many groups ({n_groups})")));
    }
    let mut sizes = vec![0usize; n_groups];
    let mut out = Vec::with_capacity(codes.len());
    for (i, &code) in codes.iter().enumerate() {
        if code < 0 || code as u64 >= n_groups as u64 {
            return Err(CoreError::invalid(format!(
                "group code {code} at row {i} is outside [0, {n_groups}); missing labels are not \
                 allowed: drop or relabel those samples"
            )));
        }
        sizes[code as usize] += 1;
        out.push(code as u32);
    }
    if let Some(empty) = sizes.iter().position(|&s| s == 0) {
        return Err(CoreError::invalid(format!(
            "group {empty} has no samples (an unused category?); remove empty groups"
        )));
    }
    Ok(Groups { codes: out, sizes })
}

/// The error for a value outside the domain (NaN, infinite or too large) at `(row, col)`.
pub(crate) fn bad_value(value: f64, row: usize, col: usize) -> CoreError {
    let what = if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        "an infinite value".to_string()
    } else {
        format!("{value:e}, beyond ±{MAX_ABS:e}")
    };
    CoreError::invalid(format!(
        "X contains {what} at row {row}, column {col}; remove or impute non-finite values first"
    ))
}

/// Tau tissue-specificity index (Yanai et al. 2005) of every gene.
///
/// For gene `j` with group means `μ_c`, `x̂_c = μ_c / max_c μ_c` and
/// `τ_j = Σ_c (1 − x̂_c) / (C − 1)`, in `[0, 1]`: 0 for equal means, 1 when only one group
/// expresses the gene. Genes whose group means are all zero get `NaN`.
///
/// Errors: negative values (Tau is defined for non-negative expression), non-finite values
/// (with row and column), and everything [`validate_groups`] rejects.
pub fn tau_index<T: Expr>(
    x: &Matrix<'_, T>,
    codes: &[i64],
    n_groups: usize,
) -> CoreResult<Vec<f64>> {
    let groups = validate_groups(codes, n_groups, x.n_rows())?;
    let m = x.n_cols();
    let n_blocks = m.div_ceil(TAU_BLOCK);
    let blocks: Vec<CoreResult<Vec<f64>>> = (0..n_blocks)
        .into_par_iter()
        .map(|block| {
            let j0 = block * TAU_BLOCK;
            let width = TAU_BLOCK.min(m - j0);
            tau_block(x, &groups, j0, width)
        })
        .collect();
    let mut tau = Vec::with_capacity(m);
    for block in blocks {
        tau.extend(block?);
    }
    Ok(tau)
}

fn check_tau_value(v: f64, row: usize, col: usize) -> CoreResult<()> {
    if (0.0..=MAX_ABS).contains(&v) {
        return Ok(());
    }
    if v < 0.0 {
        return Err(CoreError::invalid(format!(
            "X has a negative value ({v}) at row {row}, column {col}; Tau is defined for \
             non-negative expression: transform to a non-negative scale first (e.g. 2**log_ratio, \
             or log1p of counts)"
        )));
    }
    Err(bad_value(v, row, col))
}

fn tau_block<T: Expr>(
    x: &Matrix<'_, T>,
    groups: &Groups,
    j0: usize,
    width: usize,
) -> CoreResult<Vec<f64>> {
    let c = groups.sizes.len();
    let n = x.n_rows();
    let m = x.n_cols();
    // sums[g * width + b]; the domain check is branch-free (vectorisable), and the first bad
    // value is located only if there is one.
    let mut sums = vec![0.0f64; c * width];
    let in_domain = |f: f64| (0.0..=MAX_ABS).contains(&f);
    let mut ok = true;
    match x.layout() {
        Layout::RowMajor => {
            for (row, &g) in x.data().chunks_exact(m).zip(&groups.codes) {
                let acc = &mut sums[g as usize * width..(g as usize + 1) * width];
                for (&v, a) in row[j0..j0 + width].iter().zip(acc.iter_mut()) {
                    let f = v.to_f64();
                    ok &= in_domain(f);
                    *a += f;
                }
            }
            if !ok {
                for (i, row) in x.data().chunks_exact(m).enumerate() {
                    for (b, &v) in row[j0..j0 + width].iter().enumerate() {
                        check_tau_value(v.to_f64(), i, j0 + b)?;
                    }
                }
            }
        }
        Layout::ColMajor => {
            for b in 0..width {
                let col = &x.data()[(j0 + b) * n..(j0 + b + 1) * n];
                for (&v, &g) in col.iter().zip(&groups.codes) {
                    let f = v.to_f64();
                    ok &= in_domain(f);
                    sums[g as usize * width + b] += f;
                }
                if !ok {
                    for (i, &v) in col.iter().enumerate() {
                        check_tau_value(v.to_f64(), i, j0 + b)?;
                    }
                }
            }
        }
    }
    let denom = (c - 1) as f64;
    let tau = (0..width)
        .map(|b| {
            let mean = |g: usize| sums[g * width + b] / groups.sizes[g] as f64;
            let max = (0..c).map(mean).fold(0.0f64, f64::max);
            if max <= 0.0 {
                return f64::NAN;
            }
            (0..c).map(|g| 1.0 - mean(g) / max).sum::<f64>() / denom
        })
        .collect();
    Ok(tau)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Straightforward W1 of two samples, as scipy computes it (CDF sweep over the pooled values).
    fn w1_reference(u: &[f64], v: &[f64]) -> f64 {
        let mut u = u.to_vec();
        let mut v = v.to_vec();
        u.sort_by(f64::total_cmp);
        v.sort_by(f64::total_cmp);
        let mut all: Vec<f64> = u.iter().chain(&v).copied().collect();
        all.sort_by(f64::total_cmp);
        let cdf = |s: &[f64], t: f64| s.partition_point(|&a| a <= t) as f64 / s.len() as f64;
        all.windows(2)
            .map(|w| (cdf(&u, w[0]) - cdf(&v, w[0])).abs() * (w[1] - w[0]))
            .sum()
    }

    fn reference(x: &[f64], n: usize, m: usize, codes: &[i64], c: usize) -> Vec<f64> {
        let mut out = vec![0.0; m * c];
        for j in 0..m {
            for g in 0..c {
                let col: Vec<(f64, i64)> = (0..n).map(|i| (x[i * m + j], codes[i])).collect();
                let u: Vec<f64> = col
                    .iter()
                    .filter(|p| p.1 == g as i64)
                    .map(|p| p.0)
                    .collect();
                let v: Vec<f64> = col
                    .iter()
                    .filter(|p| p.1 != g as i64)
                    .map(|p| p.0)
                    .collect();
                out[j * c + g] = w1_reference(&u, &v);
            }
        }
        out
    }

    fn random_problem(rng: &mut ChaCha8Rng, n: usize, m: usize, c: usize) -> (Vec<f64>, Vec<i64>) {
        let mut codes: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
        // Unequal group sizes: move a random share of samples to group 0.
        for code in codes.iter_mut() {
            if rng.random::<f64>() < 0.3 {
                *code = 0;
            }
        }
        for (g, code) in codes.iter_mut().enumerate().take(c) {
            *code = g as i64; // every group non-empty
        }
        let x = (0..n * m)
            .map(|_| match rng.random_range(0..4) {
                0 => 0.0,
                1 => rng.random_range(0..4) as f64 * 0.5, // ties
                2 => 1e4 + rng.random::<f64>() * 1e-3,    // close to a large value
                _ => rng.random::<f64>() * 10.0 - 3.0,
            })
            .collect();
        (x, codes)
    }

    fn assert_close(got: &[f64], want: &[f64], rtol: f64) {
        assert_eq!(got.len(), want.len());
        for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= rtol * b.abs().max(1e-300),
                "entry {k}: got {a}, want {b}, rel {}",
                (a - b).abs() / b.abs()
            );
        }
    }

    #[test]
    fn wasserstein_matches_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for &(n, m, c) in &[(2, 1, 2), (3, 2, 2), (17, 5, 3), (60, 40, 5), (301, 37, 7)] {
            let (x, codes) = random_problem(&mut rng, n, m, c);
            let mat = Matrix::new(&x, n, m, Layout::RowMajor).unwrap();
            let got = tissue_wasserstein(&mat, &codes, c).unwrap();
            assert_close(&got, &reference(&x, n, m, &codes, c), 1e-11);
            // Column-major input gives bit-identical results.
            let xt: Vec<f64> = (0..m)
                .flat_map(|j| (0..n).map(move |i| (i, j)))
                .map(|(i, j)| x[i * m + j])
                .collect();
            let mat_t = Matrix::new(&xt, n, m, Layout::ColMajor).unwrap();
            assert_eq!(tissue_wasserstein(&mat_t, &codes, c).unwrap(), got);
        }
    }

    #[test]
    fn wasserstein_f32_matches_reference_on_upcast_values() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (n, m, c) = (211, 33, 4);
        let (x, codes) = random_problem(&mut rng, n, m, c);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
        let got = tissue_wasserstein(
            &Matrix::new(&x32, n, m, Layout::RowMajor).unwrap(),
            &codes,
            c,
        )
        .unwrap();
        assert_close(&got, &reference(&x64, n, m, &codes, c), 1e-11);
    }

    #[test]
    fn wasserstein_constant_gene_and_singletons() {
        // Gene 0 constant (large value), gene 1 with one outlier; groups of size 1.
        let n = 6;
        let x: Vec<f64> = (0..n)
            .flat_map(|i| [1e6, if i == 2 { 1e6 + 1.0 } else { 1e6 }])
            .collect();
        let codes = [0, 1, 2, 2, 2, 2];
        let got = tissue_wasserstein(&Matrix::new(&x, n, 2, Layout::RowMajor).unwrap(), &codes, 3)
            .unwrap();
        assert_eq!(&got[..3], &[0.0, 0.0, 0.0]);
        assert_close(&got[3..], &reference(&x, n, 2, &codes, 3)[3..], 1e-12);
        // Outlier is in group 2 (4 samples) vs 2 others: W = 1/4.
        assert_close(&got[5..6], &[0.25], 1e-15);
    }

    #[test]
    fn f32_keys_round_trip_and_order() {
        let vals = [-3.5f32, -0.0, 0.0, 1e-30, 2.0, 1e30, -1e-30];
        for &v in &vals {
            assert_eq!(f32::from_key(v.order_key()), f64::from(v));
            assert!(v.order_key() < 1 << 32);
        }
        for &a in &vals {
            for &b in &vals {
                if a < b {
                    assert!(a.order_key() < b.order_key());
                }
            }
        }
        for &v in &[-2.5f64, -0.0, 0.0, 5e-300, 1e300] {
            assert_eq!(f64::from_key(v.order_key()), v);
        }
    }

    #[test]
    fn tau_hand_examples() {
        // 4 samples, groups [0, 0, 1, 2]; genes: one-group, uniform, all zero, mixed.
        let x = [
            5.0, 2.0, 0.0, 1.0, //
            3.0, 2.0, 0.0, 3.0, //
            0.0, 2.0, 0.0, 4.0, //
            0.0, 2.0, 0.0, 1.0,
        ];
        let codes = [0, 0, 1, 2];
        let tau = tau_index(&Matrix::new(&x, 4, 4, Layout::RowMajor).unwrap(), &codes, 3).unwrap();
        assert_eq!(tau[0], 1.0);
        assert_eq!(tau[1], 0.0);
        assert!(tau[2].is_nan());
        // means 2, 4, 1 -> x̂ = 0.5, 1, 0.25 -> (0.5 + 0 + 0.75) / 2
        assert!((tau[3] - 0.625).abs() < 1e-15);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let tau32 = tau_index(
            &Matrix::new(&x32, 4, 4, Layout::RowMajor).unwrap(),
            &codes,
            3,
        )
        .unwrap();
        assert_eq!(tau32[3], tau[3]);
    }

    #[test]
    fn errors_are_typed() {
        let x = [1.0, 2.0, f64::NAN, 4.0, -1.0, 0.0];
        let mat = Matrix::new(&x, 3, 2, Layout::RowMajor).unwrap();
        let e = tissue_wasserstein(&mat, &[0, 1, 1], 2).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(e.message.contains("row 1, column 0"), "{}", e.message);
        let e = tau_index(&mat, &[0, 1, 1], 2).unwrap_err();
        assert!(
            e.message.contains("NaN at row 1, column 0"),
            "{}",
            e.message
        );
        let ok = [1.0, 2.0, 3.0, 4.0, -1.0, 0.0];
        let mat = Matrix::new(&ok, 3, 2, Layout::RowMajor).unwrap();
        let e = tau_index(&mat, &[0, 1, 1], 2).unwrap_err();
        assert!(e.message.contains("negative") && e.message.contains("row 2, column 0"));
        assert!(tissue_wasserstein(&mat, &[0, 1, 1], 2).is_ok()); // EMD accepts negatives
        let inf = [1.0, f64::INFINITY];
        let e = tissue_wasserstein(
            &Matrix::new(&inf, 2, 1, Layout::ColMajor).unwrap(),
            &[0, 1],
            2,
        )
        .unwrap_err();
        assert!(
            e.message.contains("infinite value at row 1, column 0"),
            "{}",
            e.message
        );

        assert_eq!(
            tau_index(&mat, &[0, 1], 2).unwrap_err().kind,
            ErrorKind::ShapeMismatch
        );
        assert_eq!(
            tau_index(&mat, &[0, 0, 0], 1).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        let e = tau_index(&mat, &[0, -1, 1], 2).unwrap_err();
        assert!(e.message.contains("row 1"));
        let e = tissue_wasserstein(&mat, &[0, 2, 0], 3).unwrap_err();
        assert!(
            e.message.contains("group 1 has no samples"),
            "{}",
            e.message
        );
        assert_eq!(
            tissue_wasserstein(&mat, &[0, 5, 1], 2).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        let empty: [f64; 0] = [];
        assert_eq!(
            Matrix::new(&empty, 0, 3, Layout::RowMajor)
                .unwrap_err()
                .kind,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            Matrix::new(&ok, 4, 2, Layout::RowMajor).unwrap_err().kind,
            ErrorKind::ShapeMismatch
        );
    }
}
