//! Fitting hierarchical log-linear models: iterative proportional fitting for any generating
//! class, and the closed form for decomposable models.

use rayon::prelude::*;

use super::table::{check_nonnegative, n_cells, strides};
use crate::error::{CoreError, CoreResult};

/// Tables with at least this many cells are adjusted in parallel.
const PAR_CELLS: usize = 1 << 16;

/// Outcome of [`ipf`].
#[derive(Debug, Clone, PartialEq)]
pub struct IpfFit {
    /// Fitted values, same shape (C order) as the table.
    pub fitted: Vec<f64>,
    /// Number of full cycles over the generators that were run.
    pub iterations: usize,
    /// Whether the largest margin deviation of a cycle fell below the tolerance.
    pub converged: bool,
    /// Largest |observed − fitted| margin deviation of the last cycle (measured before its
    /// adjustments, as R's `loglin` and `LogLinearModels.ipf` do).
    pub max_deviation: f64,
}

/// Check the generators against `d` variables: indices in range, no repeats inside one
/// generator. Returns each generator sorted; an empty list becomes the one empty generator
/// (the grand total, which every hierarchical model fits).
pub fn normalise_margins(margins: &[Vec<usize>], d: usize) -> CoreResult<Vec<Vec<usize>>> {
    let mut out = Vec::with_capacity(margins.len().max(1));
    for (g, generator) in margins.iter().enumerate() {
        let mut sorted = generator.clone();
        sorted.sort_unstable();
        if let Some(&v) = sorted.iter().find(|&&v| v >= d) {
            return Err(CoreError::invalid(format!(
                "margin {g} ({generator:?}) refers to variable {v}, but the table has {d} \
                 variables (0..{})",
                d.saturating_sub(1)
            )));
        }
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(CoreError::invalid(format!(
                "margin {g} ({generator:?}) lists a variable twice"
            )));
        }
        out.push(sorted);
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    Ok(out)
}

fn check_table(table: &[f64], levels: &[usize]) -> CoreResult<usize> {
    let cells = n_cells(levels)?;
    if table.len() != cells {
        return Err(CoreError::shape(format!(
            "table has {} cells, but levels {levels:?} give {cells}",
            table.len()
        )));
    }
    check_nonnegative(table, "observed")?;
    // the margins and fitted values are sums and products of the counts: a total past f64
    // would make them inf or NaN (and the deviation test of IPF blind to it)
    let total: f64 = table.iter().sum();
    if !total.is_finite() {
        return Err(CoreError::invalid(format!(
            "the table's total ({total}) overflows float64; rescale the counts"
        )));
    }
    Ok(cells)
}

/// For one set of variables: the margin index of every cell, and the number of margin cells.
fn margin_map(levels: &[usize], vars: &[usize]) -> (Vec<u32>, usize) {
    let cells: usize = levels.iter().product();
    let table_strides = strides(levels);
    let sub_levels: Vec<usize> = vars.iter().map(|&v| levels[v]).collect();
    let sub_strides = strides(&sub_levels);
    let size: usize = sub_levels.iter().product();
    let map = (0..cells)
        .map(|cell| {
            let mut index = 0usize;
            for (&v, &s) in vars.iter().zip(&sub_strides) {
                index += (cell / table_strides[v]) % levels[v] * s;
            }
            index as u32
        })
        .collect();
    (map, size)
}

fn margin_sums(values: &[f64], map: &[u32], size: usize) -> Vec<f64> {
    let mut sums = vec![0.0; size];
    for (&v, &m) in values.iter().zip(map) {
        sums[m as usize] += v;
    }
    sums
}

/// Iterative proportional fitting of the hierarchical model with generating class `margins`
/// (lists of variable indices) to `table` (C order, `levels` per variable), starting from 1 in
/// every cell as R's `stats::loglin` does. A cycle adjusts the fitted table to each generator's
/// observed margin in turn; it stops after the first cycle whose largest margin deviation
/// (measured before adjusting) is below `tol`, or after `max_iter` cycles (then
/// `converged = false`; raising is the caller's choice).
pub fn ipf(
    table: &[f64],
    levels: &[usize],
    margins: &[Vec<usize>],
    tol: f64,
    max_iter: usize,
) -> CoreResult<IpfFit> {
    let cells = check_table(table, levels)?;
    if !(tol.is_finite() && tol > 0.0) {
        return Err(CoreError::invalid(format!(
            "tol must be finite and > 0, got {tol}"
        )));
    }
    if max_iter == 0 {
        return Err(CoreError::invalid("max_iter must be at least 1"));
    }
    if cells > u32::MAX as usize {
        return Err(CoreError::invalid("table too large for IPF"));
    }
    let generators = normalise_margins(margins, levels.len())?;
    let maps: Vec<(Vec<u32>, usize)> = generators.iter().map(|g| margin_map(levels, g)).collect();
    let observed: Vec<Vec<f64>> = maps
        .iter()
        .map(|(map, size)| margin_sums(table, map, *size))
        .collect();
    let mut fitted = vec![1.0; cells];
    let mut max_deviation = f64::INFINITY;
    for iteration in 1..=max_iter {
        max_deviation = 0.0;
        for ((map, size), obs) in maps.iter().zip(&observed) {
            let fit = margin_sums(&fitted, map, *size);
            let mut factors = vec![0.0; *size];
            for ((f, &o), &m) in factors.iter_mut().zip(obs).zip(&fit) {
                max_deviation = f64::max(max_deviation, (o - m).abs());
                *f = if m > 0.0 { o / m } else { 0.0 };
            }
            let adjust = |(v, &m): (&mut f64, &u32)| *v *= factors[m as usize];
            if cells >= PAR_CELLS {
                fitted.par_iter_mut().zip(map.par_iter()).for_each(adjust);
            } else {
                fitted.iter_mut().zip(map.iter()).for_each(adjust);
            }
        }
        if max_deviation < tol {
            check_fitted(&fitted)?;
            return Ok(IpfFit {
                fitted,
                iterations: iteration,
                converged: true,
                max_deviation,
            });
        }
    }
    check_fitted(&fitted)?;
    Ok(IpfFit {
        fitted,
        iterations: max_iter,
        converged: false,
        max_deviation,
    })
}

/// A perfect (running-intersection) ordering of a decomposable generating class: the reduced
/// generators (duplicates and generators contained in another removed) in an order where each
/// generator's intersection with the union of the earlier ones (its separator) lies inside one
/// earlier generator. `None` if the class is not decomposable (its hypergraph is cyclic, e.g.
/// `[AB][BC][AC]`). Found by GYO reduction, which is order-independent.
pub fn decomposable_order(margins: &[Vec<usize>], d: usize) -> CoreResult<Option<Vec<Clique>>> {
    let generators = normalise_margins(margins, d)?;
    // reduce: drop duplicates and generators contained in another generator
    let mut reduced: Vec<Vec<usize>> = Vec::new();
    for (g, gen) in generators.iter().enumerate() {
        let contained = generators.iter().enumerate().any(|(h, other)| {
            h != g && is_subset(gen, other) && (gen.len() < other.len() || h < g)
        });
        if !contained {
            reduced.push(gen.clone());
        }
    }
    // GYO: repeatedly delete vertices found in one edge only, and edges inside another edge
    let mut edges: Vec<Vec<usize>> = reduced.clone();
    let mut alive = vec![true; edges.len()];
    let mut removed: Vec<usize> = Vec::new();
    // only the variables of the generators (d may be far larger than their number)
    let mut vertices: Vec<usize> = reduced.iter().flatten().copied().collect();
    vertices.sort_unstable();
    vertices.dedup();
    loop {
        let mut changed = false;
        for &v in &vertices {
            let holders: Vec<usize> = (0..edges.len())
                .filter(|&e| alive[e] && edges[e].contains(&v))
                .collect();
            if let [only] = holders[..] {
                edges[only].retain(|&x| x != v);
                changed = true;
            }
        }
        for e in 0..edges.len() {
            if !alive[e] {
                continue;
            }
            let absorbed =
                (0..edges.len()).any(|f| f != e && alive[f] && is_subset(&edges[e], &edges[f]));
            if absorbed {
                alive[e] = false;
                removed.push(e);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let remaining: Vec<usize> = (0..edges.len()).filter(|&e| alive[e]).collect();
    if remaining.len() > 1 {
        return Ok(None);
    }
    let order: Vec<usize> = remaining
        .into_iter()
        .chain(removed.into_iter().rev())
        .collect();
    let mut cliques = Vec::with_capacity(order.len());
    let mut union: Vec<usize> = Vec::new();
    for (t, &e) in order.iter().enumerate() {
        let vars = reduced[e].clone();
        let separator: Vec<usize> = vars.iter().copied().filter(|v| union.contains(v)).collect();
        // running intersection: the separator lies inside one earlier clique
        if t > 0
            && !order[..t]
                .iter()
                .any(|&f| is_subset(&separator, &reduced[f]))
        {
            return Ok(None);
        }
        for &v in &vars {
            if !union.contains(&v) {
                union.push(v);
            }
        }
        cliques.push(Clique { vars, separator });
    }
    Ok(Some(cliques))
}

/// One generator of a perfect ordering and its separator with the earlier generators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clique {
    pub vars: Vec<usize>,
    pub separator: Vec<usize>,
}

fn is_subset(a: &[usize], b: &[usize]) -> bool {
    a.iter().all(|x| b.contains(x))
}

/// Whether the hierarchical model with this generating class is decomposable.
pub fn is_decomposable(margins: &[Vec<usize>], d: usize) -> CoreResult<bool> {
    Ok(decomposable_order(margins, d)?.is_some())
}

/// Fitted values of a decomposable model in closed form (no iteration):
/// `m = Π_t n(C_t) / Π_t n(S_t) / Π_{v unused} levels_v` over a perfect ordering of the
/// generators `C_t` with separators `S_t` (`n(∅) = N`, 0/0 = 0). This is the maximum likelihood
/// estimate IPF converges to. Error if the model is not decomposable.
pub fn closed_form(
    table: &[f64],
    levels: &[usize],
    margins: &[Vec<usize>],
) -> CoreResult<Vec<f64>> {
    let cells = check_table(table, levels)?;
    if cells > u32::MAX as usize {
        return Err(CoreError::invalid("table too large for the closed form"));
    }
    let Some(cliques) = decomposable_order(margins, levels.len())? else {
        return Err(CoreError::invalid(format!(
            "the model {margins:?} is not decomposable (its generators do not form a \
             junction tree), so it has no closed form; fit it with IPF"
        )));
    };
    let mut fitted = vec![1.0; cells];
    let mut used = vec![false; levels.len()];
    for (t, clique) in cliques.iter().enumerate() {
        for &v in &clique.vars {
            used[v] = true;
        }
        let (map, size) = margin_map(levels, &clique.vars);
        let numerator = margin_sums(table, &map, size);
        if t == 0 {
            for (f, &m) in fitted.iter_mut().zip(&map) {
                *f = numerator[m as usize];
            }
            continue;
        }
        let (smap, ssize) = margin_map(levels, &clique.separator);
        let denominator = margin_sums(table, &smap, ssize);
        for ((f, &m), &s) in fitted.iter_mut().zip(&map).zip(&smap) {
            let den = denominator[s as usize];
            // the ratio first (a clique's margin is at most its separator's, so it is ≤ 1):
            // the product of two large margins would overflow
            *f = if den > 0.0 {
                *f * (numerator[m as usize] / den)
            } else {
                0.0
            };
        }
    }
    let unused: f64 = levels
        .iter()
        .zip(&used)
        .filter(|(_, &u)| !u)
        .map(|(&l, _)| l as f64)
        .product();
    if unused != 1.0 {
        for f in fitted.iter_mut() {
            *f /= unused;
        }
    }
    check_fitted(&fitted)?;
    Ok(fitted)
}

/// An error if a fitted value is not finite (an overflow the total's check could not see).
fn check_fitted(fitted: &[f64]) -> CoreResult<()> {
    match fitted.iter().position(|f| !f.is_finite()) {
        Some(cell) => Err(CoreError::invalid(format!(
            "fitted value of cell {cell} is {}: the counts are too large for float64; rescale \
             them",
            fitted[cell]
        ))),
        None => Ok(()),
    }
}
