//! Blocked Gibbs sampling on bit-packed binary states.
//!
//! A particle stores every layer as bits (8 units per byte). The input of a unit is the sum of
//! the weights of the active units of the neighbouring layers; it is computed with subset-sum
//! tables: for each group of 8 units of a layer and each of the 256 states of the group, the table
//! holds the sum of their weight rows, so one byte of state costs one vector addition instead of
//! eight multiply-adds (exact sums, float32 accumulation). A sweep samples the odd layers given the
//! even ones, then the even layers given the new odd ones (or the reverse, `first_parity`).
//!
//! Particles are processed in fixed chunks of `CHUNK` with one random stream per chunk, so the
//! result depends on the seed only, not on the number of threads.

use rayon::prelude::*;

use super::rng::{stream, FastUniform, Purpose};
use super::Dbm;
use crate::error::{CoreError, CoreResult};

/// Particles per random stream and per rayon task.
pub(crate) const CHUNK: usize = 64;

/// Subset-sum table of one weight matrix in one direction (`n_in` inputs → `n_out` outputs).
pub(crate) struct Table {
    n_groups: usize,
    stride: usize,
    data: Vec<f32>,
}

impl Table {
    /// `get(i, j)` is the weight from input unit `i` to output unit `j`.
    pub(crate) fn build(
        n_in: usize,
        n_out: usize,
        get: impl Fn(usize, usize) -> f64 + Sync,
    ) -> Self {
        let n_groups = n_in.div_ceil(8);
        let stride = padded(n_out);
        let mut data = vec![0f32; n_groups * 256 * stride];
        data.par_chunks_mut(256 * stride)
            .enumerate()
            .for_each(|(g, block)| {
                for byte in 1..256usize {
                    let low = byte.trailing_zeros() as usize;
                    let prev = byte & (byte - 1);
                    let unit = g * 8 + low;
                    let (before, rest) = block.split_at_mut(byte * stride);
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

    #[inline(always)]
    fn add_into(&self, acc: &mut [f32], bytes: &[u8]) {
        let stride = self.stride;
        for (g, &byte) in bytes.iter().enumerate().take(self.n_groups) {
            let offset = (g * 256 + byte as usize) * stride;
            let row = &self.data[offset..offset + stride];
            for (a, r) in acc.iter_mut().zip(row) {
                *a += r;
            }
        }
    }
}

#[inline]
pub(crate) fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
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

    #[inline]
    pub(crate) fn layer_bytes<'a>(&self, row: &'a [u8], l: usize) -> &'a [u8] {
        &row[self.offsets[l]..self.offsets[l] + self.nbytes[l]]
    }

    /// Raw input (weights only, no bias, temperature 1) of layer `l` of one particle.
    #[inline(always)]
    pub(crate) fn input(&self, row: &[u8], l: usize, acc: &mut [f32]) {
        let stride = padded(self.sizes[l]);
        let acc = &mut acc[..stride];
        acc.fill(0.0);
        if l > 0 {
            self.up[l - 1].add_into(acc, self.layer_bytes(row, l - 1));
        }
        if l + 1 < self.sizes.len() {
            self.down[l].add_into(acc, self.layer_bytes(row, l + 1));
        }
    }

    /// Sample layer `l` of one particle from `σ(beta · acc + bias)`; `clamp` = (mask, values)
    /// bytes keep masked units at their values.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn sample_layer(
        &self,
        row: &mut [u8],
        l: usize,
        acc: &[f32],
        beta: f32,
        bias: &[f32],
        uniforms: &mut FastUniform,
        clamp: Option<(&[u8], &[u8])>,
    ) {
        let n = self.sizes[l];
        let offset = self.offsets[l];
        for g in 0..self.nbytes[l] {
            let u = uniforms.next8_f32();
            let mut x = [0f32; 8];
            x.copy_from_slice(&acc[g * 8..g * 8 + 8]);
            let b = &bias[g * 8..g * 8 + 8];
            let mut e = [0f32; 8];
            for k in 0..8 {
                e[k] = exp_f32(-(beta * x[k] + b[k]));
            }
            let mut byte = 0u8;
            for k in 0..8 {
                // u < σ(z) ⇔ u (1 + e^{-z}) < 1
                byte |= ((u[k] * (1.0 + e[k]) < 1.0) as u8) << k;
            }
            let valid = n - g * 8;
            if valid < 8 {
                byte &= (1u8 << valid) - 1;
            }
            if let Some((mask, values)) = clamp {
                byte = (byte & !mask[g]) | (values[g] & mask[g]);
            }
            row[offset + g] = byte;
        }
    }

    /// Compute the input of layer `l` and sample it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update_layer(
        &self,
        row: &mut [u8],
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
            self.input(row, l, acc);
        }
        self.sample_layer(row, l, acc, beta, bias, uniforms, clamp);
    }

    /// One sweep over the layers of parity `first_parity`, then the others.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sweep(
        &self,
        row: &mut [u8],
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
                self.update_layer(row, l, beta, &biases[l], acc, uniforms, c);
                l += 2;
            }
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
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
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
    let stride = sampler.max_stride();
    let visible_bytes = sampler.sizes[0].div_ceil(8);
    if row_bytes == 0 || particles.n == 0 {
        return Ok(());
    }
    dispatch_chunks(&mut particles.data, CHUNK * row_bytes, |c, rows| {
        let mut rng = stream(seed, purpose, a, c as u64);
        let mut uniforms = FastUniform::from_rng(&mut rng);
        let mut acc = vec![0f32; stride];
        let mut original = vec![0u8; visible_bytes];
        for row in rows.chunks_mut(row_bytes) {
            original.copy_from_slice(&row[..visible_bytes]);
            let clamp = mask_bytes.as_deref().map(|m| (m, original.as_slice()));
            for _ in 0..n_sweeps {
                sampler.sweep(row, 1, 1.0, &biases, &mut acc, &mut uniforms, clamp);
            }
        }
    });
    Ok(())
}

/// Run `work(chunk_index, chunk)` over fixed chunks in parallel, with the hot loops compiled for
/// AVX2 when the CPU has it.
pub(crate) fn dispatch_chunks<F>(data: &mut [u8], chunk: usize, work: F)
where
    F: Fn(usize, &mut [u8]) + Sync,
{
    data.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(c, rows)| with_simd(|| work(c, rows)));
}

/// Call `f` inside a function compiled with AVX2 (runtime-detected) so that the inlined kernels
/// vectorise with 256-bit lanes.
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { call_avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn call_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
