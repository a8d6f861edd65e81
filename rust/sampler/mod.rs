//! Narrow-format minibatch sampler (pure Rust core).
//!
//! Factorized embeddings (Trofimov et al. 2020, "Factorized embeddings learns rich and
//! biologically meaningful embedding spaces using factorized tensor decomposition",
//! Bioinformatics 36(Suppl 1), §2.1) train an MLP on the *narrow format* of an n×m matrix X:
//! one training example per entry (sample i, gene j, value X\[i, j\]). The original code
//! materialised the n·m table of index pairs and shuffled it with a torch `DataLoader`. This
//! module serves the same shuffled minibatches without that table:
//!
//! * **Included entries.** An entry is included unless X\[i, j\] is NaN (missing: the model
//!   trains on observed entries only), an optional explicit mask says 0, or a keyed hash of its
//!   flat index puts it on the other side of a held-out split. Let N be the number of included
//!   entries. When nothing is excluded, rank r *is* the flat index `i·m + j` (no extra memory).
//!   Otherwise a rank/select structure is built once: a bitmap of n·m bits stored in 64-byte
//!   cache-line blocks (one `u64` count of the included entries before the block + 7 words =
//!   448 bits), plus a select hint (the block holding rank k·1024) every 1024 included entries:
//!   n·m/7 + N/128 bytes in total (≈ 1/28 of the float32 matrix). `select(r)` reads the hint,
//!   searches the few blocks up to the next hint, then popcounts inside one cache line; a batch
//!   resolves its ranks in groups whose block loads are issued together, so cache misses overlap.
//! * **Permutation.** Epoch e visits ranks in the order π_e(0), π_e(1), …, π_e(N−1), where π_e is
//!   a keyed bijection of 0..N: a 6-round (unbalanced) Feistel network over the smallest power
//!   of two ≥ N (at least 4), with cycle-walking to stay inside 0..N. The round keys are
//!   derived from (seed, epoch) with the SplitMix64 finaliser, and the round function is
//!   the same finaliser applied to `half ⊕ key`. π_e is evaluated point-wise, so batch b
//!   (ranks `[b·B, (b+1)·B)`) is addressable in O(B) time and memory, and the result does not
//!   depend on the number of threads. Each included entry appears exactly once per epoch.
//! * **Held-out split.** With `holdout_fraction = f`, entry (i, j) is a validation entry iff
//!   `SplitMix64(flat ⊕ key(holdout_seed)) < f·2⁶⁴`: deterministic, O(1) memory, and the
//!   "train" and "validation" sides are exact complements within the observed entries.
//!
//! Big batches are filled in parallel with rayon, except in a process forked after the
//! extension was loaded (torch `DataLoader` workers), where rayon's thread pool does not
//! survive the fork (see [`crate::parallel`]).

use rayon::prelude::*;

use crate::error::{CoreError, CoreResult};
use crate::parallel::parallelism_allowed;

#[cfg(feature = "python")]
pub mod python;

/// Number of Feistel rounds of the permutation.
const ROUNDS: usize = 6;
/// Bitmap words per block of the rank/select structure (7 words + 1 count = 64 bytes).
const BLOCK_WORDS: usize = 7;
/// Bits per block.
const BLOCK_BITS: u64 = 64 * BLOCK_WORDS as u64;
/// Ranks resolved together by [`RankSelect::select_many`].
const SELECT_GROUP: usize = 256;
/// One select hint every 2^HINT_SHIFT included entries.
const HINT_SHIFT: u32 = 9;
/// Blocks per search range loaded ahead by [`RankSelect::select_many`].
const TOUCH_BLOCKS: usize = 3;
/// Batches at least this long are filled with rayon (when parallelism is allowed).
const PARALLEL_MIN: usize = 16_384;
/// Entries per rayon task when filling a batch.
const CHUNK: usize = 4_096;

/// SplitMix64 finaliser (Steele, Lea & Flood 2014): a fast bijective 64-bit mixer.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A read-only n×m grid of values, indexed by (row, column). Implemented for contiguous
/// row-major slices here and for strided numpy views in the bindings.
pub trait Grid<T>: Sync {
    /// (rows, columns).
    fn shape(&self) -> (usize, usize);
    /// The value at (i, j); callers guarantee `i < rows` and `j < columns`.
    fn at(&self, i: usize, j: usize) -> T;
}

/// A row-major matrix borrowed from a slice.
#[derive(Debug, Clone, Copy)]
pub struct RowMajor<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
}

impl<'a, T> RowMajor<'a, T> {
    /// Wrap `data` (length `rows·cols`) as a rows×cols matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> CoreResult<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(CoreError::shape(format!(
                "a {rows}x{cols} matrix needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        Ok(Self { data, rows, cols })
    }
}

impl Grid<f32> for RowMajor<'_, f32> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data
            .get(i * self.cols + j)
            .copied()
            .unwrap_or(f32::NAN)
    }
}

impl Grid<f32> for RowMajor<'_, f64> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data
            .get(i * self.cols + j)
            .map_or(f32::NAN, |&v| v as f32)
    }
}

impl Grid<u8> for RowMajor<'_, u8> {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    #[inline]
    fn at(&self, i: usize, j: usize) -> u8 {
        self.data.get(i * self.cols + j).copied().unwrap_or(0)
    }
}

/// Which entries of a held-out split the sampler serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Entries whose hash is at or above the held-out fraction.
    Train,
    /// Entries whose hash is below the held-out fraction.
    Validation,
    /// Every observed entry (the held-out split is ignored).
    All,
}

impl Side {
    /// Parse "train" / "validation" / "all".
    pub fn parse(side: &str) -> CoreResult<Self> {
        match side {
            "train" => Ok(Self::Train),
            "validation" => Ok(Self::Validation),
            "all" => Ok(Self::All),
            other => Err(CoreError::invalid(format!(
                "side must be \"train\", \"validation\" or \"all\", got {other:?}"
            ))),
        }
    }

    /// The name accepted by [`Side::parse`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validation => "validation",
            Self::All => "all",
        }
    }
}

/// Settings of a [`NarrowSampler`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Entries per batch (> 0).
    pub batch_size: usize,
    /// Seed of the per-epoch permutations.
    pub seed: u64,
    /// Fraction of observed entries put on the validation side, in [0, 1).
    pub holdout_fraction: f64,
    /// Seed of the held-out split hash.
    pub holdout_seed: u64,
    /// Side of the held-out split to serve.
    pub side: Side,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            seed: 0,
            holdout_fraction: 0.0,
            holdout_seed: 0,
            side: Side::All,
            drop_last: false,
        }
    }
}

/// Per-sample integer descriptors (batch, sex, donor, ...), n×d, row-major, all ≥ 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptors {
    data: Vec<i64>,
    rows: usize,
    cols: usize,
}

impl Descriptors {
    /// Check and wrap an n×d row-major table.
    pub fn new(data: Vec<i64>, rows: usize, cols: usize) -> CoreResult<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(CoreError::shape(format!(
                "descriptors: a {rows}x{cols} table needs {} values, got {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        if let Some(pos) = data.iter().position(|&v| v < 0) {
            let i = pos.checked_div(cols).unwrap_or(0);
            let k = pos.checked_rem(cols).unwrap_or(0);
            return Err(CoreError::invalid(format!(
                "descriptors must be >= 0 (category codes), got {} at sample {i}, column {k}; \
                 encode categories as 0..K-1 (e.g. with pandas.factorize)",
                data[pos]
            )));
        }
        Ok(Self { data, rows, cols })
    }

    /// Number of descriptor columns d.
    pub fn n_columns(&self) -> usize {
        self.cols
    }
}

/// The held-out split: a keyed hash of the flat index against a threshold.
#[derive(Debug, Clone, Copy)]
struct Holdout {
    key: u64,
    threshold: u64,
    side: Side,
}

impl Holdout {
    fn new(fraction: f64, seed: u64, side: Side) -> Self {
        // fraction in [0, 1): fraction·2^64 fits in u64 (the cast saturates anyway).
        let threshold = (fraction * 18_446_744_073_709_551_616.0) as u64;
        Self {
            key: mix64(seed ^ 0x5851_f42d_4c95_7f2d),
            threshold,
            side,
        }
    }

    #[inline]
    fn is_validation(&self, flat: u64) -> bool {
        mix64(flat.wrapping_mul(GOLDEN) ^ self.key) < self.threshold
    }

    #[inline]
    fn includes(&self, flat: u64) -> bool {
        match self.side {
            Side::All => true,
            Side::Train => !self.is_validation(flat),
            Side::Validation => self.is_validation(flat),
        }
    }
}

/// One cache line of the rank/select structure: the number of included entries before the
/// block, then 7 words = 448 bits of the bitmap, so a select touches one line once the block
/// is known.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Block {
    rank: u64,
    words: [u64; BLOCK_WORDS],
}

/// A bitmap over the n·m flat indices, stored as [`Block`]s, plus a select hint every
/// 2^[`HINT_SHIFT`] included entries (the block holding that entry).
#[derive(Debug, Clone)]
struct RankSelect {
    blocks: Vec<Block>,
    hints: Vec<u64>,
}

impl RankSelect {
    /// Build from a predicate over flat indices 0..total (parallel over blocks when allowed).
    fn build(total: u64, included: impl Fn(u64, usize, usize) -> bool + Sync, cols: usize) -> Self {
        let n_blocks = total.div_ceil(BLOCK_BITS) as usize;
        let mut blocks = vec![Block::default(); n_blocks];
        let fill = |(b, block): (usize, &mut Block)| {
            let block_start = b as u64 * BLOCK_BITS;
            let (mut i, mut j) = (
                (block_start / cols as u64) as usize,
                (block_start % cols as u64) as usize,
            );
            for (w, word) in block.words.iter_mut().enumerate() {
                let start = block_start + w as u64 * 64;
                let end = (start + 64).min(total);
                let mut bits = 0u64;
                for flat in start..end {
                    if included(flat, i, j) {
                        bits |= 1u64 << (flat - start);
                    }
                    j += 1;
                    if j == cols {
                        j = 0;
                        i += 1;
                    }
                }
                *word = bits;
            }
        };
        if parallelism_allowed() {
            blocks.par_iter_mut().enumerate().for_each(fill);
        } else {
            blocks.iter_mut().enumerate().for_each(fill);
        }
        let mut hints = Vec::new();
        let mut acc = 0u64;
        let mut next_hint = 0u64;
        for (b, block) in blocks.iter_mut().enumerate() {
            block.rank = acc;
            acc += block
                .words
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum::<u64>();
            while next_hint < acc {
                hints.push(b as u64);
                next_hint += 1 << HINT_SHIFT;
            }
        }
        Self { blocks, hints }
    }

    fn bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>() + self.hints.len() * 8
    }

    /// Replace each rank in `ranks` by its position, in groups of [`SELECT_GROUP`]: first the
    /// hints and block counts of the whole group are loaded (independent loads whose cache
    /// misses overlap), then the branchy in-block search runs on cached lines.
    fn select_many(&self, ranks: &mut [i64]) {
        let mut bounds = [(0usize, 0usize); SELECT_GROUP];
        for group in ranks.chunks_mut(SELECT_GROUP) {
            for (bound, &r) in bounds.iter_mut().zip(group.iter()) {
                *bound = self.search_range(r as u64);
            }
            // Touch the first lines of every search range: independent loads, misses overlap.
            let mut touch = 0u64;
            for &(lo, hi) in &bounds[..group.len()] {
                for blk in self
                    .blocks
                    .get(lo..hi.min(lo + TOUCH_BLOCKS))
                    .unwrap_or(&[])
                {
                    touch = touch.wrapping_add(blk.rank);
                }
            }
            std::hint::black_box(touch);
            for (r, &(lo, hi)) in group.iter_mut().zip(bounds.iter()) {
                *r = self.select_in(*r as u64, lo, hi) as i64;
            }
        }
    }

    /// Blocks [lo, hi) that must hold the one with rank `r` (from the select hints).
    #[inline]
    fn search_range(&self, r: u64) -> (usize, usize) {
        let k = (r >> HINT_SHIFT) as usize;
        let lo = self.hints.get(k).copied().unwrap_or(0) as usize;
        let hi = self
            .hints
            .get(k + 1)
            .map_or(self.blocks.len(), |&h| h as usize + 1);
        (lo, hi)
    }

    /// Position of the one with rank `r` (0-based); `r` must be below the total.
    #[cfg(test)]
    fn select(&self, r: u64) -> u64 {
        let (lo, hi) = self.search_range(r);
        self.select_in(r, lo, hi)
    }

    /// Position of the one with rank `r`, knowing its block is in [lo, hi).
    #[inline]
    fn select_in(&self, r: u64, lo: usize, hi: usize) -> u64 {
        // The block holding rank r is the last one in [lo, hi) whose rank is <= r.
        let b = if hi - lo <= 2 * TOUCH_BLOCKS {
            let mut b = lo;
            while b + 1 < hi && self.blocks.get(b + 1).is_some_and(|blk| blk.rank <= r) {
                b += 1;
            }
            b
        } else {
            let range = self.blocks.get(lo..hi).unwrap_or(&[]);
            lo + range.partition_point(|blk| blk.rank <= r).saturating_sub(1)
        };
        let Some(block) = self.blocks.get(b) else {
            return u64::MAX;
        };
        let mut rem = r - block.rank;
        for (w, &word) in block.words.iter().enumerate() {
            let ones = u64::from(word.count_ones());
            if rem < ones {
                return b as u64 * BLOCK_BITS + w as u64 * 64 + select_in_word(word, rem as u32);
            }
            rem -= ones;
        }
        // Unreachable for r < total; return an out-of-range position rather than panic.
        u64::MAX
    }
}

/// Position of the k-th (0-based) set bit of `word`; k < popcount(word).
#[inline]
fn select_in_word(mut word: u64, k: u32) -> u64 {
    // Skip whole bytes first, then clear the remaining lower set bits.
    let mut base = 0u64;
    let mut k = k;
    loop {
        let ones = (word & 0xff).count_ones();
        if k < ones || word == 0 {
            break;
        }
        k -= ones;
        word >>= 8;
        base += 8;
    }
    for _ in 0..k {
        word &= word.wrapping_sub(1);
    }
    base + u64::from(word.trailing_zeros())
}

/// A keyed bijection of 0..n: an unbalanced Feistel network over 2^bits with cycle-walking.
#[derive(Debug, Clone, Copy)]
struct Permutation {
    n: u64,
    /// Bits of the left half in the first round (the right half has `bits - left_bits`).
    left_bits: u32,
    right_bits: u32,
    keys: [u64; ROUNDS],
}

impl Permutation {
    fn new(n: u64, seed: u64, epoch: u64) -> Self {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let left_bits = bits / 2;
        let mut state = mix64(seed.wrapping_mul(GOLDEN) ^ mix64(epoch ^ 0xd1b5_4a32_d192_ed03));
        let mut keys = [0u64; ROUNDS];
        for key in &mut keys {
            state = state.wrapping_add(GOLDEN);
            *key = mix64(state);
        }
        Self {
            n,
            left_bits,
            right_bits: bits - left_bits,
            keys,
        }
    }

    #[inline]
    fn encrypt(&self, mut x: u64) -> u64 {
        let (mut a, mut b) = (self.left_bits, self.right_bits);
        for &key in &self.keys {
            // x = L·2^b + R with L on a bits and R on b bits → R·2^a + (L ⊕ F(R)).
            let left = x >> b;
            let right = x & ((1u64 << b) - 1);
            let f = mix64(right ^ key) & ((1u64 << a) - 1);
            x = (right << a) | (left ^ f);
            std::mem::swap(&mut a, &mut b);
        }
        x
    }

    /// π(r) for r < n.
    #[inline]
    fn apply(&self, r: u64) -> u64 {
        let mut x = self.encrypt(r);
        while x >= self.n {
            x = self.encrypt(x);
        }
        x
    }
}

/// One minibatch in the narrow format (all vectors have the batch length b).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// Sample (row) index of each entry.
    pub samples: Vec<i64>,
    /// Gene (column) index of each entry.
    pub genes: Vec<i64>,
    /// Descriptors of each entry's sample, b×d row-major (empty without descriptors).
    pub descriptors: Vec<i64>,
    /// X\[sample, gene\] as float32.
    pub values: Vec<f32>,
}

/// The narrow-format sampler: included entries, per-epoch permutation, batch addressing.
#[derive(Debug, Clone)]
pub struct NarrowSampler {
    rows: usize,
    cols: usize,
    n_entries: u64,
    /// `None` when every entry is included (rank = flat index).
    select: Option<RankSelect>,
    descriptors: Option<Descriptors>,
    config: SamplerConfig,
}

/// The first problem found while scanning X (in flat order).
#[derive(Debug, Clone, Copy)]
enum ScanError {
    Infinite { flat: u64, value: f32 },
    BadMask { flat: u64, value: u8 },
}

impl ScanError {
    fn flat(&self) -> u64 {
        match *self {
            Self::Infinite { flat, .. } | Self::BadMask { flat, .. } => flat,
        }
    }

    fn into_error(self, cols: usize) -> CoreError {
        let at = |flat: u64| (flat / cols as u64, flat % cols as u64);
        match self {
            Self::Infinite { flat, value } => {
                let (i, j) = at(flat);
                CoreError::invalid(format!(
                    "X has an infinite value ({value}) at sample {i}, gene {j} (float64 values \
                     beyond the float32 range count as infinite); missing values must be NaN: \
                     replace infinities (e.g. X[~np.isfinite(X)] = np.nan) or fix the input"
                ))
            }
            Self::BadMask { flat, value } => {
                let (i, j) = at(flat);
                CoreError::invalid(format!(
                    "mask must hold 0 (exclude) or 1 (include), got {value} at sample {i}, \
                     gene {j}; pass a boolean array"
                ))
            }
        }
    }
}

fn first_error(a: Option<ScanError>, b: Option<ScanError>) -> Option<ScanError> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.flat() < x.flat() { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

impl NarrowSampler {
    /// Scan X (and the mask), check the inputs and build the included-entry index.
    ///
    /// Errors: `InvalidInput` for infinite values of X, mask values other than 0/1,
    /// `batch_size == 0`, `holdout_fraction` outside [0, 1) and when no entry is included;
    /// `ShapeMismatch` when the mask or the descriptors do not match X.
    pub fn new<X: Grid<f32> + ?Sized>(
        x: &X,
        mask: Option<&dyn Grid<u8>>,
        descriptors: Option<Descriptors>,
        config: SamplerConfig,
    ) -> CoreResult<Self> {
        let (rows, cols) = x.shape();
        if config.batch_size == 0 {
            return Err(CoreError::invalid("batch_size must be at least 1, got 0"));
        }
        if !(0.0..1.0).contains(&config.holdout_fraction) {
            return Err(CoreError::invalid(format!(
                "holdout_fraction must be in [0, 1), got {}",
                config.holdout_fraction
            )));
        }
        if let Some(mask) = mask {
            if mask.shape() != (rows, cols) {
                let (mr, mc) = mask.shape();
                return Err(CoreError::shape(format!(
                    "mask has shape ({mr}, {mc}) but X has shape ({rows}, {cols})"
                )));
            }
        }
        if let Some(d) = &descriptors {
            if d.rows != rows {
                return Err(CoreError::shape(format!(
                    "descriptors have {} rows but X has {rows} samples (rows); pass one row \
                     of descriptors per sample",
                    d.rows
                )));
            }
        }
        let total = (rows as u64)
            .checked_mul(cols as u64)
            .filter(|&t| t < (1u64 << 62))
            .ok_or_else(|| CoreError::invalid("X is too large (n·m must be below 2^62)"))?;
        let holdout = Holdout::new(config.holdout_fraction, config.holdout_seed, config.side);
        let included = |i: usize, j: usize, flat: u64| -> Result<bool, ScanError> {
            let v = x.at(i, j);
            if v.is_infinite() {
                return Err(ScanError::Infinite { flat, value: v });
            }
            let keep_mask = match mask {
                None => true,
                Some(mask) => match mask.at(i, j) {
                    0 => false,
                    1 => true,
                    value => return Err(ScanError::BadMask { flat, value }),
                },
            };
            Ok(keep_mask && !v.is_nan() && holdout.includes(flat))
        };

        // Pass 1: validate everything and count the included entries (no allocation).
        let scan_row = |i: usize| -> (u64, Option<ScanError>) {
            let mut count = 0u64;
            let base = i as u64 * cols as u64;
            for j in 0..cols {
                match included(i, j, base + j as u64) {
                    Ok(keep) => count += u64::from(keep),
                    Err(e) => return (count, Some(e)),
                }
            }
            (count, None)
        };
        let (count, error) = if parallelism_allowed() {
            (0..rows)
                .into_par_iter()
                .map(scan_row)
                .reduce(|| (0, None), |a, b| (a.0 + b.0, first_error(a.1, b.1)))
        } else {
            (0..rows)
                .map(scan_row)
                .fold((0, None), |a, b| (a.0 + b.0, first_error(a.1, b.1)))
        };
        if let Some(e) = error {
            return Err(e.into_error(cols));
        }
        if count == 0 {
            let why = if total == 0 {
                "X is empty".to_string()
            } else {
                format!(
                    "every entry of X is missing (NaN), masked out or on the other side of the \
                     held-out split (side={:?}, holdout_fraction={})",
                    config.side.name(),
                    config.holdout_fraction
                )
            };
            return Err(CoreError::invalid(format!(
                "no included entries to sample: {why}; check the mask, NaNs and the split"
            )));
        }

        // Pass 2: only when something is excluded, build the bitmap and block counts.
        let select = if count == total {
            None
        } else {
            Some(RankSelect::build(
                total,
                |flat, i, j| matches!(included(i, j, flat), Ok(true)),
                cols,
            ))
        };
        Ok(Self {
            rows,
            cols,
            n_entries: count,
            select,
            descriptors,
            config,
        })
    }

    /// (rows n, columns m) of X.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Included entries N (each appears exactly once per epoch).
    pub fn n_entries(&self) -> u64 {
        self.n_entries
    }

    /// The settings this sampler was built with.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Number of descriptor columns d (0 without descriptors).
    pub fn n_descriptors(&self) -> usize {
        self.descriptors.as_ref().map_or(0, Descriptors::n_columns)
    }

    /// Whether descriptors were given.
    pub fn has_descriptors(&self) -> bool {
        self.descriptors.is_some()
    }

    /// Bytes held by the included-entry index (0 when nothing is excluded).
    pub fn index_bytes(&self) -> usize {
        self.select.as_ref().map_or(0, RankSelect::bytes)
    }

    /// Batches per epoch: ⌈N / B⌉, or ⌊N / B⌋ with `drop_last`.
    pub fn n_batches(&self) -> u64 {
        let b = self.config.batch_size as u64;
        if self.config.drop_last {
            self.n_entries / b
        } else {
            self.n_entries.div_ceil(b)
        }
    }

    /// Ranks [start, end) covered by batch `index`.
    fn batch_range(&self, index: u64) -> CoreResult<(u64, u64)> {
        let n_batches = self.n_batches();
        if index >= n_batches {
            return Err(CoreError::invalid(format!(
                "batch index {index} is out of range: this sampler has {n_batches} batches per epoch"
            )));
        }
        let b = self.config.batch_size as u64;
        let start = index * b;
        Ok((start, (start + b).min(self.n_entries)))
    }

    /// Flat index `i·m + j` of the entry at position `rank` of epoch permutation `perm`.
    #[cfg(test)]
    #[inline]
    fn flat_at(&self, perm: &Permutation, rank: u64) -> u64 {
        let p = perm.apply(rank);
        match &self.select {
            None => p,
            Some(s) => s.select(p),
        }
    }

    /// Fill batch `index` of epoch `epoch`: entries at permuted ranks
    /// `[index·B, min((index+1)·B, N))`.
    ///
    /// Errors: `InvalidInput` for an out-of-range batch index; `ShapeMismatch` when `x` is not
    /// the matrix the sampler was built on (different shape).
    pub fn batch<X: Grid<f32> + ?Sized>(&self, x: &X, index: u64, epoch: u64) -> CoreResult<Batch> {
        if x.shape() != (self.rows, self.cols) {
            let (r, c) = x.shape();
            return Err(CoreError::shape(format!(
                "X has shape ({r}, {c}) but the sampler was built on a ({}, {}) matrix",
                self.rows, self.cols
            )));
        }
        let (start, end) = self.batch_range(index)?;
        let len = (end - start) as usize;
        let perm = Permutation::new(self.n_entries, self.config.seed, epoch);
        let mut samples = vec![0i64; len];
        let mut genes = vec![0i64; len];
        let mut values = vec![0f32; len];
        let cols = self.cols as u64;
        let fill = |offset: usize, s: &mut [i64], g: &mut [i64], v: &mut [f32]| {
            // Phase 1 (compute-bound): permuted rank → flat index, stored in `g` for now.
            for (k, g) in g.iter_mut().enumerate() {
                *g = perm.apply(start + (offset + k) as u64) as i64;
            }
            if let Some(select) = &self.select {
                select.select_many(g);
            }
            // Phase 2 (memory-bound): independent gathers from X overlap their cache misses.
            for ((s, g), v) in s.iter_mut().zip(g.iter_mut()).zip(v.iter_mut()) {
                let flat = *g as u64;
                let (i, j) = (flat / cols, flat % cols);
                *s = i as i64;
                *g = j as i64;
                *v = x.at(i as usize, j as usize);
            }
        };
        if len >= PARALLEL_MIN && parallelism_allowed() {
            samples
                .par_chunks_mut(CHUNK)
                .zip(genes.par_chunks_mut(CHUNK))
                .zip(values.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(c, ((s, g), v))| fill(c * CHUNK, s, g, v));
        } else {
            fill(0, &mut samples, &mut genes, &mut values);
        }
        let descriptors = match &self.descriptors {
            Some(d) if d.cols > 0 => {
                let mut out = Vec::with_capacity(len * d.cols);
                for &i in &samples {
                    let row = i as usize * d.cols;
                    out.extend_from_slice(&d.data[row..row + d.cols]);
                }
                out
            }
            _ => Vec::new(),
        };
        Ok(Batch {
            samples,
            genes,
            descriptors,
            values,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn lcg_matrix(rows: usize, cols: usize, nan_every: usize) -> Vec<f32> {
        (0..rows * cols)
            .map(|k| {
                if nan_every > 1 && k % nan_every == 1 {
                    f32::NAN
                } else {
                    k as f32 * 0.5
                }
            })
            .collect()
    }

    fn config(batch_size: usize) -> SamplerConfig {
        SamplerConfig {
            batch_size,
            seed: 7,
            ..SamplerConfig::default()
        }
    }

    fn epoch_entries(s: &NarrowSampler, x: &dyn Grid<f32>, epoch: u64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for b in 0..s.n_batches() {
            let batch = s.batch(x, b, epoch).unwrap();
            for k in 0..batch.samples.len() {
                let (i, j) = (batch.samples[k], batch.genes[k]);
                let v = x.at(i as usize, j as usize);
                assert_eq!(batch.values[k].to_bits(), v.to_bits());
                out.push((i, j));
            }
        }
        out
    }

    #[test]
    fn permutation_is_a_bijection_for_many_sizes() {
        for n in [1u64, 2, 3, 4, 5, 7, 8, 9, 31, 64, 100, 1000, 4097] {
            for epoch in 0..3 {
                let p = Permutation::new(n, 42, epoch);
                let mut seen = vec![false; n as usize];
                for r in 0..n {
                    let y = p.apply(r);
                    assert!(y < n);
                    assert!(!seen[y as usize], "duplicate for n={n}");
                    seen[y as usize] = true;
                }
            }
        }
    }

    #[test]
    fn permutation_depends_on_seed_and_epoch() {
        let order = |seed, epoch| {
            let p = Permutation::new(1000, seed, epoch);
            (0..1000).map(|r| p.apply(r)).collect::<Vec<_>>()
        };
        assert_eq!(order(1, 0), order(1, 0));
        assert_ne!(order(1, 0), order(1, 1));
        assert_ne!(order(1, 0), order(2, 0));
    }

    #[test]
    fn select_matches_naive_on_sparse_and_dense_bitmaps() {
        for (total, every) in [
            (100_000u64, 1u64),
            (100_000, 3),
            (300_000, 9_973),
            (5_000, 4_999),
        ] {
            let keep = |flat: u64| flat % every == every / 2 || flat == total - 1;
            let rs = RankSelect::build(total, |flat, _, _| keep(flat), 1000);
            let ones: Vec<u64> = (0..total).filter(|&f| keep(f)).collect();
            for (r, &pos) in ones.iter().enumerate() {
                assert_eq!(
                    rs.select(r as u64),
                    pos,
                    "total={total} every={every} r={r}"
                );
            }
            let mut ranks: Vec<i64> = (0..ones.len() as i64).rev().collect();
            rs.select_many(&mut ranks);
            let expected: Vec<i64> = ones.iter().rev().map(|&p| p as i64).collect();
            assert_eq!(ranks, expected);
        }
    }

    #[test]
    fn select_in_word_matches_naive() {
        let words = [
            1u64,
            0x8000_0000_0000_0000,
            0xdead_beef_cafe_f00d,
            u64::MAX,
            0x0101_0000_0000_0100,
        ];
        for w in words {
            let positions: Vec<u64> = (0..64).filter(|b| w >> b & 1 == 1).collect();
            for (k, &p) in positions.iter().enumerate() {
                assert_eq!(select_in_word(w, k as u32), p);
            }
        }
    }

    #[test]
    fn every_observed_entry_once_per_epoch() {
        for (rows, cols, nan_every, bs) in [
            (13, 17, 5, 10),
            (1, 1000, 0, 33),
            (50, 3, 2, 1),
            (7, 700, 11, 4096),
            (3, 3, 0, 100),
        ] {
            let data = lcg_matrix(rows, cols, nan_every);
            let x = RowMajor::new(&data, rows, cols).unwrap();
            let s = NarrowSampler::new(&x, None, None, config(bs)).unwrap();
            let expected: HashSet<(i64, i64)> = (0..rows * cols)
                .filter(|&k| !data[k].is_nan())
                .map(|k| ((k / cols) as i64, (k % cols) as i64))
                .collect();
            assert_eq!(s.n_entries() as usize, expected.len());
            assert_eq!(s.index_bytes() == 0, nan_every == 0);
            let got = epoch_entries(&s, &x, 3);
            assert_eq!(got.len(), expected.len());
            assert_eq!(got.iter().copied().collect::<HashSet<_>>(), expected);
        }
    }

    #[test]
    fn big_batches_use_the_parallel_path_identically() {
        let (rows, cols) = (40, 1000);
        let data = lcg_matrix(rows, cols, 7);
        let x = RowMajor::new(&data, rows, cols).unwrap();
        let s = NarrowSampler::new(&x, None, None, config(30_000)).unwrap();
        let batch = s.batch(&x, 0, 1).unwrap();
        assert_eq!(batch.samples.len(), 30_000);
        let perm = Permutation::new(s.n_entries(), 7, 1);
        for (k, (&i, &j)) in batch
            .samples
            .iter()
            .zip(&batch.genes)
            .enumerate()
            .step_by(997)
        {
            let flat = s.flat_at(&perm, k as u64);
            assert_eq!(
                (i as u64, j as u64),
                (flat / cols as u64, flat % cols as u64)
            );
        }
    }

    #[test]
    fn holdout_sides_are_complementary() {
        let (rows, cols) = (30, 200);
        let data = lcg_matrix(rows, cols, 9);
        let x = RowMajor::new(&data, rows, cols).unwrap();
        let make = |side| {
            let c = SamplerConfig {
                holdout_fraction: 0.2,
                holdout_seed: 3,
                side,
                ..config(64)
            };
            NarrowSampler::new(&x, None, None, c).unwrap()
        };
        let (all, train, val) = (make(Side::All), make(Side::Train), make(Side::Validation));
        assert_eq!(train.n_entries() + val.n_entries(), all.n_entries());
        let t: HashSet<_> = epoch_entries(&train, &x, 0).into_iter().collect();
        let v: HashSet<_> = epoch_entries(&val, &x, 0).into_iter().collect();
        assert!(t.is_disjoint(&v));
        let frac = val.n_entries() as f64 / all.n_entries() as f64;
        assert!((frac - 0.2).abs() < 0.03, "validation fraction {frac}");
    }

    #[test]
    fn mask_and_descriptors() {
        let (rows, cols) = (6, 5);
        let data = lcg_matrix(rows, cols, 0);
        let x = RowMajor::new(&data, rows, cols).unwrap();
        let mask_data: Vec<u8> = (0..rows * cols).map(|k| u8::from(k % 3 != 0)).collect();
        let mask = RowMajor::new(&mask_data, rows, cols).unwrap();
        let desc = Descriptors::new((0..rows as i64 * 2).collect(), rows, 2).unwrap();
        let s = NarrowSampler::new(&x, Some(&mask), Some(desc), config(4)).unwrap();
        assert_eq!(s.n_entries(), 20);
        for b in 0..s.n_batches() {
            let batch = s.batch(&x, b, 0).unwrap();
            for (k, (&i, &j)) in batch.samples.iter().zip(&batch.genes).enumerate() {
                assert_eq!(mask_data[i as usize * cols + j as usize], 1);
                assert_eq!(&batch.descriptors[2 * k..2 * k + 2], &[2 * i, 2 * i + 1]);
            }
        }
    }

    #[test]
    fn drop_last_and_batch_lengths() {
        let data = lcg_matrix(10, 10, 0);
        let x = RowMajor::new(&data, 10, 10).unwrap();
        let keep = NarrowSampler::new(&x, None, None, config(30)).unwrap();
        let drop = NarrowSampler::new(
            &x,
            None,
            None,
            SamplerConfig {
                drop_last: true,
                ..config(30)
            },
        )
        .unwrap();
        assert_eq!((keep.n_batches(), drop.n_batches()), (4, 3));
        assert_eq!(keep.batch(&x, 3, 0).unwrap().samples.len(), 10);
        assert!(drop.batch(&x, 3, 0).is_err());
    }

    #[test]
    fn errors_are_typed() {
        use crate::error::ErrorKind;
        let mut data = lcg_matrix(4, 4, 0);
        let x = RowMajor::new(&data, 4, 4).unwrap();
        let kind = |r: CoreResult<NarrowSampler>| r.unwrap_err().kind;
        assert_eq!(
            kind(NarrowSampler::new(&x, None, None, config(0))),
            ErrorKind::InvalidInput
        );
        let bad_frac = SamplerConfig {
            holdout_fraction: 1.0,
            ..config(2)
        };
        assert_eq!(
            kind(NarrowSampler::new(&x, None, None, bad_frac)),
            ErrorKind::InvalidInput
        );
        let m = vec![1u8; 12];
        let mask = RowMajor::new(&m, 3, 4).unwrap();
        assert_eq!(
            kind(NarrowSampler::new(&x, Some(&mask), None, config(2))),
            ErrorKind::ShapeMismatch
        );
        let d = Descriptors::new(vec![0; 3], 3, 1).unwrap();
        assert_eq!(
            kind(NarrowSampler::new(&x, None, Some(d), config(2))),
            ErrorKind::ShapeMismatch
        );
        assert_eq!(
            Descriptors::new(vec![0, -1], 2, 1).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        let zeros = vec![0u8; 16];
        let none = RowMajor::new(&zeros, 4, 4).unwrap();
        assert_eq!(
            kind(NarrowSampler::new(&x, Some(&none), None, config(2))),
            ErrorKind::InvalidInput
        );
        data[6] = f32::INFINITY;
        let x = RowMajor::new(&data, 4, 4).unwrap();
        let err = NarrowSampler::new(&x, None, None, config(2)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("sample 1, gene 2"), "{}", err.message);
        let big = vec![1e300f64; 4];
        let x64 = RowMajor::new(&big, 2, 2).unwrap();
        assert_eq!(
            kind(NarrowSampler::new(&x64, None, None, config(2))),
            ErrorKind::InvalidInput
        );
        assert!(Side::parse("test").is_err());
    }
}
