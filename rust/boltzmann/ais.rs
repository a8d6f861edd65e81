//! Partition functions and likelihoods: annealed importance sampling (AIS), exact enumeration
//! for tiny models, the mean-field lower bound and the reconstruction error.
//!
//! AIS follows BoltzmannMachines.jl `aislogimpweights` (Salakhutdinov & Hinton 2012, algorithm
//! 4): the base model has zero weights and the model's biases; particles start as exact samples
//! of the base model; at temperature `β_k` the log weight grows by `log p*_k − log p*_{k−1}` of
//! the states of the kept layers, with the alternate layers summed out analytically; then
//! `burn_in` Gibbs sweeps at `β_k` (summed-out layers sampled first). RBMs (two layers) sum out
//! the visible layer, deeper models the odd layers (h1, h3, …).
//!
//! Two departures from the Julia package, so that each transition leaves its intermediate
//! distribution invariant: the sweeps are blocked (Julia's `gibbssample!` updates all layers at
//! once), and the base model's bias of a layer between two weight matrices is the sum of both
//! RBMs' biases, from which the chains start exactly (Julia: `initparticles(...; biased = true)`,
//! one RBM's bias).

use rayon::prelude::*;

use super::dbm::mean_field;
use super::dense::{affine_down, dot, sigmoid, softplus, Mat};
use super::gibbs::{padded_biases, Sampler, CHUNK};
use super::rng::{stream, FastUniform, Purpose};
use super::simd::simd_dispatch;
use super::Dbm;
use crate::error::{CoreError, CoreResult};

/// Largest number of units enumerated by the exact computations.
pub const MAX_EXACT_UNITS: usize = 28;

/// Result of AIS: `log_z = log_z0 + log mean exp(log_weights)`.
#[derive(Clone, Debug)]
pub struct AisEstimate {
    pub log_z: f64,
    pub log_z0: f64,
    pub log_weights: Vec<f64>,
}

/// `0, 1/n, …, 1` (`collect(0:(1/ntemperatures):1)`).
pub fn default_temperatures(n_temperatures: usize) -> Vec<f64> {
    let n = n_temperatures.max(1);
    (0..=n).map(|k| k as f64 / n as f64).collect()
}

fn check_temperatures(temperatures: &[f64]) -> CoreResult<()> {
    if temperatures.len() < 2 {
        return Err(CoreError::invalid(
            "AIS needs at least two temperatures (from 0 to 1)",
        ));
    }
    if temperatures[0] != 0.0 || temperatures[temperatures.len() - 1] != 1.0 {
        return Err(CoreError::invalid(format!(
            "AIS temperatures must start at 0 and end at 1, got {} … {}",
            temperatures[0],
            temperatures[temperatures.len() - 1]
        )));
    }
    if let Some(k) = temperatures
        .windows(2)
        .position(|w| w[1] < w[0] || !w[1].is_finite() || w[0].is_nan())
    {
        return Err(CoreError::invalid(format!(
            "AIS temperatures must be non-decreasing; position {} breaks it",
            k + 1
        )));
    }
    Ok(())
}

/// `log Σ exp(v) − log n`.
pub fn log_mean_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
    max + sum.ln() - (values.len() as f64).ln()
}

/// `Σ_l Σ_j log(1 + exp(b_lj))`: log Z of the model with zero weights.
pub fn log_partition_zero_weights(biases: &[Vec<f64>]) -> f64 {
    biases.iter().flatten().map(|&b| softplus(b)).sum()
}

/// AIS log importance weights of a chain of layers (tables in `sampler`, `biases` per layer),
/// summing out the layers of parity `sum_out`.
#[allow(clippy::too_many_arguments)]
fn ais_log_weights(
    sampler: &Sampler,
    biases: &[Vec<f64>],
    sum_out: usize,
    temperatures: &[f64],
    n_particles: usize,
    burn_in: usize,
    seed: u64,
    purpose: Purpose,
    a: u64,
) -> Vec<f64> {
    let biases32 = padded_biases(biases);
    let job = AisJob {
        sampler,
        biases,
        biases32: &biases32,
        sum_out,
        temperatures,
        n_particles,
        burn_in,
        seed,
        purpose,
        a,
    };
    let chunks: Vec<Vec<f64>> = (0..n_particles.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| ais_chunk(&job, c))
        .collect();
    chunks.into_iter().flatten().collect()
}

struct AisJob<'a> {
    sampler: &'a Sampler,
    biases: &'a [Vec<f64>],
    biases32: &'a [Vec<f32>],
    sum_out: usize,
    temperatures: &'a [f64],
    n_particles: usize,
    burn_in: usize,
    seed: u64,
    purpose: Purpose,
    a: u64,
}

/// AIS on particle chunk `c`: its log importance weights.
#[inline(always)]
fn ais_chunk_kernel(job: &AisJob<'_>, c: usize) -> Vec<f64> {
    let sampler = job.sampler;
    let row_bytes = sampler.row_bytes;
    let stride = sampler.max_stride();
    let n_layers = sampler.n_layers();
    let count = CHUNK.min(job.n_particles - c * CHUNK);
    let mut rng = stream(job.seed, job.purpose, job.a, c as u64);
    let mut uniforms = FastUniform::from_rng(&mut rng);
    let mut acc = vec![0f32; CHUNK * stride];
    let mut rows = vec![0u8; count * row_bytes];
    let mut log_w = vec![0f64; count];
    // Exact samples of the base model (zero weights): every unit ~ Bernoulli(σ(b)).
    for (l, bias) in job.biases32.iter().enumerate() {
        sampler.update(&mut rows, l, 0.0, bias, &mut acc, &mut uniforms, None);
    }
    for k in 1..job.temperatures.len() {
        let (b_prev, b_cur) = (job.temperatures[k - 1], job.temperatures[k]);
        let mut l = job.sum_out;
        while l < n_layers {
            sampler.inputs(&rows, l, &mut acc);
            for (w, a) in log_w.iter_mut().zip(acc.chunks_exact(stride)) {
                for (&x, &bias) in a.iter().zip(&job.biases[l]) {
                    let x = x as f64;
                    *w += softplus(b_cur * x + bias) - softplus(b_prev * x + bias);
                }
            }
            l += 2;
        }
        for _ in 0..job.burn_in {
            sampler.sweep(
                &mut rows,
                job.sum_out,
                b_cur as f32,
                job.biases32,
                &mut acc,
                &mut uniforms,
                None,
            );
        }
    }
    log_w
}

simd_dispatch!(fn ais_chunk(job: &AisJob<'_>, c: usize) -> Vec<f64> => ais_chunk_kernel);

fn default_sum_out(n_layers: usize) -> usize {
    if n_layers == 2 {
        0
    } else {
        1
    }
}

/// Estimate log Z of `dbm` by AIS.
pub fn log_partition_ais(
    dbm: &Dbm,
    temperatures: &[f64],
    n_particles: usize,
    burn_in: usize,
    seed: u64,
) -> CoreResult<AisEstimate> {
    check_temperatures(temperatures)?;
    if n_particles == 0 {
        return Err(CoreError::invalid("AIS needs at least one particle"));
    }
    let sampler = Sampler::from_dbm(dbm);
    let biases = dbm.combined_biases();
    let log_weights = ais_log_weights(
        &sampler,
        &biases,
        default_sum_out(sampler.n_layers()),
        temperatures,
        n_particles,
        burn_in,
        seed,
        Purpose::Ais,
        0,
    );
    let log_z0 = log_partition_zero_weights(&biases);
    Ok(AisEstimate {
        log_z: log_z0 + log_mean_exp(&log_weights),
        log_z0,
        log_weights,
    })
}

/// Bias of h1 in the model of the hidden layers given `v`: `b_h1 + W_1ᵀ v` (+ visible bias of
/// the second RBM, i.e. the combined bias).
fn hidden_biases_given(dbm: &Dbm, combined: &[Vec<f64>], v: &[f64]) -> Vec<Vec<f64>> {
    let rbm = &dbm.layers[0];
    let mut b1 = combined[1].clone();
    for (i, &vi) in v.iter().enumerate() {
        if vi != 0.0 {
            let row = &rbm.weights[i * rbm.n_hidden..(i + 1) * rbm.n_hidden];
            for (b, w) in b1.iter_mut().zip(row) {
                *b += vi * w;
            }
        }
    }
    let mut out = vec![b1];
    out.extend(combined[2..].iter().cloned());
    out
}

/// Per-sample log p(v) by AIS (`loglikelihood(dbm, x)`): the unnormalised log probability of
/// every sample is `aᵀv + log Z` of the model of the hidden layers with h1's bias shifted by
/// `W_1ᵀ v`, estimated by its own AIS run (exact for an RBM); `log_z` is subtracted.
#[allow(clippy::too_many_arguments)]
pub fn log_likelihood_ais(
    dbm: &Dbm,
    x: &Mat,
    log_z: f64,
    temperatures: &[f64],
    n_particles: usize,
    burn_in: usize,
    seed: u64,
) -> CoreResult<Vec<f64>> {
    check_temperatures(temperatures)?;
    if n_particles == 0 {
        return Err(CoreError::invalid("AIS needs at least one particle"));
    }
    let combined = dbm.combined_biases();
    let sizes = dbm.sizes();
    if dbm.layers.len() == 1 {
        return Ok((0..x.rows)
            .map(|r| rbm_log_unnormalized(dbm, &combined, x.row(r)) - log_z)
            .collect());
    }
    let weights: Vec<&[f64]> = dbm.layers[1..]
        .iter()
        .map(|l| l.weights.as_slice())
        .collect();
    let hidden = Sampler::new(&sizes[1..], &weights);
    let sum_out = default_sum_out(hidden.n_layers());
    Ok((0..x.rows)
        .into_par_iter()
        .map(|r| {
            let v = x.row(r);
            let biases = hidden_biases_given(dbm, &combined, v);
            let log_w = ais_log_weights(
                &hidden,
                &biases,
                sum_out,
                temperatures,
                n_particles,
                burn_in,
                seed,
                Purpose::AisSample,
                r as u64,
            );
            dot(&combined[0], v) + log_partition_zero_weights(&biases) + log_mean_exp(&log_w)
                - log_z
        })
        .collect())
}

fn rbm_log_unnormalized(dbm: &Dbm, combined: &[Vec<f64>], v: &[f64]) -> f64 {
    let b = hidden_biases_given(dbm, combined, v);
    dot(&combined[0], v) + b[0].iter().map(|&x| softplus(x)).sum::<f64>()
}

/// log Z of a chain of layers by enumerating the layers of one parity (the one with fewer units)
/// and summing out the others; Gray-code order, parallel over the top bits.
fn log_partition_enumerate(
    sizes: &[usize],
    weights: &[&[f64]],
    biases: &[Vec<f64>],
) -> CoreResult<f64> {
    let n_layers = sizes.len();
    if n_layers == 1 {
        return Ok(biases[0].iter().map(|&b| softplus(b)).sum());
    }
    let units = |parity: usize| -> usize { sizes.iter().skip(parity).step_by(2).sum() };
    let parity = if units(0) <= units(1) { 0 } else { 1 };
    let m = units(parity);
    if m > MAX_EXACT_UNITS {
        return Err(CoreError::invalid(format!(
            "exact computation needs 2^{m} terms (more than 2^{MAX_EXACT_UNITS}); use AIS or a \
             smaller model"
        )));
    }
    // Enumerated units: (layer, index).
    let mut units_list = Vec::with_capacity(m);
    for l in (parity..n_layers).step_by(2) {
        for j in 0..sizes[l] {
            units_list.push((l, j));
        }
    }
    let summed: Vec<usize> = ((1 - parity)..n_layers).step_by(2).collect();
    let top_bits = m.min(10);
    let low_bits = m - top_bits;
    let parts: Vec<(f64, f64)> = (0..(1usize << top_bits))
        .into_par_iter()
        .map(|top| {
            // State: bits of the enumerated units; inputs of summed-out units.
            let mut state = vec![false; m];
            for b in 0..top_bits {
                state[low_bits + b] = (top >> b) & 1 == 1;
            }
            let mut linear = 0.0;
            let mut inputs: Vec<Vec<f64>> = (0..n_layers)
                .map(|l| {
                    if summed.contains(&l) {
                        biases[l].clone()
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let flip = |u: usize, on: bool, linear: &mut f64, inputs: &mut Vec<Vec<f64>>| {
                let (l, j) = units_list[u];
                let sign = if on { 1.0 } else { -1.0 };
                *linear += sign * biases[l][j];
                if l + 1 < n_layers {
                    let n_up = sizes[l + 1];
                    let row = &weights[l][j * n_up..(j + 1) * n_up];
                    for (x, w) in inputs[l + 1].iter_mut().zip(row) {
                        *x += sign * w;
                    }
                }
                if l > 0 {
                    let n_here = sizes[l];
                    let w = weights[l - 1];
                    for (i, x) in inputs[l - 1].iter_mut().enumerate() {
                        *x += sign * w[i * n_here + j];
                    }
                }
            };
            for (u, &on) in state.iter().enumerate() {
                if on {
                    flip(u, true, &mut linear, &mut inputs);
                }
            }
            let term = |linear: f64, inputs: &Vec<Vec<f64>>| -> f64 {
                linear
                    + summed
                        .iter()
                        .map(|&l| inputs[l].iter().map(|&x| softplus(x)).sum::<f64>())
                        .sum::<f64>()
            };
            let mut max = f64::NEG_INFINITY;
            let mut sum = 0.0;
            let add = |t: f64, max: &mut f64, sum: &mut f64| {
                if t > *max {
                    *sum = *sum * (*max - t).exp() + 1.0;
                    *max = t;
                } else {
                    *sum += (t - *max).exp();
                }
            };
            add(term(linear, &inputs), &mut max, &mut sum);
            for step in 1..(1usize << low_bits) {
                let u = step.trailing_zeros() as usize;
                state[u] = !state[u];
                flip(u, state[u], &mut linear, &mut inputs);
                add(term(linear, &inputs), &mut max, &mut sum);
            }
            (max, sum)
        })
        .collect();
    let max = parts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = parts.iter().map(|(m, s)| s * (m - max).exp()).sum();
    Ok(max + total.ln())
}

/// Exact log Z of `dbm` (enumeration; at most 2^28 terms).
pub fn log_partition_exact(dbm: &Dbm) -> CoreResult<f64> {
    let weights: Vec<&[f64]> = dbm.layers.iter().map(|l| l.weights.as_slice()).collect();
    log_partition_enumerate(&dbm.sizes(), &weights, &dbm.combined_biases())
}

/// Exact per-sample log p*(v) (unnormalised): `aᵀv + log Z` of the hidden-layer model given v.
pub fn log_unnormalized_exact(dbm: &Dbm, x: &Mat) -> CoreResult<Vec<f64>> {
    let combined = dbm.combined_biases();
    let sizes = dbm.sizes();
    let weights: Vec<&[f64]> = dbm.layers[1..]
        .iter()
        .map(|l| l.weights.as_slice())
        .collect();
    (0..x.rows)
        .into_par_iter()
        .map(|r| {
            let v = x.row(r);
            let biases = hidden_biases_given(dbm, &combined, v);
            Ok(dot(&combined[0], v) + log_partition_enumerate(&sizes[1..], &weights, &biases)?)
        })
        .collect()
}

/// Per-sample mean-field lower bound of log p(v) (`logproblowerbound`, Salakhutdinov 2015 eq.
/// 38): `−E(v, μ) + H(μ) − log Z` with the mean-field posterior μ.
pub fn log_prob_lower_bound(dbm: &Dbm, x: &Mat, log_z: f64, eps: f64, max_iter: usize) -> Vec<f64> {
    let (mu, _) = mean_field(dbm, x, eps, max_iter);
    let combined = dbm.combined_biases();
    (0..x.rows)
        .map(|r| {
            let mut bound = dot(&combined[0], x.row(r));
            for (l, rbm) in dbm.layers.iter().enumerate() {
                let below = if l == 0 { x.row(r) } else { mu[l - 1].row(r) };
                let above = mu[l].row(r);
                bound += dot(&combined[l + 1], above);
                for (i, &b) in below.iter().enumerate() {
                    if b != 0.0 {
                        bound += b * dot(
                            &rbm.weights[i * rbm.n_hidden..(i + 1) * rbm.n_hidden],
                            above,
                        );
                    }
                }
                for &h in above {
                    if h > 0.0 && h < 1.0 {
                        bound -= h * h.ln() + (1.0 - h) * (1.0 - h).ln();
                    }
                }
            }
            bound - log_z
        })
        .collect()
}

/// Per-sample reconstruction error `Σ_j |v_j − p_j|`: for an RBM `p = σ(W σ(Wᵀv + b) + a)`
/// (`reconstructionerror`); for a DBM `p = σ(W_1 μ_1 + a)` with the mean-field posterior μ_1.
pub fn reconstruction_error(dbm: &Dbm, x: &Mat, eps: f64, max_iter: usize) -> Vec<f64> {
    let rbm = &dbm.layers[0];
    let h = if dbm.layers.len() == 1 {
        super::rbm::hidden_potential(rbm, x, 1.0)
    } else {
        mean_field(dbm, x, eps, max_iter).0.swap_remove(0)
    };
    let mut p = affine_down(&h, &rbm.weights, rbm.n_visible, &rbm.visible_bias, 1.0);
    p.data.iter_mut().for_each(|v| *v = sigmoid(*v));
    (0..x.rows)
        .map(|r| {
            x.row(r)
                .iter()
                .zip(p.row(r))
                .map(|(a, b)| (a - b).abs())
                .sum()
        })
        .collect()
}
