//! Contingency tables of categorical columns (bit-packed cell indices) and the G² statistic.

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};

/// Largest number of cells a dense table may have (2^26 cells = 512 MiB of `u64` counts).
pub const MAX_CELLS: usize = 1 << 26;

/// Rows per parallel chunk when packing rows into cell indices.
const ROW_CHUNK: usize = 4096;

/// Number of cells of a table with these levels, or an error if it exceeds [`MAX_CELLS`].
pub fn n_cells(levels: &[usize]) -> CoreResult<usize> {
    let mut cells: usize = 1;
    for (c, &l) in levels.iter().enumerate() {
        if l == 0 {
            return Err(CoreError::invalid(format!(
                "variable {c} has 0 levels; every variable needs at least one level"
            )));
        }
        cells = cells.checked_mul(l).filter(|&x| x <= MAX_CELLS).ok_or_else(|| {
            CoreError::invalid(format!(
                "a table over levels {levels:?} has more than {MAX_CELLS} cells; use fewer variables"
            ))
        })?;
    }
    Ok(cells)
}

/// C-order strides (first variable slowest) of a table with these levels.
pub fn strides(levels: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; levels.len()];
    for c in (0..levels.len().saturating_sub(1)).rev() {
        strides[c] = strides[c + 1] * levels[c + 1];
    }
    strides
}

/// Levels inferred from the data: `max(column maximum + 1, 2)` per column (binary by default,
/// like `LogLinearModels.LevelData`).
pub fn infer_levels(data: &[u8], n: usize, q: usize) -> CoreResult<Vec<usize>> {
    check_len(data, n, q)?;
    let mut levels = vec![2usize; q];
    for row in data.chunks_exact(q.max(1)).take(n) {
        for (l, &v) in levels.iter_mut().zip(row) {
            *l = (*l).max(v as usize + 1);
        }
    }
    Ok(levels)
}

fn check_len(data: &[u8], n: usize, q: usize) -> CoreResult<()> {
    if n.checked_mul(q) != Some(data.len()) {
        return Err(CoreError::shape(format!(
            "data has {} values, expected n × q = {n} × {q}",
            data.len()
        )));
    }
    Ok(())
}

/// Cell index (C order) of every row; the first value outside its levels is an error naming the
/// row and column (the smallest row, then the smallest column).
pub fn cell_indices(data: &[u8], n: usize, q: usize, levels: &[usize]) -> CoreResult<Vec<usize>> {
    check_len(data, n, q)?;
    if levels.len() != q {
        return Err(CoreError::shape(format!(
            "{} levels given for {q} columns; give one number of levels per column",
            levels.len()
        )));
    }
    n_cells(levels)?;
    let strides = strides(levels);
    let mut codes = vec![0usize; n];
    if q == 0 {
        return Ok(codes);
    }
    codes
        .par_chunks_mut(ROW_CHUNK)
        .zip(data.par_chunks(ROW_CHUNK * q))
        .enumerate()
        .try_for_each(|(chunk, (out, rows))| -> CoreResult<()> {
            for (r, (code, row)) in out.iter_mut().zip(rows.chunks_exact(q)).enumerate() {
                let mut index = 0usize;
                for (c, ((&v, &l), &s)) in row.iter().zip(levels).zip(&strides).enumerate() {
                    if v as usize >= l {
                        return Err(CoreError::invalid(format!(
                            "value {v} at row {}, column {c} is outside the {l} levels 0..{} of \
                             that column; recode the column or give more levels",
                            chunk * ROW_CHUNK + r,
                            l - 1
                        )));
                    }
                    index += v as usize * s;
                }
                *code = index;
            }
            Ok(())
        })?;
    Ok(codes)
}

/// Counts of every cell of the table over the `q` columns of `data` (row-major `n × q`,
/// values `0 .. levels[c] - 1`), in C order (first column slowest). Rows are packed into cell
/// indices in parallel (for binary columns the index is the bit pattern of the row), then counted.
pub fn contingency_table(
    data: &[u8],
    n: usize,
    q: usize,
    levels: Option<&[usize]>,
) -> CoreResult<(Vec<usize>, Vec<u64>)> {
    let levels = match levels {
        Some(l) => l.to_vec(),
        None => infer_levels(data, n, q)?,
    };
    let cells = n_cells(&levels)?;
    let codes = cell_indices(data, n, q, &levels)?;
    let mut counts = vec![0u64; cells];
    for &c in &codes {
        counts[c] += 1;
    }
    Ok((levels, counts))
}

/// `n · ln n` with `0 · ln 0 = 0`.
#[inline]
pub fn xlogx(x: f64) -> f64 {
    if x > 0.0 {
        x * x.ln()
    } else {
        0.0
    }
}

/// G² = 2 Σ n · ln(n / m) over the cells with n > 0 (natural log), as in `LogLinearModels.gsquare`.
///
/// Returns `+inf` when a cell has n > 0 but m = 0.
pub fn g_squared(observed: &[f64], fitted: &[f64]) -> CoreResult<f64> {
    if observed.len() != fitted.len() {
        return Err(CoreError::shape(format!(
            "observed has {} cells but fitted has {}; both tables need the same shape",
            observed.len(),
            fitted.len()
        )));
    }
    check_nonnegative(observed, "observed")?;
    check_nonnegative(fitted, "fitted")?;
    let mut sum = 0.0;
    for (&n, &m) in observed.iter().zip(fitted) {
        if n > 0.0 {
            if m == 0.0 {
                return Ok(f64::INFINITY);
            }
            sum += n * (n / m).ln();
        }
    }
    Ok(2.0 * sum)
}

/// Every value finite and ≥ 0, or an error naming the first bad cell.
pub fn check_nonnegative(values: &[f64], name: &str) -> CoreResult<()> {
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(CoreError::invalid(format!(
            "{name} table has value {v} at flat (C-order) cell {i}; counts and fitted values must \
             be finite and ≥ 0"
        )));
    }
    Ok(())
}
