//! RBM training: initialisation, (persistent) contrastive divergence and greedy stacking.
//!
//! Follows BoltzmannMachines.jl `initrbm`, `initvisiblebias`, `fitrbm`/`trainrbm!` (with the
//! `LoglikelihoodOptimizer` gradient, i.e. minibatch means) and `stackrbms(...; predbm=true)`.

use rand_chacha::ChaCha8Rng;

use super::dense::{
    add_outer, add_outer_mirrored, affine_down_into, affine_up_into, prefetch, sigmoid_slice,
    transpose_into, Mat, MatRef,
};
use super::halves;
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
pub fn init_visible_bias(x: MatRef) -> Vec<f64> {
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
pub fn init_rbm(x: MatRef, n_hidden: usize, seed: u64, tag: u64) -> CoreResult<Rbm> {
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
    let mut h = Mat::zeros(v.rows, rbm.n_hidden);
    hidden_potential_into(&mut h.data, rbm, v.view(), factor);
    h
}

/// [`hidden_potential`] written to `out` (`v.rows × n_hidden`).
#[inline(always)]
fn hidden_potential_into(out: &mut [f64], rbm: &Rbm, v: MatRef, factor: f64) {
    let w = MatRef::new(rbm.n_visible, rbm.n_hidden, &rbm.weights);
    affine_up_into(out, v, w, &rbm.hidden_bias, factor);
    sigmoid_slice(out);
}

/// Visible probabilities `σ(factor · (h Wᵀ + a))` (`visiblepotential`), written to `out`
/// (`h.rows × n_visible`). With `wt = Wᵀ` (`n_hidden × n_visible`) this is the same product as
/// [`hidden_potential`], whose kernels sum weight rows for binary `h`. With `split`, the sum
/// over the hidden units is taken in two parts, `(a + h[:, ..s] Wᵀ[..s]) + h[:, s..] Wᵀ[s..]`,
/// rounded as the halves of [`super::halves`] do.
#[inline(always)]
fn visible_potential_into(
    out: &mut [f64],
    rbm: &Rbm,
    h: MatRef,
    factor: f64,
    wt: Option<&[f64]>,
    split: Option<&mut SplitProduct>,
) {
    match (wt, split) {
        (Some(wt), Some(split)) => {
            let (n, k, s) = (rbm.n_hidden, rbm.n_visible, split.at);
            let m = h.rows;
            let (first, second) = (&mut split.first[..m * s], &mut split.second[..m * (n - s)]);
            for ((row, a), b) in h
                .data
                .chunks_exact(n)
                .zip(first.chunks_exact_mut(s))
                .zip(second.chunks_exact_mut(n - s))
            {
                a.copy_from_slice(&row[..s]);
                b.copy_from_slice(&row[s..]);
            }
            let (wt_first, wt_second) = wt.split_at(s * k);
            let other = &mut split.part[..m * k];
            affine_up_into(
                out,
                MatRef::new(m, s, first),
                MatRef::new(s, k, wt_first),
                &rbm.visible_bias,
                1.0,
            );
            other.fill(0.0);
            affine_up_into(
                other,
                MatRef::new(m, n - s, second),
                MatRef::new(n - s, k, wt_second),
                &[],
                1.0,
            );
            for (o, q) in out.iter_mut().zip(other.iter()) {
                *o = factor * (*o + q);
            }
        }
        (Some(wt), None) => {
            let wt = MatRef::new(rbm.n_hidden, rbm.n_visible, wt);
            affine_up_into(out, h, wt, &rbm.visible_bias, factor);
        }
        (None, _) => {
            let w = MatRef::new(rbm.n_visible, rbm.n_hidden, &rbm.weights);
            affine_down_into(out, h, w, &rbm.visible_bias, factor);
        }
    }
    sigmoid_slice(out);
}

/// Working memory of a downward product in two parts (see [`visible_potential_into`]).
struct SplitProduct {
    /// The first hidden unit of the second part.
    at: usize,
    /// The sampled states of the two parts' units, and the second part.
    first: Vec<f64>,
    second: Vec<f64>,
    part: Vec<f64>,
}

/// Replaces probabilities by Bernoulli draws (one uniform per value, in order).
#[inline(always)]
pub(super) fn bernoulli_inplace(values: &mut [f64], rng: &mut ChaCha8Rng) {
    for p in values.iter_mut() {
        *p = if uniform(rng) < *p { 1.0 } else { 0.0 };
    }
}

/// Train `start` (or a fresh `initrbm`) on `x` (values in [0, 1]) by (P)CD; `hook` runs after
/// every epoch. `tag` separates the random streams of the layers of a stack.
pub fn fit_rbm(
    x: MatRef,
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
        let learning_rate = cfg.learning_rates[epoch];
        if halves::applies(&rbm, cfg) {
            halves::train_epoch(&mut rbm, x, cfg, learning_rate, &mut chain, &mut rng);
        } else {
            train_epoch(&mut rbm, x, cfg, learning_rate, &mut chain, &mut rng, None);
        }
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

/// Number of chains from which [`train_epoch`] transposes the weights for the downward products.
pub(super) const TRANSPOSE_ROWS: usize = 4;

/// One epoch of `trainrbm!`.
///
/// Per minibatch of `b` rows with `m` chains (`batch_size` persistent chains for PCD, `b` for
/// CD), in buffers reused over the epoch: `visible` holds the data rows `v` and then the model
/// visibles `vm = σ(hs Wᵀ + a)` of the sampled chain states `hs`; `hidden` holds
/// `h = σ(vW + b)` and then the model hiddens `hm = σ(vm W + b)`. The gradient step takes their
/// first `2b` rows at once. From [`TRANSPOSE_ROWS`] chains on, a copy of `Wᵀ` is kept up to date
/// by the gradient steps, so that the downward products of the binary chain states sum rows of
/// `Wᵀ`. With `split` (and `Wᵀ`), the downward products are summed in two parts, the first
/// hidden units before `split` and the rest: the same results as [`super::halves`].
#[inline(always)]
fn train_epoch_kernel(
    rbm: &mut Rbm,
    x: MatRef,
    cfg: &RbmTraining,
    learning_rate: f64,
    chain: &mut Mat,
    rng: &mut ChaCha8Rng,
    split: Option<usize>,
) {
    let (k, n, rows) = (rbm.n_visible, rbm.n_hidden, cfg.batch_size);
    let mut split = split
        .filter(|&at| rows >= TRANSPOSE_ROWS && 0 < at && at < n)
        .map(|at| SplitProduct {
            at,
            first: vec![0.0; rows * at],
            second: vec![0.0; rows * (n - at)],
            part: vec![0.0; rows * k],
        });
    let order = permutation(rng, x.rows);
    let mut visible = vec![0.0; 2 * rows * k];
    let mut hidden = vec![0.0; 2 * rows * n];
    let mut hidden_states = vec![0.0; rows * n];
    let mut visible_states = vec![0.0; if cfg.cd_steps > 1 { rows * k } else { 0 }];
    let mut wt = (rows >= TRANSPOSE_ROWS).then(|| {
        let mut wt = vec![0.0; k * n];
        transpose_into(&mut wt, MatRef::new(k, n, &rbm.weights));
        wt
    });
    let mut batches = order.chunks(rows).peekable();
    while let Some(batch) = batches.next() {
        // The rows of the next minibatch, scattered over the data, load while this one trains.
        for &r in batches.peek().copied().unwrap_or_default() {
            prefetch(x.row(r));
        }
        let b = batch.len();
        let m = if cfg.pcd { chain.rows } else { b };
        let (v, vm) = visible.split_at_mut(b * k);
        let (h, hm) = hidden.split_at_mut(b * n);
        let (vm, hm, hs) = (
            &mut vm[..m * k],
            &mut hm[..m * n],
            &mut hidden_states[..m * n],
        );
        for (row, &r) in v.chunks_exact_mut(k).zip(batch) {
            row.copy_from_slice(x.row(r));
        }
        hidden_potential_into(h, rbm, MatRef::new(b, k, v), cfg.up_factor);
        hs.copy_from_slice(if cfg.pcd { &chain.data } else { h });
        bernoulli_inplace(hs, rng);
        for _ in 1..cfg.cd_steps {
            let vs = &mut visible_states[..m * k];
            visible_potential_into(
                vs,
                rbm,
                MatRef::new(m, n, hs),
                cfg.down_factor,
                wt.as_deref(),
                split.as_mut(),
            );
            bernoulli_inplace(vs, rng);
            hidden_potential_into(hs, rbm, MatRef::new(m, k, vs), cfg.up_factor);
            bernoulli_inplace(hs, rng);
        }
        // No sampling in the last step (less noise), as in BoltzmannMachines.jl.
        visible_potential_into(
            vm,
            rbm,
            MatRef::new(m, n, hs),
            cfg.down_factor,
            wt.as_deref(),
            split.as_mut(),
        );
        hidden_potential_into(hm, rbm, MatRef::new(m, k, vm), cfg.up_factor);
        if cfg.pcd {
            chain.data.copy_from_slice(hm);
        }
        // The negative phase uses as many chains as there are data rows.
        apply_gradient(
            Parameters::of(rbm, wt.as_deref_mut()),
            learning_rate,
            &visible[..2 * b * k],
            &mut hidden[..2 * b * n],
            b,
        );
    }
}

simd_dispatch!(pub(super) fn train_epoch(
    rbm: &mut Rbm,
    x: MatRef,
    cfg: &RbmTraining,
    learning_rate: f64,
    chain: &mut Mat,
    rng: &mut ChaCha8Rng,
    split: Option<usize>,
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
    let visible = [v.data.as_slice(), &vmodel.data].concat();
    let mut hidden = [h.data.as_slice(), &hmodel.data].concat();
    apply_gradient(
        Parameters::of(rbm, None),
        learning_rate,
        &visible,
        &mut hidden,
        v.rows,
    );
}

/// The parameters a gradient step updates: weights `W` (`k × n`, row-major) with, when given, a
/// copy of `Wᵀ` kept equal to it; the visible bias (`k`, when given) and the hidden bias (`n`).
pub(super) struct Parameters<'a> {
    pub weights: &'a mut [f64],
    pub transposed: Option<&'a mut [f64]>,
    pub visible_bias: Option<&'a mut [f64]>,
    pub hidden_bias: &'a mut [f64],
}

impl<'a> Parameters<'a> {
    fn of(rbm: &'a mut Rbm, transposed: Option<&'a mut [f64]>) -> Self {
        Self {
            weights: &mut rbm.weights,
            transposed,
            visible_bias: Some(&mut rbm.visible_bias),
            hidden_bias: &mut rbm.hidden_bias,
        }
    }
}

/// [`update_parameters`] on stacked rows: `visible` and `hidden` hold the `n_pos` rows of the
/// positive phase and then those of the negative phase. The hidden rows are scaled in place by
/// their weights `±lr/count`, so that one pass `W += visibleᵀ hidden` adds both outer products.
#[inline(always)]
pub(super) fn apply_gradient(
    parameters: Parameters<'_>,
    learning_rate: f64,
    visible: &[f64],
    hidden: &mut [f64],
    n_pos: usize,
) {
    let n = parameters.hidden_bias.len();
    let rows = hidden.len() / n.max(1);
    if rows == 0 {
        return;
    }
    let k = visible.len() / rows;
    let n_neg = rows - n_pos;
    let (pos, neg) = (
        learning_rate / n_pos.max(1) as f64,
        -learning_rate / n_neg.max(1) as f64,
    );
    let mut visible_bias = parameters.visible_bias;
    for (r, (vr, hr)) in visible
        .chunks_exact(k)
        .zip(hidden.chunks_exact_mut(n))
        .enumerate()
    {
        let weight = if r < n_pos { pos } else { neg };
        if let Some(a) = visible_bias.as_deref_mut() {
            for (a, x) in a.iter_mut().zip(vr) {
                *a += weight * x;
            }
        }
        for (b, y) in parameters.hidden_bias.iter_mut().zip(hr.iter_mut()) {
            *y *= weight;
            *b += *y;
        }
    }
    let (x, y) = (MatRef::new(rows, k, visible), MatRef::new(rows, n, hidden));
    match parameters.transposed {
        Some(wt) => add_outer_mirrored(parameters.weights, wt, 1.0, x, y),
        None => add_outer(parameters.weights, 1.0, x, y),
    }
}

/// Hook of `stack_rbms`: `(layer, epoch, rbm)`.
pub type LayerHook<'a> = &'a mut (dyn FnMut(usize, usize, &Rbm) -> CoreResult<()> + Send);

/// Up/down factors of layer `i` of `n` in DBM pretraining (`stackrbms(...; predbm = true)`):
/// bottom (2, 1), middle (2, 2), top (1, 2). A single layer is (2, 1), as in
/// BoltzmannMachines.jl, whose `stackrbms` doubles the first layer's upward input before it
/// looks at the number of layers.
pub fn pretraining_factors(i: usize, n: usize) -> (f64, f64) {
    let up = if i == 0 || i + 1 < n { 2.0 } else { 1.0 };
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
                    input.view(),
                    n_hidden,
                    &cfg,
                    seed,
                    i as u64,
                    None,
                    Some(&mut layer_hook),
                )?
            }
            None => fit_rbm(input.view(), n_hidden, &cfg, seed, i as u64, None, None)?,
        };
        layers.push(rbm);
    }
    Dbm::new(layers)
}
