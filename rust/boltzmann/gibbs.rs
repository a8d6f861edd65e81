//! Blocked Gibbs sampling on bit-packed binary states.
//!
//! A particle stores every layer as bits (8 units per byte). The input of a unit is the sum of
//! the weights of the active units of the neighbouring layers; it is computed with subset-sum
//! tables: for each group of 4 units of a layer and each of the 16 states of the group, the table
//! holds the sum of their weight rows, so a nibble of state costs one vector addition instead of
//! four multiply-adds (exact sums, float32 accumulation; a layer's tables stay in L2). A sweep samples the odd layers given the
//! even ones, then the even layers given the new odd ones (or the reverse, `first_parity`).
//! BoltzmannMachines.jl's `gibbssample!` for a DBM instead updates every layer at once from the
//! previous state (`Schedule::Synchronous`): two interleaved blocked chains, so adjacent layers
//! of a particle come from different chains.
//!
//! A layer is sampled eight units at a time: `u < σ(z)` is tested as `u (1 + e^{-z}) < 1` with
//! a float32 exponential; with AVX2 the random lanes stay in registers and a group's byte is one
//! `movemask` (the same operations in the same order as the portable loop, so the same states).
//!
//! Particles are processed in fixed chunks of `CHUNK` with one random stream per chunk, so the
//! result depends on the seed only, not on the number of threads.

use rayon::prelude::*;

use super::rng::{stream, FastUniform, Purpose};
use super::simd::simd_dispatch;
use super::Dbm;
use crate::error::{CoreError, CoreResult};

/// Order of the layer updates within one Gibbs sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Odd layers given the even ones, then the even layers given the new odd ones.
    Blocked,
    /// Every layer given the previous state of its neighbours (BoltzmannMachines.jl's DBM
    /// `gibbssample!`).
    Synchronous,
}

/// Particles per random stream and per rayon task.
pub(crate) const CHUNK: usize = 64;

/// Subset-sum table of one weight matrix in one direction (`n_in` inputs → `n_out` outputs).
pub(crate) struct Table {
    n_groups: usize,
    stride: usize,
    data: Vec<f32>,
}

/// Units per table lookup (a nibble of the packed state).
const GROUP: usize = 4;
const ENTRIES: usize = 1 << GROUP;

impl Table {
    /// `get(i, j)` is the weight from input unit `i` to output unit `j`.
    pub(crate) fn build(
        n_in: usize,
        n_out: usize,
        get: impl Fn(usize, usize) -> f64 + Sync,
    ) -> Self {
        let n_groups = n_in.div_ceil(GROUP);
        let stride = padded(n_out);
        let mut data = vec![0f32; n_groups * ENTRIES * stride];
        data.par_chunks_mut(ENTRIES * stride)
            .enumerate()
            .for_each(|(g, block)| {
                for code in 1..ENTRIES {
                    let low = code.trailing_zeros() as usize;
                    let prev = code & (code - 1);
                    let unit = g * GROUP + low;
                    let (before, rest) = block.split_at_mut(code * stride);
                    let entry = &mut rest[..stride];
                    entry.copy_from_slice(&before[prev * stride..(prev + 1) * stride]);
                    if unit < n_in {
                        for (j, e) in entry.iter_mut().take(n_out).enumerate() {
                            *e += get(unit, j) as f32;
                        }
                    }
                }
            });
        Self {
            n_groups,
            stride,
            data,
        }
    }
}

#[inline]
pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// `out[col .. col + 8V] = Σ_sources Σ_groups table[group][code]` for one particle, with the
/// 8V accumulators held in registers.
#[inline(always)]
fn accumulate<const V: usize>(
    out: &mut [f32],
    sources: &[(&Table, usize)],
    row: &[u8],
    col: usize,
) {
    let mut acc = [[0f32; 8]; V];
    for &(table, offset) in sources {
        let stride = table.stride;
        for g in 0..table.n_groups {
            let code = ((row[offset + g / 2] >> (4 * (g % 2))) & 0x0F) as usize;
            let start = (g * ENTRIES + code) * stride + col;
            let values = &table.data[start..start + 8 * V];
            for (a, chunk) in acc.iter_mut().zip(values.chunks_exact(8)) {
                for k in 0..8 {
                    a[k] += chunk[k];
                }
            }
        }
    }
    for (dst, a) in out[col..col + 8 * V].chunks_exact_mut(8).zip(&acc) {
        dst.copy_from_slice(a);
    }
}

/// The layout of packed particles and the subset-sum tables of a chain of layers.
pub(crate) struct Sampler {
    pub(crate) sizes: Vec<usize>,
    nbytes: Vec<usize>,
    offsets: Vec<usize>,
    pub(crate) row_bytes: usize,
    /// `up[l]`: from the bits of layer `l` to the inputs of layer `l + 1`.
    up: Vec<Table>,
    /// `down[l]`: from the bits of layer `l + 1` to the inputs of layer `l`.
    down: Vec<Table>,
    /// A table without groups (placeholder).
    empty: Table,
}

impl Sampler {
    /// Tables of `weights[l]` (`sizes[l] × sizes[l+1]`, row-major).
    pub(crate) fn new(sizes: &[usize], weights: &[&[f64]]) -> Self {
        let nbytes: Vec<usize> = sizes.iter().map(|n| n.div_ceil(8)).collect();
        let mut offsets = Vec::with_capacity(sizes.len());
        let mut row_bytes = 0;
        for &b in &nbytes {
            offsets.push(row_bytes);
            row_bytes += b;
        }
        let mut up = Vec::with_capacity(weights.len());
        let mut down = Vec::with_capacity(weights.len());
        for (l, w) in weights.iter().enumerate() {
            let (nl, nu) = (sizes[l], sizes[l + 1]);
            up.push(Table::build(nl, nu, |i, j| w[i * nu + j]));
            down.push(Table::build(nu, nl, |i, j| w[j * nu + i]));
        }
        Self {
            sizes: sizes.to_vec(),
            nbytes,
            offsets,
            row_bytes,
            up,
            down,
            empty: Table {
                n_groups: 0,
                stride: 0,
                data: Vec::new(),
            },
        }
    }

    pub(crate) fn from_dbm(dbm: &Dbm) -> Self {
        let weights: Vec<&[f64]> = dbm.layers.iter().map(|l| l.weights.as_slice()).collect();
        Self::new(&dbm.sizes(), &weights)
    }

    pub(crate) fn n_layers(&self) -> usize {
        self.sizes.len()
    }

    pub(crate) fn max_stride(&self) -> usize {
        self.sizes.iter().map(|&n| padded(n)).max().unwrap_or(8)
    }

    /// Raw inputs (weights only: no bias, temperature 1) of layer `l` for every particle of
    /// `rows` into `acc` (`max_stride` floats per particle).
    #[inline(always)]
    pub(crate) fn inputs(&self, rows: &[u8], l: usize, acc: &mut [f32]) {
        let acc_stride = self.max_stride();
        let stride = padded(self.sizes[l]);
        let mut sources: [(&Table, usize); 2] = [(&self.empty, 0), (&self.empty, 0)];
        let mut n_sources = 0;
        if l > 0 {
            sources[n_sources] = (&self.up[l - 1], self.offsets[l - 1]);
            n_sources += 1;
        }
        if l + 1 < self.sizes.len() {
            sources[n_sources] = (&self.down[l], self.offsets[l + 1]);
            n_sources += 1;
        }
        let sources = &sources[..n_sources];
        for (row, a) in rows
            .chunks_exact(self.row_bytes)
            .zip(acc.chunks_exact_mut(acc_stride))
        {
            let mut col = 0;
            while col < stride {
                let vectors = (stride - col) / 8;
                match vectors {
                    1 => accumulate::<1>(a, sources, row, col),
                    2 => accumulate::<2>(a, sources, row, col),
                    3 => accumulate::<3>(a, sources, row, col),
                    4 => accumulate::<4>(a, sources, row, col),
                    5 => accumulate::<5>(a, sources, row, col),
                    6 => accumulate::<6>(a, sources, row, col),
                    7 => accumulate::<7>(a, sources, row, col),
                    _ => accumulate::<8>(a, sources, row, col),
                }
                col += 8 * vectors.min(8);
            }
        }
    }

    /// Sample layer `l` of every particle from `σ(beta · acc + bias)`; with `clamp` = (mask,
    /// original visible bytes of the chunk), masked units keep their original values.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sample_from(
        &self,
        rows: &mut [u8],
        l: usize,
        acc: &[f32],
        beta: f32,
        bias: &[f32],
        uniforms: &mut FastUniform,
        clamp: Option<(&[u8], &[u8])>,
    ) {
        let layer = LayerView {
            n: self.sizes[l],
            offset: self.offsets[l],
            nbytes: self.nbytes[l],
            row_bytes: self.row_bytes,
            acc_stride: self.max_stride(),
        };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { avx2::sample_rows(&layer, rows, acc, beta, bias, uniforms, clamp) };
            return;
        }
        sample_rows(&layer, rows, acc, beta, bias, uniforms, clamp);
    }

    /// Compute the inputs of layer `l` (skipped at `beta == 0`) and sample it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &self,
        rows: &mut [u8],
        l: usize,
        beta: f32,
        bias: &[f32],
        acc: &mut [f32],
        uniforms: &mut FastUniform,
        clamp: Option<(&[u8], &[u8])>,
    ) {
        if beta == 0.0 {
            acc.fill(0.0);
        } else {
            self.inputs(rows, l, acc);
        }
        self.sample_from(rows, l, acc, beta, bias, uniforms, clamp);
    }

    /// One sweep: the layers of parity `first_parity` given the others, then the others.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sweep(
        &self,
        rows: &mut [u8],
        first_parity: usize,
        beta: f32,
        biases: &[Vec<f32>],
        acc: &mut [f32],
        uniforms: &mut FastUniform,
        clamp: Option<(&[u8], &[u8])>,
    ) {
        for parity in [first_parity, 1 - first_parity] {
            let mut l = parity;
            while l < self.sizes.len() {
                let c = if l == 0 { clamp } else { None };
                self.update(rows, l, beta, &biases[l], acc, uniforms, c);
                l += 2;
            }
        }
    }

    /// One synchronous sweep: every layer sampled given `previous`, the state before the sweep
    /// (a copy of `rows`).
    #[inline(always)]
    pub(crate) fn synchronous_sweep(
        &self,
        rows: &mut [u8],
        previous: &mut Vec<u8>,
        biases: &[Vec<f32>],
        acc: &mut [f32],
        uniforms: &mut FastUniform,
        clamp: Option<(&[u8], &[u8])>,
    ) {
        previous.clear();
        previous.extend_from_slice(rows);
        for (l, bias) in biases.iter().enumerate().take(self.sizes.len()) {
            let c = if l == 0 { clamp } else { None };
            self.inputs(previous, l, acc);
            self.sample_from(rows, l, acc, 1.0, bias, uniforms, c);
        }
    }

    /// Bernoulli(1/2) states for every unit (`initparticles`).
    pub(crate) fn random_row(&self, row: &mut [u8], uniforms: &mut FastUniform) {
        for l in 0..self.sizes.len() {
            let n = self.sizes[l];
            for g in 0..self.nbytes[l] {
                let mut byte = (uniforms.next8()[0] >> 24) as u8;
                let valid = n - g * 8;
                if valid < 8 {
                    byte &= (1u8 << valid) - 1;
                }
                row[self.offsets[l] + g] = byte;
            }
        }
    }
}

/// Where a layer lies in the packed particles and in the inputs.
struct LayerView {
    n: usize,
    offset: usize,
    nbytes: usize,
    row_bytes: usize,
    acc_stride: usize,
}

impl LayerView {
    /// Write the layer's bytes of every particle of `rows`: `draw(inputs of the particle, g)`
    /// gives the sampled byte of group `g` (units `8g .. 8g + 8`), whose padding bits are then
    /// cleared and, with `clamp` = (mask, original visible bytes), whose masked units are reset to
    /// their original values. Groups are drawn particle by particle, in order.
    #[inline(always)]
    fn fill(
        &self,
        rows: &mut [u8],
        acc: &[f32],
        clamp: Option<(&[u8], &[u8])>,
        mut draw: impl FnMut(&[f32], usize) -> u8,
    ) {
        for (p, (row, a)) in rows
            .chunks_exact_mut(self.row_bytes)
            .zip(acc.chunks_exact(self.acc_stride))
            .enumerate()
        {
            for g in 0..self.nbytes {
                let mut byte = draw(a, g);
                let valid = self.n - g * 8;
                if valid < 8 {
                    byte &= (1u8 << valid) - 1;
                }
                if let Some((mask, originals)) = clamp {
                    let original = originals[p * self.nbytes + g];
                    byte = (byte & !mask[g]) | (original & mask[g]);
                }
                row[self.offset + g] = byte;
            }
        }
    }
}

/// The portable [`Sampler::sample_from`].
#[inline(always)]
fn sample_rows(
    layer: &LayerView,
    rows: &mut [u8],
    acc: &[f32],
    beta: f32,
    bias: &[f32],
    uniforms: &mut FastUniform,
    clamp: Option<(&[u8], &[u8])>,
) {
    layer.fill(rows, acc, clamp, |a, g| {
        let u = uniforms.next8_f32();
        let x = &a[g * 8..g * 8 + 8];
        let b = &bias[g * 8..g * 8 + 8];
        let mut byte = 0u8;
        for k in 0..8 {
            let e = exp_f32(-(beta * x[k] + b[k]));
            // u < σ(z) ⇔ u (1 + e^{-z}) < 1
            byte |= ((u[k] * (1.0 + e) < 1.0) as u8) << k;
        }
        byte
    });
}

/// [`Sampler::sample_from`] with eight units per AVX2 operation: the same uniforms, the same
/// floating-point operations in the same order as [`exp_f32`] and the portable loop (so the
/// same states), and the byte of a group taken by one `movemask`.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::rng::{avx2::Lanes, FastUniform};
    use super::LayerView;

    /// [`super::exp_f32`] of eight values.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let magic = _mm256_set1_ps(12_582_912.0);
        let shifted = _mm256_add_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            magic,
        );
        let n = _mm256_sub_ps(shifted, magic);
        let exponent =
            _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B40_0000));
        let r = _mm256_sub_ps(
            _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693_359_4))),
            _mm256_mul_ps(n, _mm256_set1_ps(-2.121_944_4e-4)),
        );
        let mut p = _mm256_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            5e-1,
        ] {
            p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(c));
        }
        let one = _mm256_set1_ps(1.0);
        let y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(p, r), r), r), one);
        let scale = _mm256_slli_epi32(_mm256_add_epi32(exponent, _mm256_set1_epi32(127)), 23);
        _mm256_mul_ps(y, _mm256_castsi256_ps(scale))
    }

    /// # Safety
    /// The CPU must support AVX2; `acc` holds `acc_stride` inputs per particle of `rows` and
    /// `bias` is padded to a multiple of 8 (as in [`super::Sampler::sample_from`]).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sample_rows(
        layer: &LayerView,
        rows: &mut [u8],
        acc: &[f32],
        beta: f32,
        bias: &[f32],
        uniforms: &mut FastUniform,
        clamp: Option<(&[u8], &[u8])>,
    ) {
        let mut lanes = Lanes::load(uniforms);
        let beta8 = _mm256_set1_ps(beta);
        let one = _mm256_set1_ps(1.0);
        let minus_zero = _mm256_set1_ps(-0.0);
        layer.fill(rows, acc, clamp, |a, g| {
            let u = lanes.next8_f32();
            let x = _mm256_loadu_ps(a[g * 8..g * 8 + 8].as_ptr());
            let b = _mm256_loadu_ps(bias[g * 8..g * 8 + 8].as_ptr());
            let z = _mm256_add_ps(_mm256_mul_ps(beta8, x), b);
            let e = exp8(_mm256_xor_ps(z, minus_zero));
            // u < σ(z) ⇔ u (1 + e^{-z}) < 1
            let below = _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_mul_ps(u, _mm256_add_ps(one, e)), one);
            _mm256_movemask_ps(below) as u8
        });
        lanes.store(uniforms);
    }
}

/// Biases as float32, padded with zeros to a multiple of 8.
pub(crate) fn padded_biases(biases: &[Vec<f64>]) -> Vec<Vec<f32>> {
    biases
        .iter()
        .map(|b| {
            let mut out = vec![0f32; padded(b.len())];
            for (o, v) in out.iter_mut().zip(b) {
                *o = *v as f32;
            }
            out
        })
        .collect()
}

/// `exp(x)` for float32 (Cephes polynomial, relative error < 2e-7; x clamped to [-87, 88]).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5·2^23 trick (plain adds: vectorises without SSE4.1).
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * LOG2E + MAGIC;
    let n = shifted - MAGIC;
    let exponent = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits((exponent.wrapping_add(127) as u32) << 23);
    y * scale
}

/// Packed particles of a chain of layers (`n × row_bytes`).
#[derive(Clone, Debug, PartialEq)]
pub struct Particles {
    pub sizes: Vec<usize>,
    pub n: usize,
    pub data: Vec<u8>,
}

impl Particles {
    pub fn row_bytes(sizes: &[usize]) -> usize {
        sizes.iter().map(|n| n.div_ceil(8)).sum()
    }

    /// Random Bernoulli(1/2) particles (`initparticles(dbm, n)`), stream `(seed, purpose, a)`.
    pub(crate) fn random(sampler: &Sampler, n: usize, seed: u64, purpose: Purpose, a: u64) -> Self {
        let mut data = vec![0u8; n * sampler.row_bytes];
        let row_bytes = sampler.row_bytes;
        if row_bytes > 0 {
            data.par_chunks_mut(CHUNK * row_bytes)
                .enumerate()
                .for_each(|(c, rows)| {
                    let mut rng = stream(seed, purpose, a, c as u64);
                    let mut uniforms = FastUniform::from_rng(&mut rng);
                    for row in rows.chunks_mut(row_bytes) {
                        sampler.random_row(row, &mut uniforms);
                    }
                });
        }
        Self {
            sizes: sampler.sizes.clone(),
            n,
            data,
        }
    }

    /// Pack dense 0/1 layers (`layers[l]` is `n × sizes[l]`, row-major).
    pub fn pack(sizes: &[usize], layers: &[&[u8]]) -> CoreResult<Self> {
        if layers.len() != sizes.len() {
            return Err(CoreError::shape(format!(
                "{} particle layers for a model with {} layers",
                layers.len(),
                sizes.len()
            )));
        }
        let n = layers[0].len().checked_div(sizes[0]).unwrap_or(0);
        let row_bytes = Self::row_bytes(sizes);
        let mut data = vec![0u8; n * row_bytes];
        let mut offset = 0;
        for (l, (&size, layer)) in sizes.iter().zip(layers).enumerate() {
            if layer.len() != n * size {
                return Err(CoreError::shape(format!(
                    "particle layer {l} has {} values, expected {n} × {size}",
                    layer.len()
                )));
            }
            for p in 0..n {
                for (j, &v) in layer[p * size..(p + 1) * size].iter().enumerate() {
                    if v > 1 {
                        return Err(CoreError::invalid(format!(
                            "particle layer {l} must hold 0/1 values; found {v} at row {p}, \
                             column {j}"
                        )));
                    }
                    data[p * row_bytes + offset + j / 8] |= v << (j % 8);
                }
            }
            offset += size.div_ceil(8);
        }
        Ok(Self {
            sizes: sizes.to_vec(),
            n,
            data,
        })
    }

    /// Dense 0/1 layer `l` (`n × sizes[l]`).
    pub fn unpack(&self, l: usize) -> Vec<u8> {
        let size = self.sizes[l];
        let row_bytes = Self::row_bytes(&self.sizes);
        let offset: usize = self.sizes[..l].iter().map(|s| s.div_ceil(8)).sum();
        let mut out = vec![0u8; self.n * size];
        for p in 0..self.n {
            let bytes = &self.data[p * row_bytes + offset..];
            for j in 0..size {
                out[p * size + j] = (bytes[j / 8] >> (j % 8)) & 1;
            }
        }
        out
    }

    /// Dense float64 layer `l`.
    pub fn unpack_f64(&self, l: usize) -> Vec<f64> {
        self.unpack(l).into_iter().map(f64::from).collect()
    }
}

/// Run `n_sweeps` blocked Gibbs sweeps (odd layers first) on `particles` in `dbm`; with
/// `clamp_mask` (one flag per visible unit), the flagged visible units keep their initial values.
pub fn gibbs_sample(
    dbm: &Dbm,
    particles: &mut Particles,
    n_sweeps: usize,
    seed: u64,
    clamp_mask: Option<&[bool]>,
) -> CoreResult<()> {
    let sampler = Sampler::from_dbm(dbm);
    run_sweeps(
        &sampler,
        &dbm.combined_biases(),
        particles,
        n_sweeps,
        seed,
        Purpose::Sample,
        0,
        clamp_mask,
        Schedule::Blocked,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_sweeps(
    sampler: &Sampler,
    biases: &[Vec<f64>],
    particles: &mut Particles,
    n_sweeps: usize,
    seed: u64,
    purpose: Purpose,
    a: u64,
    clamp_mask: Option<&[bool]>,
    schedule: Schedule,
) -> CoreResult<()> {
    if particles.sizes != sampler.sizes {
        return Err(CoreError::shape(format!(
            "particles have layer sizes {:?} but the model has {:?}",
            particles.sizes, sampler.sizes
        )));
    }
    let mask_bytes: Option<Vec<u8>> = match clamp_mask {
        Some(mask) => {
            if mask.len() != sampler.sizes[0] {
                return Err(CoreError::shape(format!(
                    "clamp mask has {} entries but the model has {} visible units",
                    mask.len(),
                    sampler.sizes[0]
                )));
            }
            let mut bytes = vec![0u8; sampler.sizes[0].div_ceil(8)];
            for (j, &m) in mask.iter().enumerate() {
                if m {
                    bytes[j / 8] |= 1 << (j % 8);
                }
            }
            Some(bytes)
        }
        None => None,
    };
    let biases = padded_biases(biases);
    let row_bytes = sampler.row_bytes;
    if row_bytes == 0 || particles.n == 0 {
        return Ok(());
    }
    let ctx = SweepJob {
        sampler,
        biases: &biases,
        n_sweeps,
        seed,
        purpose,
        a,
        mask: mask_bytes.as_deref(),
        schedule,
    };
    particles
        .data
        .par_chunks_mut(CHUNK * row_bytes)
        .enumerate()
        .for_each(|(c, rows)| sweep_chunk(&ctx, c, rows));
    Ok(())
}

/// What `run_sweeps` does on every chunk.
pub(crate) struct SweepJob<'a> {
    sampler: &'a Sampler,
    biases: &'a [Vec<f32>],
    n_sweeps: usize,
    seed: u64,
    purpose: Purpose,
    a: u64,
    mask: Option<&'a [u8]>,
    schedule: Schedule,
}

#[inline(always)]
fn sweep_chunk_kernel(job: &SweepJob<'_>, c: usize, rows: &mut [u8]) {
    let sampler = job.sampler;
    let row_bytes = sampler.row_bytes;
    let visible_bytes = sampler.sizes[0].div_ceil(8);
    let mut rng = stream(job.seed, job.purpose, job.a, c as u64);
    let mut uniforms = FastUniform::from_rng(&mut rng);
    let mut acc = vec![0f32; CHUNK * sampler.max_stride()];
    let originals: Vec<u8> = rows
        .chunks_exact(row_bytes)
        .flat_map(|row| row[..visible_bytes].iter().copied())
        .collect();
    let clamp = job.mask.map(|m| (m, originals.as_slice()));
    let mut previous = Vec::new();
    for _ in 0..job.n_sweeps {
        match job.schedule {
            Schedule::Blocked => {
                sampler.sweep(rows, 1, 1.0, job.biases, &mut acc, &mut uniforms, clamp)
            }
            Schedule::Synchronous => sampler.synchronous_sweep(
                rows,
                &mut previous,
                job.biases,
                &mut acc,
                &mut uniforms,
                clamp,
            ),
        }
    }
}

simd_dispatch!(fn sweep_chunk(job: &SweepJob<'_>, c: usize, rows: &mut [u8]) => sweep_chunk_kernel);

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::rng::{stream, uniform, FastUniform, Purpose};
    use super::*;

    #[test]
    fn the_avx2_sampler_draws_the_states_of_the_portable_one() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: no AVX2 on this CPU");
            return;
        }
        let particles = 37;
        for (n, other) in [(13usize, 5usize), (8, 3), (200, 20)] {
            let sizes = [n, other];
            let row_bytes = Particles::row_bytes(&sizes);
            let acc_stride = padded(n.max(other));
            let layer = LayerView {
                n,
                offset: 0,
                nbytes: n.div_ceil(8),
                row_bytes,
                acc_stride,
            };
            let mut rng = stream(7, Purpose::Sample, n as u64, 0);
            // inputs across the whole range, including ones the exponential clamps
            let acc: Vec<f32> = (0..particles * acc_stride)
                .map(|i| match i % 17 {
                    0 => 120.0,
                    1 => -120.0,
                    _ => (uniform(&mut rng) * 24.0 - 12.0) as f32,
                })
                .collect();
            let bias: Vec<f32> = (0..padded(n))
                .map(|_| (uniform(&mut rng) - 0.5) as f32)
                .collect();
            let mask: Vec<u8> = (0..layer.nbytes)
                .map(|g| 0b1010_0101u8.rotate_left(g as u32))
                .collect();
            let originals: Vec<u8> = (0..particles * layer.nbytes)
                .map(|i| (i * 37 % 256) as u8)
                .collect();
            for beta in [1.0f32, 0.37, 0.0] {
                for clamp in [None, Some((mask.as_slice(), originals.as_slice()))] {
                    let mut portable = FastUniform::from_rng(&mut stream(3, Purpose::Sample, 0, 1));
                    let mut simd = portable.clone();
                    let mut expected = vec![0xFFu8; particles * row_bytes];
                    let mut got = expected.clone();
                    sample_rows(
                        &layer,
                        &mut expected,
                        &acc,
                        beta,
                        &bias,
                        &mut portable,
                        clamp,
                    );
                    // SAFETY: the CPU supports AVX2 (checked above).
                    unsafe {
                        avx2::sample_rows(&layer, &mut got, &acc, beta, &bias, &mut simd, clamp)
                    };
                    assert_eq!(got, expected, "n = {n}, beta = {beta}");
                    // the random streams continue at the same place
                    assert_eq!(simd.next8(), portable.next8());
                    let ones: u32 = expected
                        .chunks_exact(row_bytes)
                        .map(|row| {
                            row[..layer.nbytes]
                                .iter()
                                .map(|b| b.count_ones())
                                .sum::<u32>()
                        })
                        .sum();
                    assert!(
                        ones > 0 && (ones as usize) < particles * n,
                        "n = {n}: {ones} ones"
                    );
                    // the other layer's bytes are untouched
                    assert!(expected
                        .chunks_exact(row_bytes)
                        .all(|row| row[layer.nbytes..].iter().all(|&b| b == 0xFF)));
                }
            }
        }
    }
}
