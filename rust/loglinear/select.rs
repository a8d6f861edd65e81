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
//! half-integers, so every `x ln x` is a table look-up.
//!
//! Each step works on X packed as bits (256 features per `Lane`) with the samples sorted by
//! stratum, one parallel task per latent unit and lane of features:
//!
//! * the cells (u, s) of a stratum whose two cells hold at most `SMALL` samples each are
//!   summarised by their class — all x = 1, all x = 0, or mixed with κ or a − κ ones — kept in
//!   bit-sliced per-feature counters, 256 features per operation (see "Small cells by class"
//!   below);
//! * in larger strata the smaller cell is counted bit-sliced (Harley–Seal carry-save adders),
//!   the other one is the stratum's total minus it, and the per-feature terms are table
//!   look-ups, except that a smaller cell of at most `SMALL` samples goes to the class
//!   counters; in strata of at most `TABLE_MAX` samples from byte counts
//!   (`LaneSums::add_cells`; AVX2 when available, and with AVX-512 the table rows of cells
//!   of at most 31 samples held in registers);
//! * the strata's per-feature totals are counted for the smaller of two siblings only: the
//!   larger one is their parent's (previous step) minus it; strata of at most `TABLE_MAX`
//!   samples keep them as bytes.
//!
//! Every sum is exact integer counting followed by the same floating-point operations in a fixed
//! order, so the results do not depend on the number of threads.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::table::xlogx;
use crate::error::{CoreError, CoreResult};

/// Relative tolerance under which two G² count as equal: a permutation statistic and the observed
/// one, and the candidates of a step (see [`step_winner`]). Mathematically equal G² from
/// differently arranged tables (a feature and its complement, the two features of a pair)
/// differ by rounding, about 1e-13 relative.
const TIE_TOLERANCE: f64 = 1e-10;

/// Most features a selection may take (see [`validate`]: the filled table has 2^(k + 2) cells).
const MAX_SELECT: usize = 40;

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
        // a vectorised test first; the position only for the error message
        let valid = data
            .chunks(4096)
            .all(|c| c.iter().fold(0, |acc, &v| acc | v) <= 1);
        let first_invalid = match valid {
            true => None,
            false => data.iter().position(|&v| v > 1),
        };
        if let Some(pos) = first_invalid {
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
    /// Number of occupied strata.
    m: usize,
    /// Samples sorted by stratum (stable); empty when not tracked (see
    /// [`Strata::whole_unordered`]).
    order: Vec<u32>,
    /// `offsets[s]..offsets[s + 1]` is stratum `s` in `order`.
    offsets: Vec<usize>,
    /// Stratum of the previous step that each one was split from (empty when not known):
    /// the children of a stratum are consecutive, x = 0 first.
    parent: Vec<u32>,
}

/// Parts of the strata whose sums are computed apart (see [`Strata::parts`]).
const SCORE_PARTS: usize = 2;

/// Strata from which a step's sums are computed in [`SCORE_PARTS`] parts.
const PARTS_MIN_STRATA: usize = 64;

/// Fewest families of large strata per parallel task of [`StepData::large_totals`].
const FAMILIES_PER_TASK: usize = 32;

/// Samples per parallel task of [`Strata::split_sorted`] (whole strata, so a task may hold more).
const SPLIT_CHUNK: usize = 2048;

impl Strata {
    fn whole(n: usize) -> Self {
        Self {
            order: (0..n as u32).collect(),
            ..Self::whole_unordered(n)
        }
    }

    /// [`Strata::whole`] without the samples' order, which [`Strata::split_sorted`] then does
    /// not move (the selection needs it for permutation p-values only).
    fn whole_unordered(n: usize) -> Self {
        Self {
            m: 1,
            order: Vec::new(),
            offsets: vec![0, n],
            parent: Vec::new(),
        }
    }

    /// Number of samples.
    fn samples(&self) -> usize {
        self.offsets[self.m]
    }

    /// Stratum of every sample (dense, 0..m).
    fn ids(&self) -> Vec<u32> {
        let mut id = vec![0u32; self.order.len()];
        for (s, range) in self.offsets.windows(2).enumerate() {
            for &t in &self.order[range[0]..range[1]] {
                id[t as usize] = s as u32;
            }
        }
        id
    }

    /// Split every stratum by a binary column (new ids in order of (old id, value)).
    fn split(&self, value: impl Fn(usize) -> u8) -> Self {
        let old = self.ids();
        let mut counts = vec![0usize; 2 * self.m];
        for (t, &s) in old.iter().enumerate() {
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
        let mut next = offsets[..m].to_vec();
        let mut order = vec![0u32; old.len()];
        for (t, &s) in old.iter().enumerate() {
            let s = dense[2 * s as usize + value(t) as usize] as usize;
            order[next[s]] = t as u32;
            next[s] += 1;
        }
        Self {
            m,
            order,
            offsets,
            parent: Vec::new(),
        }
    }

    /// Moves the rows of the run of strata `strata` to their places in the next order (its
    /// piece of the outputs `x`, `u`, `o`; `o` is empty and not written without `ORDER`): in
    /// each stratum the samples with feature `bit` = 0 first, then those with 1, each in their
    /// order. Returns the run's new boundaries, each with the stratum it ends a part of.
    /// `(g, w)`: lanes and unit words per row.
    #[inline(always)]
    fn partition_run<const ORDER: bool>(
        &self,
        rows: &SortedRows,
        bit: usize,
        strata: std::ops::Range<usize>,
        (x, u, o): (&mut [Lane], &mut [u64], &mut [u32]),
        (g, w): (usize, usize),
    ) -> Vec<(usize, u32)> {
        let base = self.offsets[strata.start];
        let (lane, word, shift) = (bit / LANE, (bit % LANE) / 64, bit % 64);
        let bit_of = |row: &[Lane]| ((row[lane].0[word] >> shift) & 1) as usize;
        let mut bounds = Vec::with_capacity(2 * strata.len());
        for s in strata {
            let (lo, hi) = (self.offsets[s], self.offsets[s + 1]);
            // the stratum's rows of X (g ≥ 1 lanes each) with their samples
            let xs = &rows.x[lo * g..hi * g];
            // one pass: the zeros forward from the start, the ones backward from the end,
            // then the ones reversed into their order
            let (start, end) = (lo - base, hi - base);
            let (mut zero, mut one) = (start, end);
            for (pos, row) in (lo..hi).zip(xs.chunks_exact(g)) {
                // without a branch: the bits are unpredictable
                let set = bit_of(row);
                one -= set;
                let to = if set == 1 { one } else { zero };
                zero += 1 - set;
                x[to * g..(to + 1) * g].copy_from_slice(row);
                copy_row(u, &rows.u, to, pos, w);
                if ORDER {
                    o[to] = self.order[pos];
                }
            }
            reverse_rows(&mut x[zero * g..end * g], g);
            reverse_rows(&mut u[zero * w..end * w], w);
            if ORDER {
                o[zero..end].reverse();
            }
            let zeros = zero - start;
            if zeros > 0 && zeros < hi - lo {
                bounds.push((lo + zeros, s as u32));
            }
            bounds.push((hi, s as u32));
        }
        bounds
    }

    /// The strata in consecutive runs of about equal numbers of samples, the parts of a step's
    /// sums that [`StepData::scores`] computes apart: [`SCORE_PARTS`] of them from
    /// [`PARTS_MIN_STRATA`] strata on (fewer if a huge stratum spans two targets), else one.
    /// Late steps have many strata and the longest tasks, whose last ones the threads then
    /// share. The parts depend on the strata only, so the scores do not depend on the threads.
    fn parts(&self) -> Vec<std::ops::Range<usize>> {
        let offsets = &self.offsets;
        let n = self.samples();
        let mut parts = Vec::with_capacity(SCORE_PARTS);
        let mut start = 0;
        let split = if self.m >= PARTS_MIN_STRATA {
            SCORE_PARTS
        } else {
            1
        };
        for part in 1..split {
            // the first stratum boundary at or past part/split of the samples
            let target = n * part / split;
            let end = offsets[start + 1..self.m]
                .iter()
                .position(|&offset| offset >= target)
                .map_or(self.m, |q| start + 1 + q);
            if end < self.m {
                parts.push(start..end);
                start = end;
            }
        }
        parts.push(start..self.m);
        parts
    }

    fn size(&self, s: usize) -> u32 {
        (self.offsets[s + 1] - self.offsets[s]) as u32
    }

    /// Where stratum `s`'s per-feature counts come from, given the entry of each stratum of
    /// the previous step among those that kept counts (`entry(parent)`: none or `u32::MAX`
    /// without one): its parent's minus its sibling's when the sibling is smaller (or as large
    /// and first), its parent's when it is an only child, else counted from its rows.
    fn origin(&self, s: usize, entry: impl Fn(usize) -> Option<u32>) -> Origin {
        let parent = self.parent.get(s).map(|&from| from as usize);
        let (Some(from), Some(slot)) = (parent, parent.and_then(&entry)) else {
            return Origin::Counted;
        };
        if slot == u32::MAX {
            return Origin::Counted;
        }
        let sibling = [s.wrapping_sub(1), s + 1]
            .into_iter()
            .find(|&q| self.parent.get(q) == Some(&(from as u32)));
        let size = |s: usize| self.size(s);
        match sibling {
            None => Origin::Parent(slot as usize),
            Some(q) => match size(s) < size(q) || (size(s) == size(q) && s < q) {
                true => Origin::Counted,
                false => Origin::Difference(slot as usize, q),
            },
        }
    }

    /// [`Strata::split`] by feature `bit` of the samples' rows in stratum order,
    /// moving the rows with their samples: a stable partition of each stratum (x = 0 first)
    /// written into `next`, so the rows never have to be gathered from the original order.
    /// Strata keep their positions, so runs of whole strata are partitioned in parallel.
    fn split_sorted(&self, rows: &SortedRows, bit: usize, next: &mut SortedRows) -> Self {
        let (g, w) = (rows.groups, rows.words);
        // runs of whole strata of at least SPLIT_CHUNK samples: [first stratum, last + 1)
        let mut runs = vec![0usize];
        for s in 1..self.m {
            if self.offsets[s] - self.offsets[runs[runs.len() - 1]] >= SPLIT_CHUNK {
                runs.push(s);
            }
        }
        runs.push(self.m);
        // the order only if this one has it (empty otherwise)
        let mut order = vec![0u32; self.order.len()];
        // the runs' disjoint pieces of the outputs
        let mut pieces = Vec::with_capacity(runs.len() - 1);
        let (mut x_rest, mut u_rest, mut order_rest) =
            (&mut next.x[..], &mut next.u[..], &mut order[..]);
        for run in runs.windows(2) {
            let len = self.offsets[run[1]] - self.offsets[run[0]];
            let (x, x_tail) = std::mem::take(&mut x_rest).split_at_mut(len * g);
            let (u, u_tail) = std::mem::take(&mut u_rest).split_at_mut(len * w);
            let tracked = len.min(order_rest.len());
            let (o, o_tail) = std::mem::take(&mut order_rest).split_at_mut(tracked);
            (x_rest, u_rest, order_rest) = (x_tail, u_tail, o_tail);
            pieces.push((run[0]..run[1], x, u, o));
        }
        // per run: the boundaries of its new strata (one lane and one word per row, the usual
        // case, compiled on its own so that the row copies are single moves)
        let bounds: Vec<Vec<(usize, u32)>> = pieces
            .into_par_iter()
            .map(|(strata, x, u, o)| match (g, w, o.is_empty()) {
                (1, 1, true) => self.partition_run::<false>(rows, bit, strata, (x, u, o), (1, 1)),
                (_, _, true) => self.partition_run::<false>(rows, bit, strata, (x, u, o), (g, w)),
                (_, _, false) => self.partition_run::<true>(rows, bit, strata, (x, u, o), (g, w)),
            })
            .collect();
        let mut offsets = Vec::with_capacity(2 * self.m + 1);
        let mut parent = Vec::with_capacity(2 * self.m);
        offsets.push(0);
        for (bound, from) in bounds.into_iter().flatten() {
            offsets.push(bound);
            parent.push(from);
        }
        Self {
            m: offsets.len() - 1,
            order,
            offsets,
            parent,
        }
    }
}

/// Bit rows of X (`groups` lanes per sample) and of U (`words` words per sample) in the order
/// of the samples by stratum.
#[derive(Clone)]
struct SortedRows {
    x: Vec<Lane>,
    groups: usize,
    u: Vec<u64>,
    words: usize,
}

/// Buffers of a selection that the next one reuses: both pairs of bit rows of the split (the
/// spare one, and the one X and U are packed into), and both buffers of [`LargeTotals`] and of
/// [`WideCells`]. Repeated selections on data of one size
/// (monitoring during training, benchmarks) then write into memory that is already mapped and
/// cached, instead of new allocations whose fresh pages cost a page fault each and whose
/// growth from step to step copies them: 0.94–0.97 of the time on the benchmark selection (n
/// = 10,000, p = 200, r = 10, k = 12; medians of 400 paired calls from Python). Every step
/// writes the entries it reads, so stale contents do not matter.
#[derive(Default)]
struct Scratch {
    rows: Vec<Lane>,
    units: Vec<u64>,
    /// The buffers X and U are packed into (the other pair of the split's buffers).
    packed_rows: Vec<Lane>,
    packed_units: Vec<u64>,
    totals: [LargeTotals; 2],
    cells: [WideCells; 2],
}

/// The last selection's [`Scratch`], until the next one takes it.
static SCRATCH: std::sync::Mutex<Option<Scratch>> = std::sync::Mutex::new(None);

/// Largest [`Scratch`] kept between selections, in bytes.
const SCRATCH_KEPT: usize = 64 << 20;

impl Scratch {
    /// The last selection's buffers, or empty ones when another selection running at the same
    /// time has them. `try_lock`: never waits (a process forked while another thread held
    /// the lock would wait forever).
    fn take() -> Self {
        SCRATCH
            .try_lock()
            .ok()
            .and_then(|mut kept| kept.take())
            .unwrap_or_default()
    }

    /// Keeps the buffers for the next selection, unless they are larger than
    /// [`SCRATCH_KEPT`] (or another selection is handing back its own just now).
    fn keep(self) {
        if self.bytes() <= SCRATCH_KEPT {
            if let Ok(mut kept) = SCRATCH.try_lock() {
                *kept = Some(self);
            }
        }
    }

    /// Memory held, in bytes.
    fn bytes(&self) -> usize {
        let totals: usize = self
            .totals
            .iter()
            .map(|t| {
                4 * t.slot.capacity() + LANE * t.narrow.capacity() + 4 * LANE * t.wide.capacity()
            })
            .sum();
        let cells: usize = self
            .cells
            .iter()
            .map(|c| 4 * c.slot.capacity() + 4 * LANE * c.counts.capacity())
            .sum();
        std::mem::size_of::<Lane>() * (self.rows.capacity() + self.packed_rows.capacity())
            + 8 * (self.units.capacity() + self.packed_units.capacity())
            + totals
            + cells
    }
}

/// Reverses the order of the rows of `rows` (`width` elements each).
#[inline(always)]
fn reverse_rows<T>(rows: &mut [T], width: usize) {
    match width {
        0 => {}
        1 => rows.reverse(),
        _ => {
            let count = rows.len() / width;
            for k in 0..count / 2 {
                let (head, tail) = rows.split_at_mut((count - 1 - k) * width);
                head[k * width..(k + 1) * width].swap_with_slice(&mut tail[..width]);
            }
        }
    }
}

/// Copies row `from` of `src` to row `to` of `dst` (`width` elements per row); one element per
/// row, the usual case, without a `memcpy` call.
#[inline(always)]
fn copy_row<T: Copy>(dst: &mut [T], src: &[T], to: usize, from: usize, width: usize) {
    match width {
        0 => {}
        1 => dst[to] = src[from],
        _ => dst[to * width..(to + 1) * width]
            .copy_from_slice(&src[from * width..(from + 1) * width]),
    }
}

/// `(d/2) ln(d/2)` for the doubled half-integer counts `d = 0 ..= 2 · max + 4`, on the calling
/// thread: the tables are built under a lock or a `OnceLock` initialisation, where waiting for
/// rayon work could take up another selection's job that wants the same lock, which would then
/// wait forever (and a selection keeps its tables, so they are built about once).
fn half_log_table(max: usize) -> Vec<f64> {
    (0..=2 * max + 4).map(|d| xlogx(d as f64 / 2.0)).collect()
}

/// The `x ln x` tables of a selection: `h[d] = (d/2) ln(d/2)` and `g[c] = c ln c = h[2c]`.
struct LogTables {
    h: Vec<f64>,
    g: Vec<f64>,
}

/// Entries of `h` up to which [`LogTables::shared`] keeps the tables for later calls (16 MiB).
const SHARED_LOG_ENTRIES: usize = 1 << 21;

impl LogTables {
    fn new(max: usize) -> Self {
        let h = half_log_table(max);
        let g = h.iter().step_by(2).copied().collect();
        Self { h, g }
    }

    /// Tables reaching at least `max` (`h` at least `2 · max + 4`): the ones kept from an
    /// earlier call when they reach far enough (the entries depend on nothing but `d`, so a
    /// longer table gives the same values), else new ones, kept for later calls while they
    /// are at most [`SHARED_LOG_ENTRIES`] long. A selection scores in a few milliseconds, so
    /// computing ~3·10^4 logarithms each time would be a noticeable part of it.
    fn shared(max: usize) -> std::sync::Arc<Self> {
        static KEPT: std::sync::Mutex<Option<std::sync::Arc<LogTables>>> =
            std::sync::Mutex::new(None);
        // a poisoned lock still holds a complete table (it is replaced whole)
        let mut kept = KEPT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tables) = kept.as_ref().filter(|t| t.h.len() > 2 * max + 4) {
            return std::sync::Arc::clone(tables);
        }
        let tables = std::sync::Arc::new(Self::new(max));
        if tables.h.len() <= SHARED_LOG_ENTRIES {
            *kept = Some(std::sync::Arc::clone(&tables));
        }
        tables
    }
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
#[allow(clippy::too_many_arguments)]
fn finish_marginal(
    h: &[f64],
    half: f64,
    empty0: u32,
    empty1: u32,
    ones: u32,
    n: usize,
    unoccupied: f64,
    cells_per_stratum: f64,
) -> f64 {
    let (d0, d1) = doubled_margins(empty0, empty1, ones, n, unoccupied, cells_per_stratum);
    let terms = [d0, d1, d0 + d1].map(|d| doubled_xlogx(h, d));
    combine_marginal(half, terms, unoccupied, cells_per_stratum)
}

/// The doubled filled x margins `(2 n'(x = 0), 2 n'(x = 1))` of a marginal model (see
/// [`finish_marginal`]), integers: each empty cell of 0.5 counts once. The unoccupied strata's
/// empty cells (`cells_per_stratum · unoccupied` per x value) are an exact integer of
/// magnitude below 2^53, negative after the first step without latent units, which selects a
/// pair.
#[inline(always)]
fn doubled_margins(
    empty0: u32,
    empty1: u32,
    ones: u32,
    n: usize,
    unoccupied: f64,
    cells_per_stratum: f64,
) -> (i64, i64) {
    let absent = (cells_per_stratum * unoccupied) as i64;
    let zeros = 2 * (n as i64 - ones as i64) + empty0 as i64 + absent;
    (zeros, 2 * ones as i64 + empty1 as i64 + absent)
}

/// `x ln x` of `x = d / 2`, from the table `h` (`h[d]`) when `d` is in range (same value).
#[inline(always)]
fn doubled_xlogx(h: &[f64], d: i64) -> f64 {
    match usize::try_from(d).ok().and_then(|d| h.get(d)) {
        Some(&term) => term,
        None => xlogx(d as f64 / 2.0),
    }
}

/// G² of a marginal model from its stratum sum and `x ln x` of n'(x = 0), n'(x = 1) and N'.
#[inline(always)]
fn combine_marginal(half: f64, terms: [f64; 3], unoccupied: f64, cells_per_stratum: f64) -> f64 {
    // each unoccupied stratum: cells_per_stratum·2 cells of 0.5, margins of 1
    let constant = -cells_per_stratum * std::f64::consts::LN_2 * unoccupied;
    2.0 * (half + constant - terms[0] - terms[1] + terms[2])
}

/// [`finish_marginal`] of one lane's features (`ones` of each), with the same values: the
/// doubled margins first, then their table look-ups in a loop of their own (independent loads
/// the CPU overlaps), then the sums.
fn finish_marginal_lane(
    h: &[f64],
    sums: &LaneSums,
    ones: &[u32],
    n: usize,
    unoccupied: f64,
    cells_per_stratum: f64,
) -> Vec<f64> {
    let flags = sums.empty0.iter().zip(&sums.empty1);
    flags
        .zip(ones)
        .zip(&sums.half)
        .map(|(((&e0, &e1), &ones), &half)| {
            let (d0, d1) = doubled_margins(e0, e1, ones, n, unoccupied, cells_per_stratum);
            let terms = [d0, d1, d0 + d1].map(|d| doubled_xlogx(h, d));
            combine_marginal(half, terms, unoccupied, cells_per_stratum)
        })
        .collect()
}

#[inline(always)]
fn add_row(acc: &mut [u32], row: &[u8]) {
    for (a, &x) in acc.iter_mut().zip(row) {
        *a += x as u32;
    }
}

// ---------------------------------------------------------------------------------------------
// Bit-sliced counting
//
// A sample's features are packed into bits, `LANE` features per `Lane`. The counts of ones of
// a group of features over a set of samples are kept bit-sliced: plane q is a `Lane` holding
// bit q of every feature's count, so adding a sample adds 256 features at once with a few word
// operations (a ripple-carry or carry-save adder over the planes).
// ---------------------------------------------------------------------------------------------

/// Features per lane.
const LANE: usize = 256;

/// One bit for each of [`LANE`] features (feature `64·w + b` of the lane is bit `b` of word
/// `w`); with AVX2 its bitwise operations are single 256-bit instructions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Lane([u64; 4]);

impl Lane {
    const ZERO: Self = Self([0; 4]);
    const ONES: Self = Self([u64::MAX; 4]);

    #[inline(always)]
    fn zip_with(self, other: Self, f: impl Fn(u64, u64) -> u64) -> Self {
        let (a, b) = (self.0, other.0);
        Self([f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]), f(a[3], b[3])])
    }
}

impl std::ops::BitAnd for Lane {
    type Output = Self;
    #[inline(always)]
    fn bitand(self, other: Self) -> Self {
        self.zip_with(other, |a, b| a & b)
    }
}

impl std::ops::BitOr for Lane {
    type Output = Self;
    #[inline(always)]
    fn bitor(self, other: Self) -> Self {
        self.zip_with(other, |a, b| a | b)
    }
}

impl std::ops::BitXor for Lane {
    type Output = Self;
    #[inline(always)]
    fn bitxor(self, other: Self) -> Self {
        self.zip_with(other, |a, b| a ^ b)
    }
}

impl std::ops::Not for Lane {
    type Output = Self;
    #[inline(always)]
    fn not(self) -> Self {
        Self(self.0.map(|a| !a))
    }
}

/// Bit planes needed for the counts `0 ..= max`.
const fn plane_count(max: usize) -> usize {
    (usize::BITS - max.leading_zeros()) as usize
}

/// Adds one bit per feature (`carry`) to the bit-sliced counts `planes`, which must hold the
/// resulting counts. Through every plane, without a test for a carry that ran out: that
/// branch depends on the data and was mispredicted about once in ten (cachegrind), which
/// costs more than the few planes (at most `plane_count` of the cell or counter) it skips.
#[inline(always)]
fn ripple_add(planes: &mut [Lane], mut carry: Lane) {
    for plane in planes {
        let next = *plane & carry;
        *plane = *plane ^ carry;
        carry = next;
    }
}

/// Carry-save adder of three bits per feature: `(carry, sum)`.
#[inline(always)]
fn csa(a: Lane, b: Lane, c: Lane) -> (Lane, Lane) {
    let u = a ^ b;
    ((a & b) | (u & c), u ^ c)
}

/// Adds 16 rows to the bit-sliced counts `planes` (at least 5 planes) with a Harley–Seal
/// carry-save tree: planes 0–3 take the ones, twos, fours and eights of the batch and only its
/// sixteens ripple into the higher planes (about 5 operations per row). `row(k)` gives row k of
/// the batch (k = 0 ..= 15), read as the tree needs it.
#[inline(always)]
fn add_sixteen(planes: &mut [Lane], row: impl Fn(usize) -> Lane) {
    let (mut ones, mut twos, mut fours) = (planes[0], planes[1], planes[2]);
    let mut eights = [Lane::ZERO; 2];
    for (half, eights_out) in eights.iter_mut().enumerate() {
        let mut fours_pair = [Lane::ZERO; 2];
        for (quad, fours_out) in fours_pair.iter_mut().enumerate() {
            let k = 8 * half + 4 * quad;
            let (twos_a, sum) = csa(ones, row(k), row(k + 1));
            let (twos_b, sum) = csa(sum, row(k + 2), row(k + 3));
            ones = sum;
            let (carry, sum) = csa(twos, twos_a, twos_b);
            twos = sum;
            *fours_out = carry;
        }
        let (carry, sum) = csa(fours, fours_pair[0], fours_pair[1]);
        fours = sum;
        *eights_out = carry;
    }
    let (sixteens, sum) = csa(planes[3], eights[0], eights[1]);
    planes[..4].copy_from_slice(&[ones, twos, fours, sum]);
    ripple_add(&mut planes[4..], sixteens);
}

/// Per-feature counts from bit-sliced planes: `counts[b] = Σ_q 2^q · (bit b of plane q)`
/// (`counts` holds the [`LANE`] features of the planes).
#[inline(always)]
fn unslice(planes: &[Lane], counts: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if counts.len() == LANE && has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::unslice(planes, counts) };
    }
    for count in counts.iter_mut() {
        *count = 0;
    }
    for (q, plane) in planes.iter().enumerate() {
        let halves = plane.0.iter().flat_map(|&w| [w as u32, (w >> 32) as u32]);
        for (out, bits) in counts.chunks_exact_mut(32).zip(halves) {
            if bits != 0 {
                for (b, count) in out.iter_mut().enumerate() {
                    *count |= ((bits >> b) & 1) << q;
                }
            }
        }
    }
}

/// [`unslice`] into bytes, for counts below 256 (at most eight planes).
#[inline(always)]
fn unslice_bytes(planes: &[Lane], counts: &mut [u8; LANE]) {
    debug_assert!(planes.len() <= 8);
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F and BW (checked just above).
        return unsafe { avx512::unslice_bytes(&planes[..planes.len().min(8)], counts) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::unslice_bytes(&planes[..planes.len().min(8)], counts) };
    }
    let mut wide = [0u32; LANE];
    unslice(&planes[..planes.len().min(8)], &mut wide);
    *counts = wide.map(|c| c as u8);
}

/// Features whose bit-sliced count equals `value`.
#[inline(always)]
fn equals(planes: &[Lane], value: usize) -> Lane {
    planes
        .iter()
        .enumerate()
        .fold(Lane::ONES, |acc, (q, &plane)| {
            // plane where bit q of value is 1, its complement where 0, without a branch on it
            let flip = ((value >> q) & 1) as u64 ^ 1;
            acc & (plane ^ Lane([flip.wrapping_neg(); 4]))
        })
}

/// AVX2 versions of the per-feature loops that do not vectorise by themselves.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Lane, TableRow, LANE};
    use std::arch::x86_64::*;

    /// [`super::unslice`]: each 32-bit piece of the planes becomes bytes ([`piece_bytes`]), 8
    /// planes at a time, then widened to `u32`.
    ///
    /// # Safety
    /// The CPU must support AVX2; `counts` holds [`LANE`] features.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn unslice(planes: &[Lane], counts: &mut [u32]) {
        debug_assert_eq!(counts.len(), LANE);
        for (piece, out) in counts.chunks_exact_mut(32).enumerate() {
            let mut total = [_mm256_setzero_si256(); 4];
            for (group, eight) in planes.chunks(8).enumerate() {
                let bytes = piece_bytes(eight, piece);
                let (lo, hi) = (
                    _mm256_castsi256_si128(bytes),
                    _mm256_extracti128_si256::<1>(bytes),
                );
                let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
                let shift = _mm_cvtsi32_si128(8 * group as i32);
                for (t, part) in total.iter_mut().zip(parts) {
                    *t = _mm256_or_si256(*t, _mm256_sll_epi32(_mm256_cvtepu8_epi32(part), shift));
                }
            }
            for (dst, t) in out.chunks_exact_mut(8).zip(total) {
                _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, t);
            }
        }
    }

    /// The 32 counts of piece `piece` (32 features) of at most eight planes as bytes: the
    /// piece of each plane is broadcast and spread to 32 bytes (0 or −1), accumulated by
    /// Horner's rule (double, subtract) from the highest plane down.
    #[inline(always)]
    unsafe fn piece_bytes(planes: &[Lane], piece: usize) -> __m256i {
        // byte k of the 32 takes byte k / 8 of the piece (within each 128-bit half)
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let select = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        let index = _mm256_set1_epi32(piece as i32);
        let mut bytes = _mm256_setzero_si256();
        for plane in planes.iter().rev() {
            let plane = _mm256_loadu_si256(plane.0.as_ptr() as *const __m256i);
            let piece = _mm256_permutevar8x32_epi32(plane, index);
            let spread = _mm256_shuffle_epi8(piece, spread);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
            bytes = _mm256_sub_epi8(_mm256_add_epi8(bytes, bytes), set);
        }
        bytes
    }

    /// [`super::unslice_bytes`].
    ///
    /// # Safety
    /// The CPU must support AVX2; at most eight planes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn unslice_bytes(planes: &[Lane], counts: &mut [u8; LANE]) {
        debug_assert!(planes.len() <= 8);
        for (piece, out) in counts.chunks_exact_mut(32).enumerate() {
            let bytes = piece_bytes(planes, piece);
            _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, bytes);
        }
    }

    /// `table[index[0..4]]` as one vector, by scalar loads into two 128-bit halves: about twice
    /// as fast as `vgatherdpd` on Zen 3 (0.4 against 0.9 ns per entry, L1-resident table).
    ///
    /// # Safety
    /// Every index must be inside `table`'s allocation.
    #[inline(always)]
    unsafe fn load4_at(table: *const f64, index: [u32; 4]) -> __m256d {
        let at = |k: usize| table.add(index[k] as usize);
        let lo = _mm_loadh_pd(_mm_load_sd(at(0)), at(1));
        let hi = _mm_loadh_pd(_mm_load_sd(at(2)), at(3));
        _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(lo), hi)
    }

    /// Four entries of a [`TableRow`] at byte indices (always inside: u8 < TABLE_MAX + 1).
    #[inline(always)]
    unsafe fn load4(row: &TableRow, index: &[u8; 4]) -> __m256d {
        load4_at(row.as_ptr(), index.map(u32::from))
    }

    /// The four indices of a vector as an array.
    #[inline(always)]
    unsafe fn index_array(index: __m128i) -> [u32; 4] {
        let mut out = [0u32; 4];
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, index);
        out
    }

    /// [`super::LaneSums::add_cells`] (the same sums, bit for bit): the second cell's counts
    /// and the empty-cell flags 32 features at a time, then the look-ups of four features at a
    /// time.
    ///
    /// # Safety
    /// The CPU must support AVX2; `width ≤ LANE`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn cells_terms<const BOTH: bool>(
        rows: [&TableRow; 2],
        sizes: [u8; 2],
        first: &[u8; LANE],
        total: &[u8; LANE],
        width: usize,
        sums: &mut super::LaneSums,
    ) {
        let width = width.min(LANE);
        let second = cell_flags::<BOTH>(sizes, first, total, width, sums);
        let quads = width.div_ceil(4) * 4;
        let cells = first[..quads]
            .chunks_exact(4)
            .zip(second[..quads].chunks_exact(4));
        for ((c, d), acc) in cells.zip(sums.half[..quads].chunks_exact_mut(4)) {
            let (c, d) = (<&[u8; 4]>::try_from(c), <&[u8; 4]>::try_from(d));
            let (Ok(c), Ok(d)) = (c, d) else { continue };
            let term = match BOTH {
                true => _mm256_add_pd(load4(rows[0], c), load4(rows[1], d)),
                false => load4(rows[1], d),
            };
            let sum = _mm256_add_pd(_mm256_loadu_pd(acc.as_ptr()), term);
            _mm256_storeu_pd(acc.as_mut_ptr(), sum);
        }
    }

    /// The first part of [`cells_terms`]: the second cell's counts (`total − first`, returned;
    /// the first `width` rounded up to 32) and the empty-cell flags of the cells, 32 features
    /// at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2; `width ≤ LANE`.
    #[inline(always)]
    pub(super) unsafe fn cell_flags<const BOTH: bool>(
        sizes: [u8; 2],
        first: &[u8; LANE],
        total: &[u8; LANE],
        width: usize,
        sums: &mut super::LaneSums,
    ) -> [u8; LANE] {
        let mut second = [0u8; LANE];
        let (a0, a1) = (
            _mm256_set1_epi8(sizes[0] as i8),
            _mm256_set1_epi8(sizes[1] as i8),
        );
        let zero = _mm256_setzero_si256();
        let load = |bytes: &[u8]| _mm256_loadu_si256(bytes.as_ptr() as *const __m256i);
        for at in (0..width).step_by(32) {
            let c = load(&first[at..at + 32]);
            let d = _mm256_sub_epi8(load(&total[at..at + 32]), c);
            _mm256_storeu_si256(second[at..at + 32].as_mut_ptr() as *mut __m256i, d);
            // comparisons give −1 where true: subtracting adds one
            let (mut full, mut none) = (_mm256_cmpeq_epi8(d, a1), _mm256_cmpeq_epi8(d, zero));
            if BOTH {
                full = _mm256_add_epi8(_mm256_cmpeq_epi8(c, a0), full);
                none = _mm256_add_epi8(_mm256_cmpeq_epi8(c, zero), none);
            }
            let (b0, b1) = (&mut sums.bytes0[at..at + 32], &mut sums.bytes1[at..at + 32]);
            _mm256_storeu_si256(
                b0.as_mut_ptr() as *mut __m256i,
                _mm256_sub_epi8(load(b0), full),
            );
            _mm256_storeu_si256(
                b1.as_mut_ptr() as *mut __m256i,
                _mm256_sub_epi8(load(b1), none),
            );
        }
        second
    }

    /// One block of [`super::sorted_columns`]: the `out.len()` columns (zeroed) of up to 64
    /// samples' rows (`words` per sample). Byte q of 32 samples' rows in one vector; shifted
    /// left by 7 − b within 16-bit lanes, `movemask` takes bit b of every byte: 32 bits of
    /// column 8q + b.
    ///
    /// # Safety
    /// The CPU must support AVX2; `block` holds at most 64 samples.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_block(block: &[u64], words: usize, out: &mut [u64]) {
        let samples = block.len() / words;
        debug_assert!(samples <= 64);
        for (q, columns) in out.chunks_mut(8).enumerate() {
            let (word, shift) = (q / 8, 8 * (q % 8));
            let mut bytes = [0u8; 64];
            match words {
                // one word per sample, the usual case: a loop the compiler vectorises
                1 => bytes
                    .iter_mut()
                    .zip(block)
                    .for_each(|(byte, &row)| *byte = (row >> shift) as u8),
                _ => bytes
                    .iter_mut()
                    .zip(block.chunks_exact(words))
                    .for_each(|(byte, row)| *byte = (row[word] >> shift) as u8),
            }
            for (half, bytes) in bytes
                .chunks_exact(32)
                .take(samples.div_ceil(32))
                .enumerate()
            {
                let mut v = _mm256_loadu_si256(bytes.as_ptr() as *const __m256i);
                for b in (0..8).rev() {
                    // v holds the bytes shifted left by 7 − b
                    if let Some(column) = columns.get_mut(b) {
                        let bits = _mm256_movemask_epi8(v) as u32 as u64;
                        *column |= bits << (32 * half);
                    }
                    v = _mm256_slli_epi16::<1>(v);
                }
            }
        }
    }

    /// [`super::pack_bytes`]: 32 bytes at a time, shifted so that their 0/1 value is the byte's
    /// top bit, gathered by `movemask` into a 32-bit half of a word; a last piece of fewer than
    /// 32 bytes eight at a time. Words past the last byte are left as they are.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pack_bytes(bytes: &[u8], words: &mut [u64]) {
        let mut pieces = bytes.chunks_exact(32);
        let mut half = 0;
        for chunk in &mut pieces {
            let v = _mm256_loadu_si256(chunk.as_ptr() as *const __m256i);
            let bits = _mm256_movemask_epi8(_mm256_slli_epi32::<7>(v)) as u32 as u64;
            set_half(words, half, bits);
            half += 1;
        }
        let tail = pieces.remainder();
        if !tail.is_empty() {
            let bits = tail.chunks(8).enumerate().fold(0, |w, (q, eight)| {
                w | super::pack8(super::load8(eight)) << (8 * q)
            });
            set_half(words, half, bits);
        }
    }

    /// Writes the 32 bits `bits` to half `half` of `words` (the low half first).
    #[inline(always)]
    fn set_half(words: &mut [u64], half: usize, bits: u64) {
        let word = &mut words[half / 2];
        *word = match half % 2 {
            0 => bits,
            _ => *word | bits << 32,
        };
    }

    /// `half[b] += row[min(counts[b], a)]`: a [`super::CellTable`] row read four at a time,
    /// with the cell's flags `empty0[b] += (counts[b] == a)`, `empty1[b] += (counts[b] == 0)`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and `row.len() > a`; the four slices have the same length.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn table_terms(
        row: &[f64],
        a: u32,
        counts: &[u32],
        half: &mut [f64],
        empty0: &mut [u32],
        empty1: &mut [u32],
    ) {
        let size = _mm_set1_epi32(a as i32);
        let zero = _mm_setzero_si128();
        let quads = counts.len() / 4;
        debug_assert!(half.len() >= 4 * quads && empty0.len() >= 4 * quads);
        debug_assert!(empty1.len() >= 4 * quads);
        let (c, acc) = (counts.as_ptr(), half.as_mut_ptr());
        let (p0, p1) = (empty0.as_mut_ptr(), empty1.as_mut_ptr());
        for k in (0..4 * quads).step_by(4) {
            let count = _mm_min_epu32(_mm_loadu_si128(c.add(k) as *const __m128i), size);
            let term = load4_at(row.as_ptr(), index_array(count));
            _mm256_storeu_pd(acc.add(k), _mm256_add_pd(_mm256_loadu_pd(acc.add(k)), term));
            // comparisons give −1 where true: subtracting adds one
            let (e0, e1) = (p0.add(k) as *mut __m128i, p1.add(k) as *mut __m128i);
            _mm_storeu_si128(
                e0,
                _mm_sub_epi32(_mm_loadu_si128(e0), _mm_cmpeq_epi32(count, size)),
            );
            _mm_storeu_si128(
                e1,
                _mm_sub_epi32(_mm_loadu_si128(e1), _mm_cmpeq_epi32(count, zero)),
            );
        }
    }

    /// [`super::StepData::cell_lookups`]'s sum: `half[b] += G(c) + G(a − c) − G(a)` for mixed
    /// features, `pure` for the others (c = 0 or a), with `g[c] = c ln c` read four at a time.
    ///
    /// # Safety
    /// The CPU must support AVX2; `a < g.len()`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn cell_terms(
        g: &[f64],
        a: u32,
        pure: f64,
        counts: &[u32],
        half: &mut [f64],
    ) {
        debug_assert!((a as usize) < g.len());
        let (size, ga) = (_mm_set1_epi32(a as i32), _mm256_set1_pd(g[a as usize]));
        let pure = _mm256_set1_pd(pure);
        let quads = counts.chunks_exact(4).zip(half.chunks_exact_mut(4));
        for (c, acc) in quads {
            // counts never exceed a; the clamp keeps the loads inside g regardless
            let c = _mm_min_epu32(_mm_loadu_si128(c.as_ptr() as *const __m128i), size);
            let rest = _mm_sub_epi32(size, c);
            let gc = load4_at(g.as_ptr(), index_array(c));
            let gr = load4_at(g.as_ptr(), index_array(rest));
            let mixed = _mm256_sub_pd(_mm256_add_pd(gc, gr), ga);
            let is_pure = _mm_or_si128(
                _mm_cmpeq_epi32(c, _mm_setzero_si128()),
                _mm_cmpeq_epi32(c, size),
            );
            let mask = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(is_pure));
            let term = _mm256_blendv_pd(mixed, pure, mask);
            let sum = _mm256_add_pd(_mm256_loadu_pd(acc.as_ptr()), term);
            _mm256_storeu_pd(acc.as_mut_ptr(), sum);
        }
    }
}

/// AVX-512 versions of the table look-ups and of [`unslice_bytes`]: the entries of a
/// [`TableRow`] of a cell of at most [`avx512::REGISTER_CELL`] samples sit in four registers,
/// and one permutation looks up eight features (twice the speed of [`avx2::cells_terms`]'s
/// loads, which stay faster for longer rows); a plane's word becomes 64 bytes in one
/// instruction.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Lane, TableRow, LANE};
    use std::arch::x86_64::*;

    /// [`super::unslice_bytes`]: per word of the planes (64 features), from the highest plane
    /// down, the bytes doubled and the plane's bits (as bytes of −1) subtracted.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW; at most eight planes.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn unslice_bytes(planes: &[Lane], counts: &mut [u8; LANE]) {
        debug_assert!(planes.len() <= 8);
        for (w, out) in counts.chunks_exact_mut(64).enumerate() {
            let mut bytes = _mm512_setzero_si512();
            for plane in planes.iter().rev() {
                let set = _mm512_movm_epi8(plane.0[w]);
                bytes = _mm512_sub_epi8(_mm512_add_epi8(bytes, bytes), set);
            }
            _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, bytes);
        }
    }

    /// Largest cell whose [`TableRow`] entries (32) are held in registers.
    pub(super) const REGISTER_CELL: u8 = 31;

    /// Entries 0..=15 of a row, and 16..=31 when `high` (cells of more than 15 samples).
    struct Entries {
        low: [__m512d; 2],
        high: Option<[__m512d; 2]>,
    }

    /// The entries of `row` that a cell of `a ≤ REGISTER_CELL` samples can index.
    #[inline(always)]
    unsafe fn entries(row: &TableRow, a: u8) -> Entries {
        let at = |k: usize| _mm512_loadu_pd(row[8 * k..8 * k + 8].as_ptr());
        Entries {
            low: [at(0), at(1)],
            high: (a > 15).then(|| [at(2), at(3)]),
        }
    }

    /// `row[index]` of eight indices (each at most 31).
    #[inline(always)]
    unsafe fn look_up(entries: &Entries, index: __m512i) -> __m512d {
        let low = _mm512_permutex2var_pd(entries.low[0], index, entries.low[1]);
        let Some(high) = entries.high else {
            return low;
        };
        let upper = _mm512_permutex2var_pd(high[0], index, high[1]);
        let is_upper = _mm512_test_epi64_mask(index, _mm512_set1_epi64(16));
        _mm512_mask_mov_pd(low, is_upper, upper)
    }

    /// [`super::avx2::cells_terms`] (the same sums, bit for bit) for cells of at most
    /// [`REGISTER_CELL`] samples: the flags as there, then the look-ups eight features at a
    /// time from registers.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX2; `width ≤ LANE`; `sizes` at most
    /// [`REGISTER_CELL`].
    #[target_feature(enable = "avx512f,avx512bw,avx2")]
    pub(super) unsafe fn cells_terms<const BOTH: bool>(
        rows: [&TableRow; 2],
        sizes: [u8; 2],
        first: &[u8; LANE],
        total: &[u8; LANE],
        width: usize,
        sums: &mut super::LaneSums,
    ) {
        debug_assert!(sizes[0].max(sizes[1]) <= REGISTER_CELL);
        let width = width.min(LANE);
        let second = super::avx2::cell_flags::<BOTH>(sizes, first, total, width, sums);
        let (entries0, entries1) = (entries(rows[0], sizes[0]), entries(rows[1], sizes[1]));
        // eight counts (bytes) from feature 8q on as 64-bit indices
        let index = |counts: &[u8; LANE], q: usize| {
            let eight = u64::from_le_bytes(counts[8 * q..8 * q + 8].try_into().unwrap_or([0; 8]));
            _mm512_cvtepu8_epi64(_mm_cvtsi64_si128(eight as i64))
        };
        for (q, acc) in sums.half[..width.div_ceil(8) * 8]
            .chunks_exact_mut(8)
            .enumerate()
        {
            let term = match BOTH {
                true => _mm512_add_pd(
                    look_up(&entries0, index(first, q)),
                    look_up(&entries1, index(&second, q)),
                ),
                false => look_up(&entries1, index(&second, q)),
            };
            let sum = _mm512_add_pd(_mm512_loadu_pd(acc.as_ptr()), term);
            _mm512_storeu_pd(acc.as_mut_ptr(), sum);
        }
    }
}

/// `len ≤ 64` bits of the bit vector `bits` from bit `lo` on (bit 0 of the result is bit `lo`).
/// `bits` has a zero word past its last bit.
#[inline(always)]
fn bit_window(bits: &[u64], lo: usize, len: usize) -> u64 {
    let (word, shift) = (lo / 64, lo % 64);
    let mut w = bits[word] >> shift;
    if shift > 0 {
        w |= bits[word + 1] << (64 - shift);
    }
    if len < 64 {
        w & ((1 << len) - 1)
    } else {
        w
    }
}

/// The members of a cell among the `width ≤ 64` positions from `base` on (bit k: position
/// `base + k`): those whose bit of `unit` equals `value`, or all of them without `unit`.
#[inline(always)]
fn cell_members(unit: Option<&[u64]>, value: bool, base: usize, width: usize) -> u64 {
    let all = if width == 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    };
    match (unit, value) {
        (None, _) => all,
        (Some(bits), true) => bit_window(bits, base, width),
        (Some(bits), false) => !bit_window(bits, base, width) & all,
    }
}

/// Number of set bits of `bits` in `lo..hi`.
fn count_bits(bits: &[u64], lo: usize, hi: usize) -> usize {
    (lo..hi)
        .step_by(64)
        .map(|pos| bit_window(bits, pos, (hi - pos).min(64)).count_ones() as usize)
        .sum()
}

/// Up to eight bytes as a little-endian word.
#[inline(always)]
fn load8(bytes: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(bytes) {
        Ok(full) => u64::from_le_bytes(full),
        Err(_) => bytes.iter().rev().fold(0, |w, &b| (w << 8) | b as u64),
    }
}

/// Eight 0/1 bytes (little-endian in `word`) as the low bits of a byte (byte k → bit k).
#[inline(always)]
fn pack8(word: u64) -> u64 {
    // byte k lands on bit 56 + k of the product; the other partial products do not overlap
    word.wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// X as bit rows, `⌈p / LANE⌉` lanes per sample (`rows[t · groups + g]`, features past p are 0),
/// written into `buffer` (any contents; its memory is reused).
fn pack_rows(x: &Binary<'_>, buffer: Vec<Lane>) -> Vec<Lane> {
    pack_each_row(
        x,
        x.cols.div_ceil(LANE),
        Lane::ZERO,
        buffer,
        |row, lanes| {
            for (lane, features) in lanes.iter_mut().zip(row.chunks(LANE)) {
                pack_bytes(features, &mut lane.0);
            }
        },
    )
}

/// `per_row` packed elements per row of `x` (starting from `zero`), `pack(row, out)` filling
/// each row's, 512 rows per parallel task; written into `buffer` (any contents).
fn pack_each_row<T: Clone + Send + Sync>(
    x: &Binary<'_>,
    per_row: usize,
    zero: T,
    buffer: Vec<T>,
    pack: impl Fn(&[u8], &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = buffer;
    out.clear();
    out.resize(x.n * per_row, zero);
    out.par_chunks_mut(per_row.max(1) * 512)
        .zip(x.data.par_chunks(x.cols.max(1) * 512))
        .for_each(|(dst, src)| {
            for (packed, row) in dst
                .chunks_exact_mut(per_row.max(1))
                .zip(src.chunks_exact(x.cols.max(1)))
            {
                pack(row, packed);
            }
        });
    out
}

/// Column sums of X (lane `g`) from its bit rows.
#[inline(always)]
fn lane_column_sums(rows: &[Lane], groups: usize, g: usize, out: &mut [u32]) {
    let mut planes = vec![Lane::ZERO; plane_count(rows.len()).max(5)];
    let mut batches = rows.chunks_exact(16 * groups);
    for chunk in &mut batches {
        add_sixteen(&mut planes, |k| chunk[k * groups + g]);
    }
    for row in batches.remainder().chunks_exact(groups) {
        ripple_add(&mut planes, row[g]);
    }
    unslice(&planes, out);
}

/// [`lane_column_sums`] compiled for AVX2.
///
/// # Safety
/// As [`lane_sums_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
unsafe fn lane_column_sums_avx2(rows: &[Lane], groups: usize, g: usize, out: &mut [u32]) {
    lane_column_sums(rows, groups, g, out)
}

/// Column sums of X (`p` features) from its bit rows.
fn column_sums(rows: &[Lane], groups: usize, p: usize) -> Vec<u32> {
    let mut sums = vec![0u32; groups * LANE];
    sums.par_chunks_mut(LANE).enumerate().for_each(|(g, out)| {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { lane_column_sums_avx2(rows, groups, g, out) };
        }
        lane_column_sums(rows, groups, g, out)
    });
    sums.truncate(p);
    sums
}

/// Columns of a binary matrix as bit vectors (bit t of column j: row t).
fn pack_columns(x: &Binary<'_>) -> Vec<Vec<u64>> {
    (0..x.cols)
        .into_par_iter()
        .map(|i| {
            let mut col = vec![0u64; x.n.div_ceil(64)];
            for (word, rows) in col.iter_mut().zip(x.data.chunks(64 * x.cols)) {
                *word = rows
                    .iter()
                    .skip(i)
                    .step_by(x.cols)
                    .enumerate()
                    .fold(0, |w, (b, &v)| w | (v as u64) << b);
            }
            col
        })
        .collect()
}

/// 0/1 bytes as bits (byte k → bit k % 64 of word k / 64).
#[inline]
fn pack_bytes(bytes: &[u8], words: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2::pack_bytes(bytes, words) };
    }
    for (word, features) in words.iter_mut().zip(bytes.chunks(64)) {
        *word = features
            .chunks(8)
            .enumerate()
            .map(|(q, bytes)| pack8(load8(bytes)) << (8 * q))
            .fold(0, |a, b| a | b);
    }
}

/// Rows of a binary matrix as bits, `words` 64-bit words per row (bit j of word w: column
/// 64·w + j; columns past the last are 0), written into `buffer` (any contents).
fn pack_row_words(x: &Binary<'_>, words: usize, buffer: Vec<u64>) -> Vec<u64> {
    let mut out = buffer;
    if words == 1 && x.cols <= 64 {
        // rows of at most 64 columns (the latent units, usually): the whole matrix packed as
        // one stream of bits, whose row t is the window of its `cols` bits from bit t·cols
        // on (a zero word past the end for the windows)
        let mut stream = vec![0u64; x.data.len().div_ceil(64) + 1];
        pack_bytes(x.data, &mut stream);
        out.clear();
        out.extend((0..x.n).map(|t| bit_window(&stream, t * x.cols, x.cols)));
        return out;
    }
    pack_each_row(x, words, 0u64, out, pack_bytes)
}

/// Columns of U as bit vectors (with the zero word [`bit_window`] needs), from the bit rows of
/// its `n` samples (`words` per sample, in stratum order). Eight samples at a time: byte q of
/// their rows side by side in one word, whose bit b of every byte [`pack8`] gathers into the 8
/// bits of column 8q + b.
fn sorted_columns(rows: &[u64], words: usize, r: usize, n: usize) -> Vec<Vec<u64>> {
    if r == 0 {
        return Vec::new();
    }
    let chunks = n.div_ceil(64);
    // [chunk][column] words, filled block by block, then split by column
    let mut blocked = vec![0u64; chunks * r];
    // serial: a few microseconds per step, less than waking a second thread
    blocked.chunks_mut(r).enumerate().for_each(|(c, out)| {
        let block = &rows[64 * c * words..n.min(64 * c + 64) * words];
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2::transpose_block(block, words, out) };
        }
        for (octet, eight) in block.chunks(8 * words).enumerate() {
            for q in 0..r.div_ceil(8) {
                let (word, shift) = (q / 8, 8 * (q % 8));
                let byte = |k: usize, row: u64| ((row >> shift) & 0xFF) << (8 * k);
                let side_by_side = match words {
                    1 => eight
                        .iter()
                        .enumerate()
                        .fold(0, |acc, (k, &row)| acc | byte(k, row)),
                    _ => eight
                        .chunks_exact(words)
                        .enumerate()
                        .fold(0, |acc, (k, sample)| acc | byte(k, sample[word])),
                };
                for (b, column) in out[8 * q..r.min(8 * q + 8)].iter_mut().enumerate() {
                    let bits = (side_by_side >> b) & 0x0101_0101_0101_0101;
                    *column |= pack8(bits) << (8 * octet);
                }
            }
        }
    });
    (0..r)
        .map(|j| {
            let mut col = vec![0u64; n / 64 + 2];
            for (c, word) in col.iter_mut().take(chunks).enumerate() {
                *word = blocked[c * r + j];
            }
            col
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Small cells by class
//
// Marginal models sum over cells (u, s) the term φ(a, c) = F(n'₀) + F(n'₁) − F(n'₀ + n'₁) of a
// cell of a samples, c of them with x = 1 (filled counts: 0 → 0.5). A cell is "pure" when
// c = 0 or c = a, with φ = π(a) = F(a) + F(0.5) − F(a + 0.5) whatever x; otherwise it is
// "mixed", and φ(a, c) = φ(a, a − c) depends on its class κ = min(c, a − c) only. So for cells
// of at most SMALL samples
//
//   Σ_cells φ = Σ_cells π(a) + Σ_{mixed classes (a, κ)} #cells(a, κ) · (φ(a, κ) − π(a)),
//
// where the first sum does not depend on the feature, and the empty-cell counts of the x
// margin are #{c = a} (no x = 0) and #cells − #{c = a} − #mixed (no x = 1). Each cell then
// costs one bit-sliced comparison and increment per class it can have, for 256 features at
// once, instead of one table look-up per feature.
// ---------------------------------------------------------------------------------------------

/// Cells of at most this many samples are summarised by class (marginal models); at most 32
/// (a stratum whose two cells are that small is one 64-bit window of member positions). 7: their
/// counts fit three bit planes (callgrind over the bench case: 6 → 77.1 M, 7 → 76.0 M,
/// 8 → 77.5 M, 12 → 79.1 M instructions).
const SMALL: usize = 7;
const _: () = assert!(SMALL <= 31, "small cells use at most five planes");
const _: () = assert!(2 * SMALL <= 64, "two small cells fit one 64-bit window");

/// Class of the cells where every sample has x = 1 (no x = 0).
const ALL_ONES: usize = 0;

/// Number of classes: [`ALL_ONES`] and the mixed classes of cells of 2 ..= [`SMALL`] samples.
const CLASSES: usize = SMALL * SMALL / 4 + 1;

/// Class of a mixed cell of `a` samples with `κ` or `a − κ` ones (1 ≤ κ ≤ a/2): numbered by a,
/// then κ, after [`ALL_ONES`] (Σ_{b<a} ⌊b/2⌋ = ⌊(a − 1)²/4⌋ classes come before size a).
#[inline(always)]
fn mixed_class(a: usize, kappa: usize) -> usize {
    (a - 1) * (a - 1) / 4 + kappa
}

/// `φ(a, c)`: the part of G²/2 of a cell (u, s) of `a` samples, `c` with x = 1.
fn cell_term(h: &[f64], a: usize, c: usize) -> f64 {
    let (d0, d1) = (dbl((a - c) as u32), dbl(c as u32));
    h[d0] + h[d1] - h[d0 + d1]
}

/// Largest cell size of [`CellTable`].
const TABLE_MAX: usize = 255;

/// One row of [`CellTable`]: a byte count indexes it without bounds check.
type TableRow = [f64; TABLE_MAX + 1];

/// φ(a, c) = G(c) + G(a − c) − G(a) (0.5-filled, see [`cell_term`]) tabulated for every cell
/// size `a ≤ TABLE_MAX` and count of ones `c ≤ a`, so a cell's term is one look-up (no pure/mixed
/// branch); row `a` holds `TABLE_MAX + 1` entries (zeros past `c = a`).
struct CellTable {
    rows: Vec<TableRow>,
}

impl CellTable {
    /// The table, computed on first use: it depends on nothing but `x ln x`, so one serves
    /// every call (512 KiB).
    fn shared() -> &'static Self {
        static TABLE: std::sync::OnceLock<CellTable> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let h = half_log_table(TABLE_MAX);
            let rows = (0..=TABLE_MAX)
                .map(|a| {
                    let mut row = [0.0; TABLE_MAX + 1];
                    for (c, term) in row[..=a].iter_mut().enumerate() {
                        *term = cell_term(&h, a, c);
                    }
                    row
                })
                .collect();
            Self { rows }
        })
    }

    #[inline(always)]
    fn row(&self, a: usize) -> Option<&TableRow> {
        self.rows.get(a)
    }
}

/// Masks waiting to be added to a class counter (16 at a time, see [`add_sixteen`]).
#[derive(Clone)]
struct Pending {
    batch: [Lane; 16],
    len: usize,
    /// Masks added so far (a bound on the counts).
    total: u32,
}

impl Pending {
    /// Planes of its counter that adding the pending masks may reach: those the counts can
    /// reach so far, at least the five that [`add_sixteen`] writes, at most `depth`.
    #[inline(always)]
    fn planes_in_use(&self, depth: usize) -> usize {
        plane_count(self.total as usize).clamp(5, depth)
    }
}

/// Per-feature histograms of the classes of small cells, as bit-sliced counters (one per
/// class, all allocated up front: no test for a new class on every add).
struct ClassCounts {
    /// Planes per counter (at least 5).
    depth: usize,
    /// `depth` planes per class.
    planes: Vec<Lane>,
    /// The masks waiting for each class's counter.
    pending: Vec<Pending>,
    /// Small cells by size (`sizes[0]`: empty cells).
    sizes: [u32; SMALL + 1],
}

impl ClassCounts {
    fn new(depth: usize) -> Self {
        let pending = Pending {
            batch: [Lane::ZERO; 16],
            len: 0,
            total: 0,
        };
        Self {
            depth: depth.max(5),
            planes: vec![Lane::ZERO; CLASSES * depth.max(5)],
            pending: vec![pending; CLASSES],
            sizes: [0; SMALL + 1],
        }
    }

    /// Counts one more cell of `a` samples (its classes are added separately).
    #[inline(always)]
    fn cell(&mut self, a: usize) {
        self.sizes[a] += 1;
    }

    /// Adds one to the counter of `class` for the features of `mask`.
    #[inline(always)]
    fn add(&mut self, class: usize, mask: Lane) {
        // classes come from cells of at most SMALL samples: always below CLASSES
        debug_assert!(
            class < CLASSES,
            "class {class} of a cell above SMALL samples"
        );
        let Some(pending) = self.pending.get_mut(class) else {
            return;
        };
        pending.batch[pending.len] = mask;
        pending.len += 1;
        pending.total += 1;
        if pending.len == 16 {
            let batch = &pending.batch;
            let used = pending.planes_in_use(self.depth);
            add_sixteen(
                &mut self.planes[class * self.depth..class * self.depth + used],
                |q| batch[q],
            );
            pending.len = 0;
        }
    }

    /// Records a cell of `a ≤ SMALL` samples from the bit-sliced counts of its ones.
    #[inline(always)]
    fn add_cell(&mut self, ones: &[Lane], a: usize) {
        self.cell(a);
        if a > 0 {
            self.add_classes(ones, a);
        }
    }

    /// Adds the classes of a cell of `1 ≤ a ≤ SMALL` samples (already counted by
    /// [`ClassCounts::cell`]) from the bit-sliced counts of its ones: [`ALL_ONES`] for the
    /// features with `a` ones, mixed class κ for those with κ or `a − κ`.
    #[inline(always)]
    fn add_classes(&mut self, ones: &[Lane], a: usize) {
        let ones = &ones[..plane_count(a)];
        self.add(ALL_ONES, equals(ones, a));
        for kappa in 1..=a / 2 {
            let mut mask = equals(ones, kappa);
            if 2 * kappa != a {
                mask = mask | equals(ones, a - kappa);
            }
            self.add(mixed_class(a, kappa), mask);
        }
    }

    /// Adds the small cells' part to the per-feature sums of the first `width` features;
    /// `counts` ([`LANE`] entries) is working memory.
    #[inline(always)]
    fn finish(
        &mut self,
        h: &[f64],
        sums: &mut LaneSums,
        width: usize,
        counts: &mut [u32],
        singletons: Option<&Singletons>,
    ) {
        if let Some(singletons) = singletons {
            // one cell of one sample and one empty cell each
            self.sizes[0] += singletons.strata;
            self.sizes[1] += singletons.strata;
        }
        // Σ π(a) over the cells (−ln 2 for the empty ones), and the cells without x = 0 or
        // x = 1 if all were pure with x = 0 (corrected below)
        // only sizes that occur: `h` has no entries past 2n + 4 (n may be below SMALL)
        let constant: f64 = (0..=SMALL)
            .filter(|&a| self.sizes[a] > 0)
            .map(|a| self.sizes[a] as f64 * cell_term(h, a, 0))
            .sum();
        let (empty, cells) = (self.sizes[0], self.sizes.iter().sum::<u32>());
        let flags = sums.empty0.iter_mut().zip(&mut sums.empty1);
        for (half, (e0, e1)) in sums.half.iter_mut().zip(flags) {
            *half += constant;
            *e0 += empty;
            *e1 += cells;
        }
        let depth = self.depth;
        for (k, pending) in self.pending.iter_mut().enumerate() {
            // the masks still pending through one carry-save tree (the batch completed by
            // zeros) rather than one by one through every plane
            let used = pending.planes_in_use(depth);
            let planes = &mut self.planes[k * depth..k * depth + used];
            match pending.len {
                0 => {}
                1 => ripple_add(planes, pending.batch[0]),
                len => {
                    pending.batch[len..].fill(Lane::ZERO);
                    let batch = &pending.batch;
                    add_sixteen(planes, |q| batch[q]);
                }
            }
        }
        // the planes in use of a class's counter
        let counter = |k: usize| {
            // a class counts at most n cells, and depth = plane_count(2n): within the counter
            let used = plane_count(self.pending.get(k)?.total as usize).min(depth);
            match used {
                0 => None,
                _ => self.planes.get(k * depth..k * depth + used),
            }
        };
        if let Some(planes) = counter(ALL_ONES) {
            unslice(planes, counts);
            let flags = sums.empty0.iter_mut().zip(&mut sums.empty1);
            for ((e0, e1), &c) in flags.zip(counts.iter()) {
                *e0 += c;
                *e1 -= c;
            }
        }
        if let Some(singletons) = singletons {
            // the singletons' cells of one sample with x = 1 are of class ALL_ONES too
            let flags = sums.empty0.iter_mut().zip(&mut sums.empty1);
            for ((e0, e1), &c) in flags.zip(&singletons.ones) {
                *e0 += c;
                *e1 -= c;
            }
        }
        for a in 2..=SMALL {
            for kappa in 1..=a / 2 {
                let Some(planes) = counter(mixed_class(a, kappa)) else {
                    continue;
                };
                let weight = cell_term(h, a, kappa) - cell_term(h, a, 0);
                let touched = planes.iter().fold(Lane::ZERO, |acc, &plane| acc | plane);
                let lanes: u32 = touched.0.iter().map(|w| w.count_ones()).sum();
                if lanes > 32 {
                    unslice(planes, counts);
                    let acc = sums.half[..width].iter_mut().zip(&mut sums.empty1);
                    for ((half, e1), &c) in acc.zip(counts.iter()) {
                        *half += c as f64 * weight;
                        *e1 -= c;
                    }
                    continue;
                }
                // few features have such cells: visit them one by one (same sums)
                for (w, &word) in touched.0.iter().enumerate() {
                    let mut rest = word;
                    while rest != 0 {
                        let b = rest.trailing_zeros() as usize;
                        rest &= rest - 1;
                        let count = planes.iter().enumerate().fold(0u32, |c, (q, plane)| {
                            c | (((plane.0[w] >> b) & 1) as u32) << q
                        });
                        if let (Some(half), Some(e1)) = (
                            sums.half.get_mut(64 * w + b),
                            sums.empty1.get_mut(64 * w + b),
                        ) {
                            *half += count as f64 * weight;
                            *e1 -= count;
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One step
// ---------------------------------------------------------------------------------------------

/// The strata of one sample in a part of a step's strata, in one lane of features. Whatever
/// the latent unit, each is a cell of one sample (of class [`ALL_ONES`] where its x = 1) and an
/// empty cell, so [`StepData::scores`] counts them once for all units.
struct Singletons {
    strata: u32,
    /// Per feature, the singletons with x = 1 ([`LANE`] entries).
    ones: Vec<u32>,
}

/// Per-feature sums of one latent unit (or of the strata alone) over one lane of features.
struct LaneSums {
    /// Σ over cells (marginal) or strata (conditional) of their part of G²/2.
    half: Vec<f64>,
    /// Occupied cells without x = 0 / without x = 1 (marginal models).
    empty0: Vec<u32>,
    empty1: Vec<u32>,
    /// The latest of these cells counted in bytes by [`LaneSums::add_cells`], at most
    /// `pending ≤ 255` per feature, moved into `empty0` / `empty1` by [`LaneSums::flush`].
    bytes0: [u8; LANE],
    bytes1: [u8; LANE],
    pending: u32,
}

impl LaneSums {
    fn new() -> Self {
        Self {
            half: vec![0.0; LANE],
            empty0: vec![0; LANE],
            empty1: vec![0; LANE],
            bytes0: [0; LANE],
            bytes1: [0; LANE],
            pending: 0,
        }
    }

    /// Adds the cells (u = 0, 1) of a stratum of at most [`TABLE_MAX`] samples from the byte
    /// counts of the ones of one cell (`sizes[0]` samples) and of the whole stratum: the other
    /// cell (`sizes[1]` samples) has `total − first` ones. `rows` are the [`CellTable`] rows of
    /// the two sizes. With `BOTH = false` only the other cell is added (the first one goes to
    /// [`ClassCounts`]).
    #[inline(always)]
    fn add_cells<const BOTH: bool>(
        &mut self,
        rows: [&TableRow; 2],
        sizes: [u8; 2],
        first: &[u8; LANE],
        total: &[u8; LANE],
        width: usize,
    ) {
        let cells = 1 + BOTH as u32;
        if self.pending + cells > u8::MAX as u32 {
            self.flush();
        }
        self.pending += cells;
        #[cfg(target_arch = "x86_64")]
        if sizes[0].max(sizes[1]) <= avx512::REGISTER_CELL && has_avx512() {
            // SAFETY: the CPU supports AVX-512F, AVX-512BW and AVX2 (checked just above), and
            // the cells are small enough.
            return unsafe { avx512::cells_terms::<BOTH>(rows, sizes, first, total, width, self) };
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { avx2::cells_terms::<BOTH>(rows, sizes, first, total, width, self) };
        }
        for b in 0..width {
            let (c, d) = (first[b], total[b].wrapping_sub(first[b]));
            self.bytes0[b] += (d == sizes[1]) as u8;
            self.bytes1[b] += (d == 0) as u8;
            if BOTH {
                self.half[b] += rows[0][c as usize] + rows[1][d as usize];
                self.bytes0[b] += (c == sizes[0]) as u8;
                self.bytes1[b] += (c == 0) as u8;
            } else {
                self.half[b] += rows[1][d as usize];
            }
        }
    }

    /// The sums of consecutive parts of the strata (each flushed), added in order.
    fn total(parts: Vec<Self>) -> Self {
        let mut parts = parts.into_iter();
        let mut total = parts.next().unwrap_or_else(Self::new);
        for part in parts {
            for (sum, value) in total.half.iter_mut().zip(&part.half) {
                *sum += value;
            }
            for (sum, value) in total.empty0.iter_mut().zip(&part.empty0) {
                *sum += value;
            }
            for (sum, value) in total.empty1.iter_mut().zip(&part.empty1) {
                *sum += value;
            }
        }
        total
    }

    /// Moves the byte counts of empty cells into `empty0` / `empty1`.
    fn flush(&mut self) {
        let sums = self.empty0.iter_mut().zip(&mut self.empty1);
        for ((e0, e1), (b0, b1)) in sums.zip(self.bytes0.iter_mut().zip(&mut self.bytes1)) {
            *e0 += *b0 as u32;
            *e1 += *b1 as u32;
            (*b0, *b1) = (0, 0);
        }
        self.pending = 0;
    }
}

/// Feature counts of the strata of more than [`SMALL`] samples. Two of them (this step's and
/// the previous one's) are reused from step to step and filled in place, instead of a new
/// vector collected at every step. Strata of at most [`TABLE_MAX`] samples (all of them in late
/// steps) keep their counts as bytes, a quarter of the memory to write and read.
#[derive(Default)]
struct LargeTotals {
    /// Entry of each stratum in `narrow` (at most [`TABLE_MAX`] samples) or `wide` (more);
    /// `u32::MAX` for small strata.
    slot: Vec<u32>,
    /// `[slot · groups + group]` counts of the lane's features, as bytes (entries beyond the
    /// large strata of this step are left over from earlier steps).
    narrow: Vec<[u8; LANE]>,
    /// The same for the strata of more than [`TABLE_MAX`] samples.
    wide: Vec<[u32; LANE]>,
}

/// One large stratum's feature counts in one lane (see [`LargeTotals`]).
#[derive(Clone, Copy)]
enum Total<'a> {
    Narrow(&'a [u8; LANE]),
    Wide(&'a [u32; LANE]),
}

/// Where [`StepData::count_total`] writes a stratum's counts.
enum TotalMut<'a> {
    Narrow(&'a mut [u8; LANE]),
    Wide(&'a mut [u32; LANE]),
}

impl TotalMut<'_> {
    /// Writes `counts` (below 256 for a narrow entry).
    #[inline(always)]
    fn store(self, counts: &[u32; LANE]) {
        match self {
            TotalMut::Wide(out) => *out = *counts,
            TotalMut::Narrow(out) => {
                for (byte, &count) in out.iter_mut().zip(counts) {
                    *byte = count as u8;
                }
            }
        }
    }
}

impl LargeTotals {
    /// Whether a large stratum of `size` samples keeps its counts in `wide`.
    fn is_wide(size: usize) -> bool {
        size > TABLE_MAX
    }

    /// The counts (lane `g` of `groups`) of stratum `s` of `size` samples, if it is large.
    #[inline(always)]
    fn get(&self, s: usize, size: usize, g: usize, groups: usize) -> Option<Total<'_>> {
        let slot = *self.slot.get(s)?;
        if slot == u32::MAX {
            return None;
        }
        let at = slot as usize * groups + g;
        match Self::is_wide(size) {
            true => self.wide.get(at).map(Total::Wide),
            false => self.narrow.get(at).map(Total::Narrow),
        }
    }
}

impl Total<'_> {
    /// The counts as `u32` in `out` (the first [`LANE`] entries).
    #[inline(always)]
    fn widen_into(self, out: &mut [u32]) {
        match self {
            Total::Wide(counts) => out[..LANE].copy_from_slice(counts),
            Total::Narrow(bytes) => {
                for (count, &byte) in out.iter_mut().zip(bytes) {
                    *count = byte as u32;
                }
            }
        }
    }
}

/// Per latent unit, the feature counts of the samples with u = 1 in every stratum of more than
/// [`TABLE_MAX`] samples (marginal models; early steps). Like [`LargeTotals`], two of them (this
/// step's and the previous one's) let a stratum's counts come from its parent's minus its
/// smaller sibling's, so that only the smaller of two siblings is counted from its rows.
#[derive(Default)]
struct WideCells {
    /// Entry of each stratum among the wide ones (`u32::MAX`: not wide).
    slot: Vec<u32>,
    /// Entries per (unit, lane): the wide strata, at least one.
    stride: usize,
    /// `[(unit · groups + group) · stride + slot]` (entries past this step's are left over).
    counts: Vec<[u32; LANE]>,
}

impl WideCells {
    /// The u = 1 counts of task `task` (unit · groups + group) in the wide stratum of `slot`.
    #[inline(always)]
    fn entry(&self, task: usize, slot: usize) -> &[u32; LANE] {
        &self.counts[task * self.stride + slot]
    }
}

/// Where [`StepData::large_totals`] takes a large stratum's counts from.
#[derive(Clone, Copy)]
enum Origin {
    /// Counted from its rows.
    Counted,
    /// The same as its parent's (slot in the previous totals): it was not split.
    Parent(usize),
    /// Its parent's minus its (smaller, counted) sibling's, the stratum given.
    Difference(usize, usize),
}

/// Read-only state of one step.
struct StepData<'a> {
    /// Bit rows of X in stratum order (`rows[pos · groups + g]`).
    rows: &'a [Lane],
    groups: usize,
    /// Columns of U in stratum order (empty without latent units).
    units: &'a [Vec<u64>],
    strata: &'a Strata,
    totals: &'a LargeTotals,
    model: Model,
    h: &'a [f64],
    /// `g[c] = c ln c` (`h[2c]`).
    g: &'a [f64],
    cells: &'a CellTable,
    /// Planes of a bit-sliced count (enough for 2n).
    depth: usize,
    /// Number of features.
    p: usize,
}

impl StepData<'_> {
    #[inline(always)]
    fn row(&self, pos: usize, g: usize) -> Lane {
        self.rows[pos * self.groups + g]
    }

    /// Bit-sliced feature counts (lane `g`) of the `size` samples of stratum `s` whose unit bit
    /// equals `value` (all of them without `unit`), in the first planes of `planes`.
    #[inline(always)]
    fn count_cell<'p>(
        &self,
        planes: &'p mut [Lane],
        size: usize,
        unit: Option<&[u64]>,
        value: bool,
        s: usize,
        g: usize,
    ) -> &'p [Lane] {
        let (lo, hi) = (self.strata.offsets[s], self.strata.offsets[s + 1]);
        let used = plane_count(size);
        if size < 16 {
            // fewer than 16 rows (most cells of late steps): the planes they need in
            // registers, each row rippled through them without a store, then copied out
            match used {
                0 | 1 => self.count_few::<1>(&mut planes[..1], lo, hi, unit, value, g),
                2 => self.count_few::<2>(&mut planes[..2], lo, hi, unit, value, g),
                3 => self.count_few::<3>(&mut planes[..3], lo, hi, unit, value, g),
                _ => self.count_few::<4>(&mut planes[..4], lo, hi, unit, value, g),
            }
            return &planes[..used];
        }
        // up to eight planes (cells below 256 samples) zeroed by a fixed-length fill, which
        // compiles to eight stores instead of a `memset` call (about 10,000 cells a call)
        match planes.get_mut(..8) {
            Some(first) if used <= 8 => first.fill(Lane::ZERO),
            _ => planes[..used].fill(Lane::ZERO),
        }
        let planes = &mut planes[..used];
        let Some(bits) = unit else {
            // the whole stratum: consecutive rows, 16 at a time through the carry-save tree
            let mut pos = lo;
            while pos + 16 <= hi {
                add_sixteen(planes, |k| self.row(pos + k, g));
                pos += 16;
            }
            for pos in pos..hi {
                ripple_add(planes, self.row(pos, g));
            }
            return planes;
        };
        // the members' positions in batches of 16, whose rows the carry-save tree reads
        let (mut batch, mut len) = ([0usize; 16], 0);
        let mut base = lo;
        while base < hi {
            let mut members = cell_members(Some(bits), value, base, (hi - base).min(64));
            while members != 0 {
                batch[len] = base + members.trailing_zeros() as usize;
                members &= members - 1;
                len += 1;
                if len == 16 {
                    add_sixteen(planes, |k| self.row(batch[k], g));
                    len = 0;
                }
            }
            base += 64;
        }
        for &pos in &batch[..len] {
            ripple_add(planes, self.row(pos, g));
        }
        planes
    }

    /// [`StepData::count_cell`] of fewer than `2^P` rows into `P` planes held in registers.
    #[inline(always)]
    fn count_few<const P: usize>(
        &self,
        out: &mut [Lane],
        lo: usize,
        hi: usize,
        unit: Option<&[u64]>,
        value: bool,
        g: usize,
    ) {
        let mut few = [Lane::ZERO; P];
        let mut base = lo;
        while base < hi {
            let mut members = cell_members(unit, value, base, (hi - base).min(64));
            while members != 0 {
                ripple_add(
                    &mut few,
                    self.row(base + members.trailing_zeros() as usize, g),
                );
                members &= members - 1;
            }
            base += 64;
        }
        out.copy_from_slice(&few);
    }

    /// Feature counts (lane `g`) of every large stratum. Given the previous step's
    /// (`previous`, of the strata this step's were split from), only the smaller of two
    /// siblings is counted: the larger one is their parent minus it, and an only child is its
    /// parent. Without them every large stratum is counted.
    fn large_totals(&self, previous: Option<&LargeTotals>, out: &mut LargeTotals) {
        let (strata, groups) = (self.strata, self.groups);
        let size = |s: usize| strata.size(s) as usize;
        let large: Vec<usize> = (0..strata.m).filter(|&s| size(s) > SMALL).collect();
        let LargeTotals { slot, narrow, wide } = out;
        slot.clear();
        slot.resize(strata.m, u32::MAX);
        // entries in `narrow` and `wide`, in the order of `large`
        let mut used = [0usize; 2];
        for &s in &large {
            let kind = LargeTotals::is_wide(size(s)) as usize;
            slot[s] = used[kind] as u32;
            used[kind] += 1;
        }
        let origins: Vec<Origin> = large
            .iter()
            .map(|&s| strata.origin(s, |from| previous?.slot.get(from).copied()))
            .collect();
        if narrow.len() < used[0] * groups {
            narrow.resize(used[0] * groups, [0; LANE]);
        }
        if wide.len() < used[1] * groups {
            wide.resize(used[1] * groups, [0; LANE]);
        }
        // families of large strata split from the same parent (two siblings, consecutive in
        // `large`) are filled by one task each, in parallel: the counted sibling first, then
        // the other from it
        let sibling_of_next = |k: usize| {
            let (s, t) = (large[k], large[k + 1]);
            t == s + 1
                && strata
                    .parent
                    .get(s)
                    .is_some_and(|&from| strata.parent.get(t) == Some(&from))
        };
        // each family's members, the entries before its parts of `narrow` and `wide`, and
        // those parts
        let mut families = Vec::with_capacity(large.len());
        let (mut narrow_rest, mut wide_rest) = (&mut narrow[..], &mut wide[..]);
        let mut before = [0usize; 2];
        let mut k = 0;
        while k < large.len() {
            let end = if k + 1 < large.len() && sibling_of_next(k) {
                k + 2
            } else {
                k + 1
            };
            let wide_members = large[k..end]
                .iter()
                .filter(|&&s| LargeTotals::is_wide(size(s)))
                .count();
            let narrow_members = end - k - wide_members;
            let (family_narrow, tail) =
                std::mem::take(&mut narrow_rest).split_at_mut(narrow_members * groups);
            narrow_rest = tail;
            let (family_wide, tail) =
                std::mem::take(&mut wide_rest).split_at_mut(wide_members * groups);
            wide_rest = tail;
            families.push((k..end, before, family_narrow, family_wide));
            before[0] += narrow_members;
            before[1] += wide_members;
            k = end;
        }
        let slot = &slot[..];
        // at least FAMILIES_PER_TASK families per parallel task: late steps have hundreds of
        // small ones, each a few rows to count
        let tasks = families.into_par_iter().with_min_len(FAMILIES_PER_TASK);
        tasks.for_each_init(
            || vec![Lane::ZERO; self.depth],
            |planes, (members, before, family_narrow, family_wide)| {
                // the entry of a member of this family in its part of `narrow` / `wide`
                let entry = |s: usize, g: usize| {
                    let wide = LargeTotals::is_wide(size(s));
                    (
                        wide,
                        (slot[s] as usize - before[wide as usize]) * groups + g,
                    )
                };
                for k in members.clone() {
                    let s = large[k];
                    for g in 0..groups {
                        let (wide, at) = entry(s, g);
                        let target = match wide {
                            true => TotalMut::Wide(&mut family_wide[at]),
                            false => TotalMut::Narrow(&mut family_narrow[at]),
                        };
                        match (origins[k], previous) {
                            (Origin::Counted, _) | (_, None) => {
                                self.count_total(planes, s, g, target);
                            }
                            (Origin::Parent(from), Some(previous)) => {
                                let from = from * groups + g;
                                match target {
                                    TotalMut::Wide(out) => *out = previous.wide[from],
                                    TotalMut::Narrow(out) => *out = previous.narrow[from],
                                }
                            }
                            (Origin::Difference(..), _) => {}
                        }
                    }
                }
                let Some(previous) = previous else { return };
                for k in members {
                    let Origin::Difference(from, sibling) = origins[k] else {
                        continue;
                    };
                    let s = large[k];
                    for g in 0..groups {
                        // the counted sibling of this family, or a small one (a few rows,
                        // counted here)
                        let mut taken = [0u8; LANE];
                        let sibling_total = match slot[sibling] {
                            u32::MAX => {
                                let out = TotalMut::Narrow(&mut taken);
                                self.count_total(planes, sibling, g, out);
                                Total::Narrow(&taken)
                            }
                            _ => match entry(sibling, g) {
                                (true, at) => Total::Wide(&family_wide[at]),
                                (false, at) => Total::Narrow(&family_narrow[at]),
                            },
                        };
                        let from = from * groups + g;
                        let (wide, at) = entry(s, g);
                        // (a parent of at most TABLE_MAX samples has narrow children only)
                        if let (false, Total::Narrow(sibling)) =
                            (LargeTotals::is_wide(size(s) + size(sibling)), sibling_total)
                        {
                            // all three as bytes (exact: the parent has at most TABLE_MAX)
                            let mut counts = previous.narrow[from];
                            for (count, &taken) in counts.iter_mut().zip(sibling) {
                                *count = count.wrapping_sub(taken);
                            }
                            family_narrow[at] = counts;
                            continue;
                        }
                        let mut taken_wide = [0u32; LANE];
                        sibling_total.widen_into(&mut taken_wide);
                        let mut counts = previous.wide[from];
                        for (count, &taken) in counts.iter_mut().zip(&taken_wide) {
                            *count -= taken;
                        }
                        match wide {
                            true => TotalMut::Wide(&mut family_wide[at]),
                            false => TotalMut::Narrow(&mut family_narrow[at]),
                        }
                        .store(&counts);
                    }
                }
            },
        );
    }

    /// The strata of more than [`TABLE_MAX`] samples, each with where its u = 1 counts come
    /// from: a stratum whose parent was wide and whose sibling is smaller (or as large and
    /// first) is its parent's counts minus its sibling's, an only child has its parent's, the
    /// others are counted.
    fn wide_origins(&self, previous: Option<&WideCells>) -> Vec<(usize, Origin)> {
        let strata = self.strata;
        (0..strata.m)
            .filter(|&s| strata.size(s) as usize > TABLE_MAX)
            .map(|s| {
                (
                    s,
                    strata.origin(s, |from| previous?.slot.get(from).copied()),
                )
            })
            .collect()
    }

    /// The feature counts (lane `g`) of the samples of stratum `s` with unit bit 1, counted
    /// through its smaller cell (and the stratum's totals when that is the cell of u = 0).
    #[inline(always)]
    fn count_ones_cell(
        &self,
        planes: &mut [Lane],
        bits: &[u64],
        s: usize,
        g: usize,
        out: &mut [u32; LANE],
    ) {
        let (lo, hi) = (self.strata.offsets[s], self.strata.offsets[s + 1]);
        let a1 = count_bits(bits, lo, hi);
        let ones_smaller = 2 * a1 <= hi - lo;
        let smaller = if ones_smaller { a1 } else { hi - lo - a1 };
        unslice(
            self.count_cell(planes, smaller, Some(bits), ones_smaller, s, g),
            out,
        );
        if !ones_smaller {
            let mut total = [0u32; LANE];
            match self.totals.get(s, hi - lo, g, self.groups) {
                Some(t) => t.widen_into(&mut total),
                None => unslice(
                    self.count_cell(planes, hi - lo, None, true, s, g),
                    &mut total,
                ),
            }
            for (c, &t) in out.iter_mut().zip(&total) {
                *c = t - *c;
            }
        }
    }

    /// The u = 1 counts of unit `j` in lane `g` of the wide strata `origins`, into `out` (one
    /// entry each); `task` is (unit, lane)'s entry in `previous`, `slot` this step's entries.
    /// A counted stratum is counted through its smaller cell (and its totals).
    #[inline(always)]
    fn fill_wide_cells(
        &self,
        (j, g, task): (usize, usize, usize),
        origins: &[(usize, Origin)],
        slot: &[u32],
        previous: Option<&WideCells>,
        planes: &mut [Lane],
        out: &mut [[u32; LANE]],
    ) {
        let bits = &self.units[j][..];
        for (k, &(s, origin)) in origins.iter().enumerate() {
            match (origin, previous) {
                (Origin::Counted, _) | (_, None) => {
                    self.count_ones_cell(planes, bits, s, g, &mut out[k]);
                }
                (Origin::Parent(from), Some(previous)) => out[k] = *previous.entry(task, from),
                (Origin::Difference(..), _) => {}
            }
        }
        let Some(previous) = previous else { return };
        for (k, &(_, origin)) in origins.iter().enumerate() {
            let Origin::Difference(from, sibling) = origin else {
                continue;
            };
            let mut taken = [0u32; LANE];
            match slot[sibling] {
                u32::MAX => self.count_ones_cell(planes, bits, sibling, g, &mut taken),
                q => taken = out[q as usize],
            }
            let mut counts = *previous.entry(task, from);
            for (c, &t) in counts.iter_mut().zip(&taken) {
                *c -= t;
            }
            out[k] = counts;
        }
    }

    /// Feature counts (lane `g`) of stratum `s`, counted from its rows (`planes`: at least
    /// [`StepData::depth`] planes of scratch).
    fn count_total(&self, planes: &mut [Lane], s: usize, g: usize, out: TotalMut<'_>) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { count_total_avx2(self, planes, s, g, out) };
        }
        self.count_total_portable(planes, s, g, out);
    }

    /// [`StepData::count_total`] for any CPU (inlined into its AVX2 version).
    #[inline(always)]
    fn count_total_portable(&self, planes: &mut [Lane], s: usize, g: usize, out: TotalMut<'_>) {
        let size = self.strata.size(s) as usize;
        let counts = self.count_cell(planes, size, None, true, s, g);
        match out {
            TotalMut::Wide(out) => unslice(counts, out),
            TotalMut::Narrow(out) => unslice_bytes(counts, out),
        }
    }

    /// Records the cell of the samples `lo + b` for the set bits `b` of `members` (a cell of a
    /// stratum of at most 64 samples). Cells of up to three samples take their classes from
    /// AND / OR of the rows directly; larger ones from bit-sliced counts.
    #[inline(always)]
    fn window_cell(&self, classes: &mut ClassCounts, lo: usize, members: u64, g: usize) {
        let a = members.count_ones() as usize;
        classes.cell(a);
        let mut rest = members;
        if (1..=3).contains(&a) {
            // without a branch on the size: up to three rows, a missing one all ones in the
            // AND and zeros in the OR (a cell of one sample adds an empty mixed mask)
            let mut next = || {
                let present = rest != 0;
                let pos = if present {
                    lo + rest.trailing_zeros() as usize
                } else {
                    lo
                };
                rest &= rest.wrapping_sub(1);
                let keep = Lane([(present as u64).wrapping_neg(); 4]);
                let row = self.row(pos, g);
                (row | !keep, row & keep)
            };
            let ((x, _), (y_and, y_or), (z_and, z_or)) = (next(), next(), next());
            let all = x & y_and & z_and;
            classes.add(ALL_ONES, all);
            classes.add(mixed_class(a.max(2), 1), (x | y_or | z_or) & !all);
            return;
        }
        if a == 0 {
            return;
        }
        // at most SMALL samples: the planes of SMALL on the stack (no memset call), a fixed
        // number of them, so the adds have no branch on the cell size
        let mut small = [Lane::ZERO; plane_count(SMALL)];
        while rest != 0 {
            ripple_add(&mut small, self.row(lo + rest.trailing_zeros() as usize, g));
            rest &= rest - 1;
        }
        classes.add_classes(&small[..plane_count(a)], a);
    }

    /// Sums of unit `unit` (None: the strata alone) over the features of lane `g`, over the
    /// strata `strata`.
    #[inline(always)]
    fn lane_sums(
        &self,
        unit: Option<usize>,
        g: usize,
        strata: std::ops::Range<usize>,
        singletons: Option<&Singletons>,
        wide: Option<(&[u32], &[[u32; LANE]])>,
    ) -> LaneSums {
        let bits = unit.map(|j| &self.units[j][..]);
        let width = self.width(g);
        let mut sums = LaneSums::new();
        let mut classes = ClassCounts::new(self.depth);
        let mut planes = vec![Lane::ZERO; self.depth];
        let (mut c1, mut c11) = (vec![0u32; LANE], vec![0u32; LANE]);
        let mut first = [0u8; LANE];
        for s in strata {
            let (lo, hi) = (self.strata.offsets[s], self.strata.offsets[s + 1]);
            let ns = hi - lo;
            if ns == 1 && singletons.is_some() {
                continue;
            }
            // both cells (u = 0, 1) of at most SMALL samples, or the stratum itself without
            // latent units: one window of at most 64 samples
            let window = (self.model == Model::Marginal && ns <= 2 * SMALL).then(|| {
                let all = cell_members(None, true, lo, ns);
                (all, cell_members(bits, true, lo, ns))
            });
            let by_window = window.filter(|&(_, ones)| {
                let a1 = ones.count_ones() as usize;
                ns <= SMALL || (bits.is_some() && a1.max(ns - a1) <= SMALL)
            });
            if let Some((all, ones)) = by_window {
                let cells = [ones, !ones & all];
                for &members in &cells[..1 + bits.is_some() as usize] {
                    self.window_cell(&mut classes, lo, members, g);
                }
                continue;
            }
            let a1 = bits.map_or(0, |b| count_bits(b, lo, hi));
            let total = self.totals.get(s, ns, g, self.groups);
            match (self.model, bits, total) {
                (Model::Marginal, None, Some(total)) => {
                    total.widen_into(&mut c1);
                    self.cell_lookups(&mut sums, ns, &c1[..width]);
                }
                (Model::Marginal, Some(_), Some(total)) => {
                    // count the smaller cell; the larger one is the stratum minus it
                    let ones_smaller = 2 * a1 <= ns;
                    let (small, large) = match ones_smaller {
                        true => (a1, ns - a1),
                        false => (ns - a1, a1),
                    };
                    // (large > SMALL: strata whose two cells are small took the window path)
                    let u1 = wide.and_then(|(slot, counts)| counts.get(*slot.get(s)? as usize));
                    if let (Some(u1), true) = (u1, small > SMALL) {
                        // a wide stratum's cells from its u = 1 counts and its totals
                        total.widen_into(&mut c1);
                        for ((c, &t), &u1) in c11.iter_mut().zip(&c1).zip(u1) {
                            *c = if ones_smaller { u1 } else { t - u1 };
                        }
                        self.cell_lookups(&mut sums, small, &c11[..width]);
                        for (c, &t) in c11.iter_mut().zip(&c1) {
                            *c = t - *c;
                        }
                        self.cell_lookups(&mut sums, large, &c11[..width]);
                        continue;
                    }
                    let counts = self.count_cell(&mut planes, small, bits, ones_smaller, s, g);
                    let rows = (self.cells.row(small), self.cells.row(large));
                    if let (Some(row_small), Some(row_large), Total::Narrow(total)) =
                        (rows.0, rows.1, total)
                    {
                        // both cells from bytes: the stratum's and the smaller cell's counts
                        unslice_bytes(counts, &mut first);
                        let (rows, sizes) = ([row_small, row_large], [small as u8, large as u8]);
                        if small <= SMALL {
                            // the smaller cell by class, the larger one by look-up
                            classes.add_cell(counts, small);
                            sums.add_cells::<false>(rows, sizes, &first, total, width);
                        } else {
                            sums.add_cells::<true>(rows, sizes, &first, total, width);
                        }
                        continue;
                    }
                    if small <= SMALL {
                        classes.add_cell(counts, small);
                    }
                    unslice(counts, &mut c11);
                    if small > SMALL {
                        self.cell_lookups(&mut sums, small, &c11[..width]);
                    }
                    total.widen_into(&mut c1);
                    for (c, &t) in c11.iter_mut().zip(&c1) {
                        *c = t - *c;
                    }
                    self.cell_lookups(&mut sums, large, &c11[..width]);
                }
                _ => {
                    // conditional model: per-feature counts c1 of the stratum, c11 of U = 1
                    match total {
                        Some(total) => {
                            // the smaller cell counted, the other by difference
                            total.widen_into(&mut c1);
                            let ones_smaller = 2 * a1 <= ns;
                            let size = if ones_smaller { a1 } else { ns - a1 };
                            let counts =
                                self.count_cell(&mut planes, size, bits, ones_smaller, s, g);
                            unslice(counts, &mut c11);
                            if !ones_smaller {
                                for (c, &t) in c11.iter_mut().zip(&c1) {
                                    *c = t - *c;
                                }
                            }
                        }
                        None => {
                            unslice(self.count_cell(&mut planes, a1, bits, true, s, g), &mut c11);
                            unslice(
                                self.count_cell(&mut planes, ns - a1, bits, false, s, g),
                                &mut c1,
                            );
                            for (c, &c11) in c1.iter_mut().zip(&c11) {
                                *c += c11;
                            }
                        }
                    }
                    self.conditional_lookups(&mut sums, ns as u32, a1 as u32, &c1[..width], &c11);
                }
            }
        }
        if self.model == Model::Marginal {
            sums.flush();
            // (c1 is free once the strata are done)
            classes.finish(self.h, &mut sums, width, &mut c1, singletons);
        }
        sums
    }

    /// The strata of one sample among `strata` and their ones in lane `g`.
    fn singletons(&self, g: usize, strata: std::ops::Range<usize>) -> Singletons {
        let mut planes = vec![Lane::ZERO; self.depth];
        let mut count = 0u32;
        for s in strata {
            let lo = self.strata.offsets[s];
            if self.strata.offsets[s + 1] - lo == 1 {
                ripple_add(
                    &mut planes[..plane_count(count as usize + 1)],
                    self.row(lo, g),
                );
                count += 1;
            }
        }
        let mut ones = vec![0u32; LANE];
        unslice(&planes[..plane_count(count as usize)], &mut ones);
        Singletons {
            strata: count,
            ones,
        }
    }

    /// Features of lane `g` (the last lane may be partial).
    fn width(&self, g: usize) -> usize {
        LANE.min(self.p - g * LANE)
    }

    #[inline(always)]
    fn cell_lookups(&self, sums: &mut LaneSums, a: usize, counts: &[u32]) {
        let width = counts.len();
        let half = &mut sums.half[..width];
        let (empty0, empty1) = (&mut sums.empty0[..width], &mut sums.empty1[..width]);
        if let Some(row) = self.cells.row(a) {
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if has_avx2() {
                // SAFETY: the CPU supports AVX2 (checked just above); counts are clamped to
                // `a < row.len()` before the loads; the slices all have `width` elements.
                unsafe { avx2::table_terms(&row[..], a as u32, counts, half, empty0, empty1) };
                done = width / 4 * 4;
            }
            let rest = half[done..].iter_mut().zip(&counts[done..]);
            let flags = empty0[done..].iter_mut().zip(&mut empty1[done..]);
            for ((half, &c), (e0, e1)) in rest.zip(flags) {
                *half += row[(c as usize).min(a)];
                *e0 += (c as usize == a) as u32;
                *e1 += (c == 0) as u32;
            }
            return;
        }
        for ((e0, e1), &c) in empty0.iter_mut().zip(empty1.iter_mut()).zip(counts) {
            *e0 += (c as usize == a) as u32;
            *e1 += (c == 0) as u32;
        }
        let (g, pure) = (self.g, cell_term(self.h, a, 0));
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if has_avx2() && a < g.len() && a <= i32::MAX as usize {
            // SAFETY: the CPU supports AVX2 and a < g.len() (checked just above).
            unsafe { avx2::cell_terms(g, a as u32, pure, counts, half) };
            done = counts.len() / 4 * 4;
        }
        let ga = g[a];
        for (half, &c) in half[done..].iter_mut().zip(&counts[done..]) {
            let c = (c as usize).min(a);
            let mixed = g[c] + g[a - c] - ga;
            *half += if c == 0 || c == a { pure } else { mixed };
        }
    }

    /// Adds one stratum's part of the conditional model from its per-feature counts.
    #[inline(always)]
    fn conditional_lookups(&self, sums: &mut LaneSums, ns: u32, a1: u32, c1: &[u32], c11: &[u32]) {
        let (h, a0) = (self.h, ns - a1);
        for ((half, &c1), &n11) in sums.half.iter_mut().zip(c1).zip(c11) {
            let n01 = c1 - n11;
            let (n10, n00) = (a1 - n11, a0 - n01);
            *half += term_conditional(h, dbl(n00), dbl(n01), dbl(n10), dbl(n11));
        }
    }

    /// `p × max(r, 1)` scores of every feature.
    /// `cells`: the previous step's u = 1 counts of wide strata and the buffer for this
    /// step's (marginal models with latent units), which each task fills for its unit and lane
    /// before it sums its strata.
    fn scores(
        &self,
        ones: &[u32],
        r: usize,
        unoccupied: f64,
        cells: Option<(Option<&WideCells>, &mut WideCells)>,
    ) -> Vec<f64> {
        let p = ones.len();
        let n = self.strata.samples();
        let rr = r.max(1);
        let units: Vec<Option<usize>> = if r == 0 {
            vec![None]
        } else {
            (0..r).map(Some).collect()
        };
        let tasks: Vec<(usize, Option<usize>, usize)> = units
            .iter()
            .enumerate()
            .flat_map(|(jj, &unit)| (0..self.groups).map(move |g| (jj, unit, g)))
            .collect();
        let parts = self.strata.parts();
        // the strata of one sample add the same cells for every latent unit: summed once
        let singletons: Vec<Vec<Singletons>> = match (self.model, r) {
            (Model::Marginal, 1..) => parts
                .iter()
                .map(|part| {
                    (0..self.groups)
                        .map(|g| self.singletons(g, part.clone()))
                        .collect()
                })
                .collect(),
            _ => Vec::new(),
        };
        // the wide strata, and each task's entries for their u = 1 counts
        let (previous, origins, slot, mut chunks) = match cells {
            Some((previous, out)) if self.model == Model::Marginal && r > 0 => {
                let origins = self.wide_origins(previous);
                out.slot.clear();
                out.slot.resize(self.strata.m, u32::MAX);
                for (k, &(s, _)) in origins.iter().enumerate() {
                    out.slot[s] = k as u32;
                }
                out.stride = origins.len().max(1);
                if out.counts.len() < tasks.len() * out.stride {
                    out.counts.resize(tasks.len() * out.stride, [0; LANE]);
                }
                let chunks = out.counts.chunks_mut(out.stride).map(Some).collect();
                (previous, origins, &out.slot[..], chunks)
            }
            _ => (None, Vec::new(), &[][..], Vec::new()),
        };
        chunks.resize_with(tasks.len(), || None);
        // each task sums its parts of the strata (in parallel too, so that the threads share
        // the last tasks of a step), adds them in order and finishes its own scores
        let lanes: Vec<Vec<f64>> = tasks
            .par_iter()
            .zip(chunks.into_par_iter())
            .enumerate()
            .map(|(task, (&(_, unit, g), chunk))| {
                let wide = match (unit, chunk) {
                    (Some(j), Some(chunk)) if !origins.is_empty() => {
                        let mut planes = vec![Lane::ZERO; self.depth];
                        let at = (j, g, task);
                        let mut done = false;
                        #[cfg(target_arch = "x86_64")]
                        if has_avx2() {
                            // SAFETY: the CPU supports AVX2 (checked just above).
                            unsafe {
                                fill_wide_cells_avx2(
                                    self,
                                    at,
                                    &origins,
                                    slot,
                                    previous,
                                    &mut planes,
                                    chunk,
                                )
                            };
                            done = true;
                        }
                        if !done {
                            self.fill_wide_cells(at, &origins, slot, previous, &mut planes, chunk);
                        }
                        Some((slot, &chunk[..]))
                    }
                    _ => None,
                };
                let sums: Vec<LaneSums> = parts
                    .par_iter()
                    .enumerate()
                    .map(|(q, part)| {
                        let singletons = singletons.get(q).map(|lanes| &lanes[g]);
                        #[cfg(target_arch = "x86_64")]
                        if has_avx2() {
                            // SAFETY: the CPU supports AVX2 (checked just above).
                            return unsafe {
                                lane_sums_avx2(self, unit, g, part.clone(), singletons, wide)
                            };
                        }
                        self.lane_sums(unit, g, part.clone(), singletons, wide)
                    })
                    .collect();
                let sums = LaneSums::total(sums);
                let features = g * LANE..p.min((g + 1) * LANE);
                match self.model {
                    Model::Conditional => features.map(|i| 2.0 * sums.half[i - g * LANE]).collect(),
                    Model::Marginal => {
                        let cells_per_stratum = if r == 0 { 1.0 } else { 2.0 };
                        let ones = &ones[features];
                        finish_marginal_lane(self.h, &sums, ones, n, unoccupied, cells_per_stratum)
                    }
                }
            })
            .collect();
        let mut scores = vec![0.0; p * rr];
        for (&(jj, _, g), lane) in tasks.iter().zip(&lanes) {
            for (b, &score) in lane.iter().enumerate() {
                scores[(g * LANE + b) * rr + jj] = score;
            }
        }
        scores
    }
}

/// Whether the CPU runs the AVX2 versions of the kernels.
fn has_avx2() -> bool {
    #[cfg(test)]
    if tests::PORTABLE_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU runs the AVX-512 kernels ([`avx512::cells_terms`],
/// [`avx512::unslice_bytes`]).
fn has_avx512() -> bool {
    #[cfg(test)]
    if tests::NO_AVX512.load(std::sync::atomic::Ordering::Relaxed) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`StepData::lane_sums`] compiled for AVX2: its kernels are `#[inline(always)]`, so their
/// 256-bit lanes become single vector instructions.
///
/// # Safety
/// The CPU must support AVX2, BMI1 and POPCNT ([`has_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
unsafe fn lane_sums_avx2(
    data: &StepData<'_>,
    unit: Option<usize>,
    g: usize,
    strata: std::ops::Range<usize>,
    singletons: Option<&Singletons>,
    wide: Option<(&[u32], &[[u32; LANE]])>,
) -> LaneSums {
    data.lane_sums(unit, g, strata, singletons, wide)
}

/// [`StepData::fill_wide_cells`] compiled for AVX2.
///
/// # Safety
/// As [`lane_sums_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
unsafe fn fill_wide_cells_avx2(
    data: &StepData<'_>,
    at: (usize, usize, usize),
    origins: &[(usize, Origin)],
    slot: &[u32],
    previous: Option<&WideCells>,
    planes: &mut [Lane],
    out: &mut [[u32; LANE]],
) {
    data.fill_wide_cells(at, origins, slot, previous, planes, out)
}

/// [`StepData::count_total`] compiled for AVX2.
///
/// # Safety
/// As [`lane_sums_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,bmi1,popcnt")]
unsafe fn count_total_avx2(
    data: &StepData<'_>,
    planes: &mut [Lane],
    s: usize,
    g: usize,
    out: TotalMut<'_>,
) {
    data.count_total_portable(planes, s, g, out)
}

/// Everything needed to score one (possibly permuted) feature column against fixed strata.
struct Scorer<'a> {
    u: Option<Binary<'a>>,
    strata: &'a Strata,
    /// Stratum of every sample ([`Strata::ids`]).
    id: &'a [u32],
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
            c1[self.id[t] as usize] += v as u32;
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
                finish_marginal(h, acc, e0, e1, ones, n, self.unoccupied, 1.0),
                0,
            );
        };
        let r = u.cols;
        let mut c11 = vec![0u32; r * m];
        for (t, &v) in x.iter().enumerate() {
            if v != 0 {
                let s = self.id[t] as usize;
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
                Model::Marginal => finish_marginal(h, acc, e0, e1, ones, n, self.unoccupied, 2.0),
                Model::Conditional => 2.0 * acc,
            };
            if g2 > best.0 {
                best = (g2, j);
            }
        }
        best
    }
}

fn pack(col: &[u8]) -> Vec<u64> {
    let mut out = vec![0u64; col.len().div_ceil(64)];
    for (t, &v) in col.iter().enumerate() {
        out[t / 64] |= (v as u64) << (t % 64);
    }
    out
}

/// G² of `[A][B]` on the 0.5-filled 2 × 2 table of two binary columns. Symmetric to the last
/// bit: the margins are taken in a fixed order, so that `(A, B)` and `(B, A)` round alike and
/// the two features of a pair tie exactly.
#[inline]
fn pair_g2(h: &[f64], n: u32, ones_a: u32, ones_b: u32, both: u32) -> f64 {
    let (ones_a, ones_b) = (ones_a.min(ones_b), ones_a.max(ones_b));
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
    if options.k > MAX_SELECT {
        return Err(CoreError::invalid(format!(
            "k = {} is more than {MAX_SELECT} features: the 0.5-filled table has 2^(k + 2) cells, \
             and beyond k = {MAX_SELECT} float64 rounding of their empty-cell terms (x ln x near \
             2^(k + 1)) exceeds 0.01 in G², so the candidates could no longer be told apart",
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
/// (U_j, S…, X_i), and adds the feature with the largest G² (ties, up to a relative 1e-10 of
/// rounding: smallest i, then smallest j).
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
    // on a worker thread of the pool, the many short parallel loops below do not each put the
    // calling thread to sleep and wake it again, nor wait for a sleeping worker
    crate::parallel::with_a_worker_awake(|| select_validated(x, u, options))
}

/// [`select_features`] after validation.
fn select_validated(
    x: &Binary<'_>,
    u: Option<&Binary<'_>>,
    options: &SelectOptions,
) -> CoreResult<Selection> {
    let (n, p, k) = (x.n, x.cols, options.k);
    let r = u.map_or(0, |u| u.cols);
    let rr = r.max(1);
    // the filled total of a marginal model is below n + 2^k (at most 2^(step + 2) empty cells
    // of 0.5): in the table too while that is at most 2n
    let tables = LogTables::shared(n + 1usize.checked_shl(k as u32).unwrap_or(n).min(n));
    let (h, g) = (&tables.h[..], &tables.g[..]);
    let cells = CellTable::shared();
    let groups = p.div_ceil(LANE);
    let scratch = Scratch::take();
    let rows = pack_rows(x, scratch.packed_rows);
    let ones = column_sums(&rows, groups, p);
    let packed = if u.is_none() {
        pack_columns(x)
    } else {
        Vec::new()
    };
    let unit_words = r.div_ceil(64);
    let unit_rows = match u {
        Some(u) => pack_row_words(u, unit_words, scratch.packed_units),
        None => Vec::new(),
    };
    let depth = plane_count(2 * n);
    // the samples' order is needed by the permutations only
    let mut strata = match options.n_permutations {
        0 => Strata::whole_unordered(n),
        _ => Strata::whole(n),
    };
    // the bit rows in stratum order, and a second buffer for the next split (which writes
    // every row, so the last selection's rows may stay in it)
    let mut sorted = SortedRows {
        x: rows,
        groups,
        u: unit_rows,
        words: unit_words,
    };
    let mut spare = SortedRows {
        x: scratch.rows,
        groups,
        u: scratch.units,
        words: unit_words,
    };
    spare.x.resize(sorted.x.len(), Lane::ZERO);
    spare.u.resize(sorted.u.len(), 0);
    let mut in_set = vec![false; p];
    // this step's large-strata totals and the previous step's (None before the first count),
    // and the buffer for the step after the first
    let [mut totals, mut next_totals] = scratch.totals;
    let mut previous: Option<LargeTotals> = None;
    // the same for the u = 1 counts of wide strata (marginal models with latent units)
    let [mut wide_cells, mut next_cells] = scratch.cells;
    let mut previous_cells: Option<WideCells> = None;
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
        let mut scores = if u.is_none() && step == 0 {
            (0..p)
                .into_par_iter()
                .map(|i| best_pair_of(h, n, &packed[i], ones[i], i, &packed, &ones))
                .collect()
        } else {
            let unset = LargeTotals::default();
            let data = StepData {
                rows: &sorted.x,
                groups,
                units: &[],
                strata: &strata,
                totals: &unset,
                model: options.model,
                h,
                g,
                cells,
                depth,
                p,
            };
            // the unit columns (serial) while the totals are counted
            let (units, ()) = rayon::join(
                || sorted_columns(&sorted.u, unit_words, r, n),
                || data.large_totals(previous.as_ref(), &mut totals),
            );
            let scores = StepData {
                units: &units,
                totals: &totals,
                ..data
            }
            .scores(
                &ones,
                r,
                unoccupied,
                Some((previous_cells.as_ref(), &mut wide_cells)),
            );
            // the next step derives its strata's counts from these (the buffers swap)
            let spent = previous.replace(std::mem::take(&mut totals));
            totals = spent.unwrap_or_else(|| std::mem::take(&mut next_totals));
            let spent = previous_cells.replace(std::mem::take(&mut wide_cells));
            wide_cells = spent.unwrap_or_else(|| std::mem::take(&mut next_cells));
            scores
        };
        for (i, _) in in_set.iter().enumerate().filter(|(_, &taken)| taken) {
            scores[i * rr..(i + 1) * rr].fill(f64::NAN);
        }
        let Some((g2, i, j)) = step_winner(&scores, rr) else {
            return Err(CoreError::invalid("no candidate feature left to select"));
        };
        if let Some(p_values) = selection.p_values.as_mut() {
            let us = u.map_or_else(Vec::new, |u| gather_rows(u.data, r, &strata.order));
            let a = latent_counts(&us, r, &strata);
            let id = strata.ids();
            let scorer = Scorer {
                u: u.copied(),
                strata: &strata,
                id: &id,
                a: &a,
                model: options.model,
                unoccupied,
                h,
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
        if step + 1 < k {
            strata = strata.split_sorted(&sorted, i, &mut spare);
            std::mem::swap(&mut sorted, &mut spare);
        }
    }
    Scratch {
        rows: spare.x,
        units: spare.u,
        packed_rows: sorted.x,
        packed_units: sorted.u,
        totals: [totals, previous.unwrap_or(next_totals)],
        cells: [wide_cells, previous_cells.unwrap_or(next_cells)],
    }
    .keep();
    Ok(selection)
}

/// The candidate a step adds: `(G², i, j)` of the largest score of `scores` (`p × rr`,
/// row-major; NaN for the features already selected), where scores within [`TIE_TOLERANCE`]
/// (relative, at least 1 absolute) of the largest count as ties, won by the smallest i, then
/// the smallest j. None when every score is NaN.
fn step_winner(scores: &[f64], rr: usize) -> Option<(f64, usize, usize)> {
    let largest = scores
        .iter()
        .copied()
        .filter(|g| !g.is_nan())
        .reduce(f64::max)?;
    let threshold = match largest.is_finite() {
        true => largest - TIE_TOLERANCE * largest.abs().max(1.0),
        false => largest,
    };
    let q = scores.iter().position(|&g| g >= threshold)?;
    Some((scores[q], q / rr, q % rr))
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
    let id = strata.ids();
    let Some(u) = u else {
        let scorer = Scorer {
            u: None,
            strata: &strata,
            id: &id,
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
                id: &id,
                a: &a,
                model,
                unoccupied,
                h: &h,
            };
            Ok(scorer.score(&column).0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use rand::Rng;
    use std::sync::atomic::AtomicBool;

    /// Makes [`has_avx2`] false (the portable kernels), for the tests comparing both.
    pub(super) static PORTABLE_ONLY: AtomicBool = AtomicBool::new(false);

    /// Makes [`has_avx512`] false (the AVX2 kernels), for the tests comparing both.
    pub(super) static NO_AVX512: AtomicBool = AtomicBool::new(false);

    /// Held by the tests that switch [`PORTABLE_ONLY`], so that one of them never computes its
    /// "fast" side while the other has the switch on (the comparison would then test nothing).
    static KERNEL_SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn kernel_switch() -> std::sync::MutexGuard<'static, ()> {
        KERNEL_SWITCH
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `run` with the fastest kernels the CPU has (AVX-512 or AVX2), then with the portable
    /// ones; the caller holds [`kernel_switch`].
    fn on_both_kernels<T>(run: impl Fn() -> T) -> (T, T) {
        let fast = run();
        PORTABLE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
        let portable = run();
        PORTABLE_ONLY.store(false, std::sync::atomic::Ordering::Relaxed);
        (fast, portable)
    }

    /// `run` with the AVX-512 kernels switched off (the AVX2 ones where the CPU has them); the
    /// caller holds [`kernel_switch`].
    fn without_avx512<T>(run: impl Fn() -> T) -> T {
        NO_AVX512.store(true, std::sync::atomic::Ordering::Relaxed);
        let avx2 = run();
        NO_AVX512.store(false, std::sync::atomic::Ordering::Relaxed);
        avx2
    }

    /// The count of feature `b` in the bit-sliced `planes`, bit by bit.
    fn count_in_planes(planes: &[Lane], b: usize) -> u32 {
        let bit = |plane: &Lane| ((plane.0[b / 64] >> (b % 64)) & 1) as u32;
        planes
            .iter()
            .enumerate()
            .map(|(q, plane)| bit(plane) << q)
            .sum()
    }

    fn random_binary(n: usize, cols: usize, prob: f64, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * cols).map(|_| rng.random_bool(prob) as u8).collect()
    }

    /// Features that copy one of a few binary factors with some noise, so that the selected
    /// ones form strata of every size from 1 to thousands.
    fn clustered(n: usize, p: usize, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let factors = random_binary(n, 6, 0.5, seed + 1);
        let mut x = vec![0u8; n * p];
        for i in 0..p {
            let (f, noise) = (i % 6, 0.05 + 0.3 * (i % 7) as f64 / 7.0);
            for t in 0..n {
                x[t * p + i] = factors[t * 6 + f] ^ rng.random_bool(noise) as u8;
            }
        }
        x
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
    }

    /// Whether two score arrays are equal bit for bit.
    fn same_bits(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits())
    }

    /// The engine tests' problem: n = 3000 samples of [`clustered`] features (p = 300, two
    /// lanes) and r = 3 random latent units; returns (n, p, x, u).
    fn engine_problem() -> (usize, usize, Vec<u8>, Vec<u8>) {
        let (n, p, r) = (3000, 300, 3);
        (n, p, clustered(n, p, 7), random_binary(n, r, 0.5, 8))
    }

    /// The engine tests' selections of k = 9 features: both models with the latent units `ub`,
    /// and the marginal one without latent units.
    fn engine_cases<'a>(ub: &'a Binary<'a>) -> [(Option<&'a Binary<'a>>, SelectOptions); 3] {
        let options = |model| SelectOptions {
            k: 9,
            model,
            n_permutations: 0,
            seed: 0,
        };
        [
            (Some(ub), options(Model::Marginal)),
            (Some(ub), options(Model::Conditional)),
            (None, options(Model::Marginal)),
        ]
    }

    #[test]
    fn step_winner_takes_ties_up_to_rounding_in_order() {
        let nan = f64::NAN;
        // p = 3 features × 2 units: (1, 0) is 1e-13 below the largest, (2, 1), so it wins
        let scores = [nan, nan, 5.0 - 5e-13, 2.0, 1.0, 5.0];
        assert_eq!(step_winner(&scores, 2), Some((5.0 - 5e-13, 1, 0)));
        // clearly smaller scores do not tie
        let scores = [4.9, 5.0, 1.0, 2.0];
        assert_eq!(step_winner(&scores, 2), Some((5.0, 0, 1)));
        // near zero the tolerance is absolute
        assert_eq!(step_winner(&[0.0, 1e-11], 1), Some((0.0, 0, 0)));
        assert_eq!(step_winner(&[nan, nan], 1), None);
    }

    #[test]
    fn pair_g2_is_symmetric_to_the_last_bit() {
        let h = half_log_table(600);
        // (without the fixed order, the first two round differently)
        for (n, a, b, both) in [(300, 0, 121, 0), (300, 0, 220, 0), (300, 140, 170, 100)] {
            assert_eq!(
                pair_g2(&h, n, a, b, both).to_bits(),
                pair_g2(&h, n, b, a, both).to_bits()
            );
        }
    }

    #[test]
    fn sorted_columns_are_the_columns_of_the_rows() {
        // r = 70: two words per row, columns in both bytes of a word and in a partial byte;
        // n = 203: a partial chunk of 64 and a partial octet
        for (n, r) in [(203, 70), (64, 8), (9, 1), (130, 64)] {
            let u = random_binary(n, r, 0.5, 11);
            let ub = Binary::new(&u, n, r, "U").unwrap();
            let words = r.div_ceil(64);
            let rows = pack_row_words(&ub, words, Vec::new());
            let _guard = kernel_switch();
            let (columns, portable) = on_both_kernels(|| sorted_columns(&rows, words, r, n));
            assert_eq!(columns, portable);
            assert_eq!(columns.len(), r);
            for (j, col) in columns.iter().enumerate() {
                assert_eq!(col.len(), n / 64 + 2);
                for t in 0..col.len() * 64 {
                    let expected = if t < n { u[t * r + j] as u64 } else { 0 };
                    assert_eq!(
                        (col[t / 64] >> (t % 64)) & 1,
                        expected,
                        "n {n} r {r} j {j} t {t}"
                    );
                }
            }
        }
    }

    #[test]
    fn shared_log_tables_reach_far_enough_with_the_same_values() {
        // a longer table kept from an earlier call, a new longer one, and one too long to keep
        for max in [50, 3000, 40, SHARED_LOG_ENTRIES] {
            let tables = LogTables::shared(max);
            assert!(tables.h.len() > 2 * max + 4);
            assert_eq!(tables.g.len(), tables.h.len().div_ceil(2));
            for d in [0, 1, 2, 7, 2 * max + 4] {
                assert_eq!(tables.h[d].to_bits(), xlogx(d as f64 / 2.0).to_bits());
            }
            assert_eq!(tables.g[max].to_bits(), xlogx(max as f64).to_bits());
        }
        assert!(LogTables::shared(1).h.len() <= SHARED_LOG_ENTRIES);
    }

    #[test]
    fn derived_totals_equal_counted_totals() {
        // two lanes; feature 0 is constant (only children: totals of the parent), feature 1 is
        // rare (small siblings), the others random; every step's totals derived from the
        // previous step's must equal the totals counted from the rows
        let (n, p) = (900, 300);
        let mut x = random_binary(n, p, 0.4, 21);
        for t in 0..n {
            x[t * p] = 0;
            x[t * p + 1] = (t % 97 == 0) as u8;
        }
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let h = half_log_table(n);
        let g: Vec<f64> = h.iter().step_by(2).copied().collect();
        let mut sorted = SortedRows {
            x: pack_rows(&xb, Vec::new()),
            groups: 2,
            u: Vec::new(),
            words: 0,
        };
        let mut spare = SortedRows {
            x: vec![Lane::ZERO; sorted.x.len()],
            groups: 2,
            u: Vec::new(),
            words: 0,
        };
        let none = LargeTotals::default();
        let mut strata = Strata::whole(n);
        // the derived totals reuse two buffers as the selection does, so stale entries of
        // earlier steps remain beyond this step's
        let mut previous: Option<LargeTotals> = None;
        let mut derived = LargeTotals::default();
        let mut derived_steps = 0;
        let mut kinds = [false; 2];
        for f in [0, 5, 1, 260, 0, 77, 1, 131, 299] {
            let data = StepData {
                rows: &sorted.x,
                groups: 2,
                units: &[],
                strata: &strata,
                totals: &none,
                model: Model::Marginal,
                h: &h,
                g: &g,
                cells: CellTable::shared(),
                depth: plane_count(2 * n),
                p,
            };
            let mut counted = LargeTotals::default();
            data.large_totals(None, &mut counted);
            data.large_totals(previous.as_ref(), &mut derived);
            assert_eq!(derived.slot, counted.slot);
            // both kinds of entries (strata of more and of at most TABLE_MAX samples)
            assert!(derived.narrow.len() >= counted.narrow.len());
            assert!(derived.wide.len() >= counted.wide.len());
            assert_eq!(derived.narrow[..counted.narrow.len()], counted.narrow[..]);
            assert_eq!(derived.wide[..counted.wide.len()], counted.wide[..]);
            kinds[0] |= !counted.narrow.is_empty();
            kinds[1] |= !counted.wide.is_empty();
            derived_steps += previous.is_some() as usize;
            let spent = previous.replace(std::mem::take(&mut derived));
            derived = spent.unwrap_or_default();
            strata = strata.split_sorted(&sorted, f, &mut spare);
            std::mem::swap(&mut sorted, &mut spare);
            assert_eq!(strata.parent.len(), strata.m);
        }
        assert_eq!(derived_steps, 8);
        assert_eq!(kinds, [true, true]);
    }

    #[test]
    fn sorted_split_matches_split_and_moves_rows() {
        // two lanes of X and two words of U per sample, so every copy path is taken; n above
        // SPLIT_CHUNK, so later splits partition several runs of strata in parallel
        let (n, p, r) = (3 * SPLIT_CHUNK + 301, 300, 70);
        let x = random_binary(n, p, 0.3, 8);
        let u = random_binary(n, r, 0.5, 9);
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let ub = Binary::new(&u, n, r, "U").unwrap();
        for (groups, words) in [(2, 2), (1, 1)] {
            let x_rows = pack_rows(&xb, Vec::new());
            let x_rows: Vec<Lane> = if groups == 2 {
                x_rows
            } else {
                x_rows.iter().step_by(2).copied().collect()
            };
            let u_rows = pack_row_words(&ub, 2, Vec::new());
            let u_rows: Vec<u64> = u_rows.iter().step_by(3 - words).copied().collect();
            let mut sorted = SortedRows {
                x: x_rows.clone(),
                groups,
                u: u_rows.clone(),
                words,
            };
            let mut spare = SortedRows {
                x: vec![Lane::ZERO; x_rows.len()],
                groups,
                u: vec![0; u_rows.len()],
                words,
            };
            let (mut plain, mut fast) = (Strata::whole(n), Strata::whole(n));
            // the same split without the samples' order, in buffers of its own
            let mut bare = Strata::whole_unordered(n);
            let (mut bare_sorted, mut bare_spare) = (sorted.clone(), spare.clone());
            let features = if groups == 2 {
                [3, 200, 299, 17, 3 + LANE]
            } else {
                [3, 200, 255, 17, 100]
            };
            for f in features {
                plain = plain.split(|t| x[t * p + f]);
                fast = fast.split_sorted(&sorted, f, &mut spare);
                std::mem::swap(&mut sorted, &mut spare);
                bare = bare.split_sorted(&bare_sorted, f, &mut bare_spare);
                std::mem::swap(&mut bare_sorted, &mut bare_spare);
                assert_eq!(fast.order, plain.order);
                assert_eq!(fast.offsets, plain.offsets);
                assert_eq!(fast.ids(), plain.ids());
                assert_eq!(fast.m, plain.m);
                assert!(bare.order.is_empty());
                assert_eq!(bare.offsets, fast.offsets);
                assert_eq!(bare.parent, fast.parent);
                assert_eq!((&bare_sorted.x, &bare_sorted.u), (&sorted.x, &sorted.u));
                for (pos, &t) in plain.order.iter().enumerate() {
                    let t = t as usize;
                    assert_eq!(
                        sorted.x[pos * groups..(pos + 1) * groups],
                        x_rows[t * groups..(t + 1) * groups]
                    );
                    assert_eq!(
                        sorted.u[pos * words..(pos + 1) * words],
                        u_rows[t * words..(t + 1) * words]
                    );
                }
            }
        }
    }

    #[test]
    fn bit_rows_and_counts_round_trip() {
        let _switch = kernel_switch();
        let (n, p) = (77, 300);
        let x = random_binary(n, p, 0.4, 5);
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let rows = pack_rows(&xb, Vec::new());
        for t in 0..n {
            for i in 0..2 * LANE {
                let bit = (rows[t * 2 + i / LANE].0[(i % LANE) / 64] >> (i % 64)) & 1;
                assert_eq!(bit as u8, if i < p { x[t * p + i] } else { 0 });
            }
        }
        let sums = column_sums(&rows, 2, p);
        for (i, &c) in sums.iter().enumerate() {
            assert_eq!(c, (0..n).map(|t| x[t * p + i] as u32).sum::<u32>());
        }
        // AVX2 and portable conversion of bit planes to counts agree
        let planes: Vec<Lane> = (0..13).map(|q| rows[q]).collect();
        let (fast, slow) = on_both_kernels(|| {
            let mut counts = vec![0u32; LANE];
            unslice(&planes, &mut counts);
            counts
        });
        assert_eq!(fast, slow);
        for (b, &c) in slow.iter().enumerate() {
            assert_eq!(c, count_in_planes(&planes, b));
        }
        // and into bytes (at most eight planes), with AVX-512 where the CPU has it
        let bytes = || {
            let mut counts = [0u8; LANE];
            unslice_bytes(&planes[..8], &mut counts);
            counts
        };
        let (fast, slow) = on_both_kernels(bytes);
        assert_eq!(fast, slow);
        assert_eq!(without_avx512(bytes), slow);
        for (b, &c) in slow.iter().enumerate() {
            assert_eq!(c as u32, count_in_planes(&planes[..8], b));
        }
    }

    /// Every path of the engine (cells of 0–3 samples, small and large classes, table
    /// look-ups, byte-count pairs, two feature lanes with a partial one, with and without latent units, both
    /// models) against the slow per-feature scorer, and the fastest kernels against the AVX2
    /// and the portable ones (bit for bit).
    #[test]
    fn tiny_sample_counts_match_slow_scorer() {
        // fewer samples than the small-cell classes cover (n ≤ SMALL): the tables are short
        for n in 1..=SMALL + 2 {
            let (p, r, k) = (5, 2, 3);
            let x = random_binary(n, p, 0.5, n as u64);
            let u = random_binary(n, r, 0.5, 100 + n as u64);
            let xb = Binary::new(&x, n, p, "X").unwrap();
            let ub = Binary::new(&u, n, r, "U").unwrap();
            for (units, model) in [
                (Some(&ub), Model::Marginal),
                (Some(&ub), Model::Conditional),
                (None, Model::Marginal),
            ] {
                let options = SelectOptions {
                    k,
                    model,
                    n_permutations: 0,
                    seed: 0,
                };
                let sel = select_features(&xb, units, &options).unwrap();
                // the step without latent units scores pairs, which feature_scores does not
                let first = if units.is_none() { 2 } else { 0 };
                for step in first..k {
                    let before = &sel.selected[..step];
                    for i in (0..p).filter(|i| !before.contains(i)) {
                        let want = feature_scores(&xb, units, before, i, model).unwrap();
                        for (j, &want) in want.iter().enumerate() {
                            let got = sel.scores[(step * p + i) * sel.r + j];
                            assert!(close(got, want, 1e-10), "n {n} {model:?}: {got} {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn engine_matches_slow_scorer_on_every_path() {
        let _switch = kernel_switch();
        let (n, p, x, u) = engine_problem();
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let ub = Binary::new(&u, n, u.len() / n, "U").unwrap();
        for (units, options) in engine_cases(&ub) {
            let (k, model) = (options.k, options.model);
            let (sel, portable) =
                on_both_kernels(|| select_features(&xb, units, &options).unwrap());
            let avx2 = without_avx512(|| select_features(&xb, units, &options).unwrap());
            let rr = sel.r;
            // the strata of the steps cover every path: tiny, small, mid-size and large
            let mut strata = Strata::whole(n);
            let mut sizes = Vec::new();
            let mut split_in_parts = false;
            for &f in &sel.selected[..k - 1] {
                strata = strata.split(|t| x[t * p + f]);
                sizes.extend((0..strata.m).map(|s| strata.size(s) as usize));
                // the parts of the sums: consecutive runs of whole strata covering them all
                let parts = strata.parts();
                assert_eq!(parts.first().map(|part| part.start), Some(0));
                assert_eq!(parts.last().map(|part| part.end), Some(strata.m));
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
                assert!(parts.iter().all(|part| !part.is_empty()));
                let wanted = if strata.m >= PARTS_MIN_STRATA {
                    SCORE_PARTS
                } else {
                    1
                };
                assert_eq!(parts.len(), wanted);
                split_in_parts |= parts.len() > 1;
            }
            assert!(split_in_parts);
            // (wide strata after a split: their u = 1 counts derived from their parents')
            let ranges = [(1, 3), (4, SMALL), (SMALL + 1, 64), (65, TABLE_MAX)];
            for (lo, hi) in ranges.into_iter().chain([(TABLE_MAX + 1, n)]) {
                assert!(sizes.iter().any(|s| (lo..=hi).contains(s)), "{lo}..={hi}");
            }
            for step in 1..k {
                let before = &sel.selected[..step];
                for i in (0..p).filter(|i| !before.contains(i)).step_by(7) {
                    let want = feature_scores(&xb, units, before, i, model).unwrap();
                    for (j, &want) in want.iter().enumerate() {
                        let got = sel.scores[(step * p + i) * rr + j];
                        assert!(
                            close(got, want, 1e-10),
                            "{model:?} {step} {i} {j}: {got} {want}"
                        );
                    }
                }
            }
            for other in [&portable, &avx2] {
                assert!(same_bits(&sel.scores, &other.scores));
            }
        }
    }

    /// A selection whose reused buffers ([`Scratch`]) hold another one's leftovers, here
    /// garbage larger than it needs, gives the scores of one with new buffers (bit for bit),
    /// for both models and without latent units: every step writes the entries it reads.
    #[test]
    fn leftover_buffers_do_not_change_the_scores() {
        let (n, p, x, u) = engine_problem();
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let ub = Binary::new(&u, n, u.len() / n, "U").unwrap();
        let garbage = |len: usize| Scratch {
            rows: vec![Lane([u64::MAX; 4]); len],
            units: vec![u64::MAX; len],
            packed_rows: vec![Lane([u64::MAX; 4]); len],
            packed_units: vec![u64::MAX; len],
            totals: std::array::from_fn(|_| LargeTotals {
                slot: vec![7; len],
                narrow: vec![[0xAB; LANE]; len],
                wide: vec![[123_456; LANE]; len],
            }),
            cells: std::array::from_fn(|_| WideCells {
                slot: vec![3; len],
                stride: 5,
                counts: vec![[654_321; LANE]; len],
            }),
        };
        for (units, options) in engine_cases(&ub) {
            drop(Scratch::take());
            let fresh = select_features(&xb, units, &options).unwrap();
            for len in [10, 2 * n] {
                drop(Scratch::take());
                garbage(len).keep();
                let reused = select_features(&xb, units, &options).unwrap();
                assert_eq!(reused.selected, fresh.selected);
                assert!(same_bits(&reused.scores, &fresh.scores));
            }
        }
    }

    /// The AVX-512 look-ups against the AVX2 ones (bit for bit), for every pair of cell sizes
    /// they take (both sides of 15 | 16, where the second pair of registers starts), and
    /// widths that end inside a group of eight or of 32 features.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_look_ups_match_avx2() {
        if !(has_avx512() && has_avx2()) {
            eprintln!("skipped: the CPU has no AVX-512F");
            return;
        }
        let table = CellTable::shared();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (a0, a1) in [(1, 2), (7, 15), (15, 16), (16, 31), (31, 31), (3, 24)] {
            for width in [1, 8, 13, 200, 256] {
                let mut first = [0u8; LANE];
                let mut total = [0u8; LANE];
                for b in 0..width {
                    first[b] = rng.random_range(0..=a0);
                    total[b] = first[b] + rng.random_range(0..=a1);
                }
                let rows = [&table.rows[a0 as usize], &table.rows[a1 as usize]];
                let run = |avx512: bool, both: bool| {
                    let mut sums = LaneSums::new();
                    sums.half
                        .iter_mut()
                        .enumerate()
                        .for_each(|(b, h)| *h = b as f64 / 7.0);
                    // the four kernels differ in their path only
                    macro_rules! terms {
                        ($kernel:path) => {
                            $kernel(rows, [a0, a1], &first, &total, width, &mut sums)
                        };
                    }
                    // SAFETY: the CPU has AVX-512F, BW and AVX2 (checked above); a0, a1 ≤ 31.
                    unsafe {
                        match (avx512, both) {
                            (true, true) => terms!(avx512::cells_terms::<true>),
                            (true, false) => terms!(avx512::cells_terms::<false>),
                            (false, true) => terms!(avx2::cells_terms::<true>),
                            (false, false) => terms!(avx2::cells_terms::<false>),
                        }
                    }
                    sums.flush();
                    (sums.half, sums.empty0, sums.empty1)
                };
                for both in [true, false] {
                    let (fast, slow) = (run(true, both), run(false, both));
                    let bits =
                        |v: &[f64]| v[..width].iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&fast.0), bits(&slow.0), "{a0} {a1} {width} {both}");
                    assert_eq!(fast.1[..width], slow.1[..width]);
                    assert_eq!(fast.2[..width], slow.2[..width]);
                    // and the sums are the rows' entries
                    for b in 0..width {
                        let (c, d) = (first[b] as usize, (total[b] - first[b]) as usize);
                        let want = b as f64 / 7.0
                            + match both {
                                true => rows[0][c] + rows[1][d],
                                false => rows[1][d],
                            };
                        assert_eq!(fast.0[b].to_bits(), want.to_bits(), "{a0} {a1} {b}");
                    }
                }
            }
        }
    }
}
