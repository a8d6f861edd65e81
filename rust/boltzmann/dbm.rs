//! DBM mean-field inference and fine-tuning (BoltzmannMachines.jl `meanfield`, `traindbm!`).

use super::dense::{affine_down, affine_up, sigmoid_inplace, Mat};
use super::gibbs::{run_sweeps, Particles, Sampler, Schedule};
use super::rng::{permutation, stream, Purpose};
use super::simd::simd_dispatch;
use super::{Dbm, EpochHook};
use crate::error::{CoreError, CoreResult};

/// Mean-field activations `μ_1 … μ_L` of the hidden layers for the rows of `x`, and the number of
/// fixed-point iterations.
///
/// Initialisation by one bottom-up pass with doubled input for all but the top layer
/// (Salakhutdinov & Hinton 2012, p. 1985); then layers are updated in turn (each uses the newest
/// values below it) until the largest change over all samples and units is ≤ `eps`, or
/// `max_iter` iterations.
#[inline(always)]
fn mean_field_kernel(dbm: &Dbm, x: &Mat, eps: f64, max_iter: usize) -> (Vec<Mat>, usize) {
    let n = dbm.layers.len();
    let mut mu: Vec<Mat> = Vec::with_capacity(n);
    for l in 0..n {
        let below = if l == 0 { x } else { &mu[l - 1] };
        let factor = if l + 1 < n { 2.0 } else { 1.0 };
        let rbm = &dbm.layers[l];
        let mut m = affine_up(below, &rbm.weights, rbm.n_hidden, &rbm.hidden_bias, factor);
        sigmoid_inplace(&mut m);
        mu.push(m);
    }
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        let mut delta: f64 = 0.0;
        for l in 0..n {
            let rbm = &dbm.layers[l];
            let below = if l == 0 { x } else { &mu[l - 1] };
            let mut new = affine_up(below, &rbm.weights, rbm.n_hidden, &rbm.hidden_bias, 1.0);
            if l + 1 < n {
                let above = &dbm.layers[l + 1];
                let top = affine_down(
                    &mu[l + 1],
                    &above.weights,
                    above.n_visible,
                    &above.visible_bias,
                    1.0,
                );
                for (a, b) in new.data.iter_mut().zip(&top.data) {
                    *a += b;
                }
            }
            sigmoid_inplace(&mut new);
            for (a, b) in new.data.iter().zip(&mu[l].data) {
                delta = delta.max((a - b).abs());
            }
            mu[l] = new;
        }
        if delta <= eps {
            break;
        }
    }
    (mu, iterations)
}

simd_dispatch!(
    /// Mean-field activations (see `mean_field_kernel`).
    pub fn mean_field(dbm: &Dbm, x: &Mat, eps: f64, max_iter: usize) -> (Vec<Mat>, usize) => mean_field_kernel);

/// Settings of DBM fine-tuning (`traindbm!`).
#[derive(Clone, Debug)]
pub struct FineTuning {
    /// One learning rate per epoch (BoltzmannMachines.jl default `lr · 11 / (10 + epoch)`).
    pub learning_rates: Vec<f64>,
    pub n_particles: usize,
    /// Gibbs sweeps of the persistent particles per update (default 5).
    pub n_gibbs_sweeps: usize,
    /// Order of the layer updates in a sweep of the particles.
    pub schedule: Schedule,
    /// Samples per update; `None` = the whole data set per epoch (the default of `fitdbm`).
    pub batch_size: Option<usize>,
    /// Mean-field tolerance (1e-3).
    pub eps: f64,
    pub max_iter: usize,
}

/// `lr · 11 / (10 + epoch)` for epochs 1..=`epochs` (`defaultfinetuninglearningrates`).
pub fn decaying_learning_rates(learning_rate: f64, epochs: usize) -> Vec<f64> {
    (1..=epochs)
        .map(|e| learning_rate * 11.0 / (10.0 + e as f64))
        .collect()
}

/// Fine-tune `dbm` on binary `x`: per update, `n_gibbs_sweeps` Gibbs sweeps of the persistent
/// particles (negative phase), mean field on the batch (positive phase), and a gradient step on
/// every RBM of the stack. `hook(epoch, dbm)` runs after every epoch.
pub fn fine_tune(
    dbm: &mut Dbm,
    x: &Mat,
    cfg: &FineTuning,
    seed: u64,
    mut hook: Option<EpochHook<'_, Dbm>>,
) -> CoreResult<()> {
    if cfg.n_particles == 0 {
        return Err(CoreError::invalid("n_particles must be at least 1"));
    }
    if let Some(lr) = cfg.learning_rates.iter().find(|v| !v.is_finite()) {
        return Err(CoreError::invalid(format!(
            "learning rates must be finite, got {lr}"
        )));
    }
    if !(cfg.eps > 0.0 && cfg.eps.is_finite()) {
        return Err(CoreError::invalid(format!(
            "mean-field tolerance must be positive, got {}",
            cfg.eps
        )));
    }
    let batch_size = match cfg.batch_size {
        Some(0) => return Err(CoreError::invalid("batch size must be at least 1")),
        Some(b) => b.min(x.rows),
        None => x.rows,
    };
    let sizes = dbm.sizes();
    let mut particles = Particles::random(
        &Sampler::from_dbm(dbm),
        cfg.n_particles,
        seed,
        Purpose::DbmParticles,
        0,
    );
    let mut update = 0u64;
    for (epoch, &learning_rate) in cfg.learning_rates.iter().enumerate() {
        let order: Vec<usize> = if batch_size >= x.rows {
            (0..x.rows).collect()
        } else {
            let mut rng = stream(seed, Purpose::FineTuneBatches, epoch as u64, 0);
            permutation(&mut rng, x.rows)
        };
        for batch in order.chunks(batch_size) {
            let sampler = Sampler::from_dbm(dbm);
            run_sweeps(
                &sampler,
                &dbm.combined_biases(),
                &mut particles,
                cfg.n_gibbs_sweeps,
                seed,
                Purpose::DbmUpdate,
                update,
                None,
                cfg.schedule,
            )?;
            update += 1;
            let xb = if batch.len() == x.rows {
                x.clone()
            } else {
                x.gather(batch)
            };
            let (mu, _) = mean_field(dbm, &xb, cfg.eps, cfg.max_iter);
            let gibbs: Vec<Mat> = (0..sizes.len())
                .map(|l| Mat::from_vec(particles.n, sizes[l], particles.unpack_f64(l)))
                .collect();
            for (i, rbm) in dbm.layers.iter_mut().enumerate() {
                let v = if i == 0 { &xb } else { &mu[i - 1] };
                super::rbm::update_parameters(
                    rbm,
                    learning_rate,
                    v,
                    &gibbs[i],
                    &mu[i],
                    &gibbs[i + 1],
                );
            }
        }
        if let Some(i) = dbm.layers.iter().position(|l| {
            l.weights
                .iter()
                .chain(&l.visible_bias)
                .chain(&l.hidden_bias)
                .any(|v| !v.is_finite())
        }) {
            return Err(CoreError::convergence(format!(
                "DBM fine-tuning diverged in epoch {} (non-finite parameters in layer {i}); lower \
                 the learning rate",
                epoch + 1
            )));
        }
        if let Some(hook) = hook.as_mut() {
            hook(epoch + 1, dbm)?;
        }
    }
    Ok(())
}
