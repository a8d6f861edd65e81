//! RBM training: initialisation, (persistent) contrastive divergence and greedy stacking.
//!
//! Follows BoltzmannMachines.jl `initrbm`, `initvisiblebias`, `fitrbm`/`trainrbm!` (with the
//! `LoglikelihoodOptimizer` gradient, i.e. minibatch means) and `stackrbms(...; predbm=true)`.

use rand_chacha::ChaCha8Rng;

use super::dense::{add_outer, affine_down, affine_up, sigmoid_inplace, Mat};
use super::rng::{normal, permutation, stream, uniform, Purpose};
use super::simd::simd_dispatch;
use super::{Dbm, EpochHook, Rbm};
use crate::error::{CoreError, CoreResult};

/// Settings of `fit_rbm` (BoltzmannMachines.jl `fitrbm` keyword arguments).
#[derive(Clone, Debug)]
pub struct RbmTraining {
    pub epochs: usize,
    /// One learning rate per epoch.
    pub learning_rates: Vec<f64>,
    pub batch_size: usize,
    pub cd_steps: usize,
    /// Persistent chains (PCD) instead of chains started at the data (CD).
    pub pcd: bool,
    /// Factor of the total input of the hidden units (2 for the bottom layers of a DBM).
    pub up_factor: f64,
    /// Factor of the total input of the visible units (2 for the upper layers of a DBM).
    pub down_factor: f64,
}

impl RbmTraining {
    fn check(&self, n_samples: usize) -> CoreResult<()> {
        if self.learning_rates.len() < self.epochs {
            return Err(CoreError::invalid(format!(
                "{} learning rates for {} epochs; give one per epoch",
                self.learning_rates.len(),
                self.epochs
            )));
        }
        if let Some(lr) = self.learning_rates.iter().find(|v| !v.is_finite()) {
            return Err(CoreError::invalid(format!(
                "learning rates must be finite, got {lr}"
            )));
        }
        if self.batch_size == 0 || self.batch_size > n_samples {
            return Err(CoreError::invalid(format!(
                "batch size {} must be between 1 and the number of samples ({n_samples})",
                self.batch_size
            )));
        }
        if self.cd_steps == 0 {
            return Err(CoreError::invalid("cd_steps must be at least 1"));
        }
        if !(self.up_factor.is_finite() && self.down_factor.is_finite()) {
            return Err(CoreError::invalid("up/down factors must be finite"));
        }
        Ok(())
    }
}

/// Logit of each column's mean; 0 for columns with mean 0 (as `initvisiblebias`) and, to stay
/// finite, also for columns with mean 1.
pub fn init_visible_bias(x: &Mat) -> Vec<f64> {
    x.column_means()
        .into_iter()
        .map(|p| {
            if p > 0.0 && p < 1.0 {
                (p / (1.0 - p)).ln()
            } else {
                0.0
            }
        })
        .collect()
}

/// `initrbm`: weights `N(0, 1)/sqrt(n_visible)`, hidden bias 0, visible bias from the data.
pub fn init_rbm(x: &Mat, n_hidden: usize, seed: u64, tag: u64) -> CoreResult<Rbm> {
    let n_visible = x.cols;
    let mut rng = stream(seed, Purpose::RbmInit, tag, 0);
    let scale = 1.0 / (n_visible as f64).sqrt();
    let weights = (0..n_visible * n_hidden)
        .map(|_| normal(&mut rng) * scale)
        .collect();
    Rbm::new(
        n_visible,
        n_hidden,
        weights,
        init_visible_bias(x),
        vec![0.0; n_hidden],
    )
}

/// Hidden probabilities `σ(factor · (v W + b))` (`hiddenpotential`).
#[inline(always)]
pub fn hidden_potential(rbm: &Rbm, v: &Mat, factor: f64) -> Mat {
    let mut h = affine_up(v, &rbm.weights, rbm.n_hidden, &rbm.hidden_bias, factor);
    sigmoid_inplace(&mut h);
    h
}

/// Visible probabilities `σ(factor · (h Wᵀ + a))` (`visiblepotential`).
#[inline(always)]
pub fn visible_potential(rbm: &Rbm, h: &Mat, factor: f64) -> Mat {
    let mut v = affine_down(h, &rbm.weights, rbm.n_visible, &rbm.visible_bias, factor);
    sigmoid_inplace(&mut v);
    v
}

#[inline(always)]
pub(crate) fn bernoulli_inplace(m: &mut Mat, rng: &mut ChaCha8Rng) {
    for p in m.data.iter_mut() {
        *p = if uniform(rng) < *p { 1.0 } else { 0.0 };
    }
}

/// Train `start` (or a fresh `initrbm`) on `x` (values in [0, 1]) by (P)CD; `hook` runs after
/// every epoch. `tag` separates the random streams of the layers of a stack.
pub fn fit_rbm(
    x: &Mat,
    n_hidden: usize,
    cfg: &RbmTraining,
    seed: u64,
    tag: u64,
    start: Option<Rbm>,
    mut hook: Option<EpochHook<'_, Rbm>>,
) -> CoreResult<Rbm> {
    cfg.check(x.rows)?;
    let mut rbm = match start {
        Some(rbm) => {
            if rbm.n_visible != x.cols {
                return Err(CoreError::shape(format!(
                    "the start RBM has {} visible units but the data has {} columns",
                    rbm.n_visible, x.cols
                )));
            }
            rbm
        }
        None => init_rbm(x, n_hidden, seed, tag)?,
    };
    let mut init_rng = stream(seed, Purpose::RbmInit, tag, 1);
    // PCD chain state: hidden probabilities, uniform at the start (`rand(batchsize, nhidden)`).
    let mut chain = Mat::from_vec(
        cfg.batch_size,
        rbm.n_hidden,
        (0..cfg.batch_size * rbm.n_hidden)
            .map(|_| uniform(&mut init_rng))
            .collect(),
    );
    for epoch in 0..cfg.epochs {
        let mut rng = stream(seed, Purpose::RbmEpoch, tag, epoch as u64);
        train_epoch(
            &mut rbm,
            x,
            cfg,
            cfg.learning_rates[epoch],
            &mut chain,
            &mut rng,
        );
        if let Some(i) = rbm
            .weights
            .iter()
            .chain(&rbm.visible_bias)
            .chain(&rbm.hidden_bias)
            .position(|v| !v.is_finite())
        {
            return Err(CoreError::convergence(format!(
                "RBM training diverged in epoch {} (non-finite parameter at index {i}); lower \
                 the learning rate",
                epoch + 1
            )));
        }
        if let Some(hook) = hook.as_mut() {
            hook(epoch + 1, &rbm)?;
        }
    }
    Ok(rbm)
}

/// One epoch of `trainrbm!`.
#[inline(always)]
fn train_epoch_kernel(
    rbm: &mut Rbm,
    x: &Mat,
    cfg: &RbmTraining,
    learning_rate: f64,
    chain: &mut Mat,
    rng: &mut ChaCha8Rng,
) {
    let order = permutation(rng, x.rows);
    for batch in order.chunks(cfg.batch_size) {
        let v = x.gather(batch);
        let h = hidden_potential(rbm, &v, cfg.up_factor);
        let mut hmodel = if cfg.pcd { chain.clone() } else { h.clone() };
        bernoulli_inplace(&mut hmodel, rng);
        for _ in 1..cfg.cd_steps {
            let mut vmodel = visible_potential(rbm, &hmodel, cfg.down_factor);
            bernoulli_inplace(&mut vmodel, rng);
            hmodel = hidden_potential(rbm, &vmodel, cfg.up_factor);
            bernoulli_inplace(&mut hmodel, rng);
        }
        // No sampling in the last step (less noise), as in BoltzmannMachines.jl.
        let mut vmodel = visible_potential(rbm, &hmodel, cfg.down_factor);
        let mut hmodel = hidden_potential(rbm, &vmodel, cfg.up_factor);
        if cfg.pcd {
            chain.clone_from(&hmodel);
        }
        if hmodel.rows > batch.len() {
            vmodel = vmodel.head(batch.len());
            hmodel = hmodel.head(batch.len());
        }
        update_parameters(rbm, learning_rate, &v, &vmodel, &h, &hmodel);
    }
}

simd_dispatch!(fn train_epoch(
    rbm: &mut Rbm,
    x: &Mat,
    cfg: &RbmTraining,
    learning_rate: f64,
    chain: &mut Mat,
    rng: &mut ChaCha8Rng,
) => train_epoch_kernel);

/// `W += lr (vᵀh/n − vmᵀhm/m)`, `a += lr (mean v − mean vm)`, `b += lr (mean h − mean hm)`.
#[inline(always)]
pub(crate) fn update_parameters(
    rbm: &mut Rbm,
    learning_rate: f64,
    v: &Mat,
    vmodel: &Mat,
    h: &Mat,
    hmodel: &Mat,
) {
    let n_pos = v.rows.max(1) as f64;
    let n_neg = vmodel.rows.max(1) as f64;
    add_outer(&mut rbm.weights, learning_rate / n_pos, v, h);
    add_outer(&mut rbm.weights, -learning_rate / n_neg, vmodel, hmodel);
    for (bias, (pos, neg)) in rbm
        .visible_bias
        .iter_mut()
        .zip(v.column_means().into_iter().zip(vmodel.column_means()))
    {
        *bias += learning_rate * (pos - neg);
    }
    for (bias, (pos, neg)) in rbm
        .hidden_bias
        .iter_mut()
        .zip(h.column_means().into_iter().zip(hmodel.column_means()))
    {
        *bias += learning_rate * (pos - neg);
    }
}

/// Hook of `stack_rbms`: `(layer, epoch, rbm)`.
pub type LayerHook<'a> = &'a mut (dyn FnMut(usize, usize, &Rbm) -> CoreResult<()> + Send);

/// Up/down factors of layer `i` of `n` in DBM pretraining (`stackrbms(...; predbm = true)`):
/// bottom (2, 1), middle (2, 2), top (1, 2). A single layer is a plain RBM (1, 1).
pub fn pretraining_factors(i: usize, n: usize) -> (f64, f64) {
    if n == 1 {
        return (1.0, 1.0);
    }
    let up = if i + 1 == n { 1.0 } else { 2.0 };
    let down = if i == 0 { 1.0 } else { 2.0 };
    (up, down)
}

/// Greedy layerwise DBM pretraining: layer `i` is trained on the hidden probabilities of layer
/// `i-1` (computed with the doubled input, `samplehidden = false`). `hook(layer, epoch)` runs
/// after every epoch.
pub fn stack_rbms(
    x: &Mat,
    hidden_sizes: &[usize],
    template: &RbmTraining,
    seed: u64,
    mut hook: Option<LayerHook<'_>>,
) -> CoreResult<Dbm> {
    if hidden_sizes.is_empty() {
        return Err(CoreError::invalid("give at least one hidden layer size"));
    }
    if let Some(i) = hidden_sizes.iter().position(|&n| n == 0) {
        return Err(CoreError::invalid(format!(
            "hidden layer {i} has zero units"
        )));
    }
    let n = hidden_sizes.len();
    let mut layers: Vec<Rbm> = Vec::with_capacity(n);
    let mut input = x.clone();
    for (i, &n_hidden) in hidden_sizes.iter().enumerate() {
        if i > 0 {
            let (prev_up, _) = pretraining_factors(i - 1, n);
            input = hidden_potential(&layers[i - 1], &input, prev_up);
        }
        let (up_factor, down_factor) = pretraining_factors(i, n);
        let cfg = RbmTraining {
            up_factor,
            down_factor,
            ..template.clone()
        };
        let rbm = match hook.as_mut() {
            Some(outer) => {
                let mut layer_hook = |epoch: usize, rbm: &Rbm| outer(i, epoch, rbm);
                fit_rbm(
                    &input,
                    n_hidden,
                    &cfg,
                    seed,
                    i as u64,
                    None,
                    Some(&mut layer_hook),
                )?
            }
            None => fit_rbm(&input, n_hidden, &cfg, seed, i as u64, None, None)?,
        };
        layers.push(rbm);
    }
    Dbm::new(layers)
}
