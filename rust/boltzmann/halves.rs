//! RBM training epochs with the hidden units in two fixed halves, one per core.
//!
//! A minibatch step of (persistent) contrastive divergence ([`super::rbm`]) splits by hidden
//! units `J`: the hidden probabilities `h[:, J] = σ(v W[:, J] + b[J])`, their samples, and the
//! gradient of `W[:, J]` and `b[J]` need the columns `J` of `W` only. Each half keeps its
//! columns of `W` (`k × |J|`) and their transpose in its own buffers, so the weights stay in the
//! cache of one core. Only the downward products `hs Wᵀ + a` need both halves: each half
//! computes its part `hs[:, J] W[:, J]ᵀ` (the first half adds `a`), the halves exchange the
//! parts, and both take `σ(factor · (p₀ + p₁))`: the same values on both sides. That is one
//! exchange per Gibbs step, where the halves wait for each other (spinning: a minibatch step
//! takes tens of microseconds).
//!
//! Each half draws the whole uniform sequence of the serial kernel and keeps the draws of its
//! own units, so the samples are those of the serial kernel; only the rounding of the downward
//! products differs (two partial sums). With one thread, or when no second rayon worker picks up
//! the second half in time, the serial kernel runs with its downward products summed in the same
//! two parts: every other value is summed in the same order either way, so the results do not
//! depend on the number of threads (tested bit for bit).

use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;

use super::dense::{affine_up_into, prefetch, sigmoid_slice, transpose_into, Mat, MatRef};
use super::rbm::{self, apply_gradient, bernoulli_inplace, Parameters, RbmTraining};
use super::rng::{permutation, uniform};
use super::simd::simd_dispatch;
use super::Rbm;
use crate::parallel::parallelism_allowed;

/// Hidden units from which an epoch runs in halves (32 or more per half: narrower halves run
/// the kernels' short strips).
const MIN_HIDDEN: usize = 64;

/// Multiply-adds of a minibatch's product `v W` (`batch_size · n_visible · n_hidden`) from
/// which an epoch runs in halves. With less work per minibatch the exchanges and the work
/// both halves do (the model visibles, the uniforms) cost about as much as the halves save
/// (two threads against the serial kernel, 1525 samples, 5 epochs: 180×100 units, batch 10:
/// 0.92 of the time; 100×100, batch 10: 0.95; 100×96 or 100×100, batch 8: 1.02–1.16;
/// 100×20, batch 10: 1.53; the 200×100 benchmark case, batch 10: 0.72).
const MIN_WORK: usize = 150_000;

/// How long the first half waits for a rayon worker to start the second before it trains alone.
const CLAIM_WAIT: Duration = Duration::from_millis(2);

/// Spins of a waiting half before it yields its core to the operating system.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// The hidden units of the two halves: half of them rounded to a multiple of four (one AVX2
/// vector of weights) in the first, the rest in the second.
fn halves(n_hidden: usize) -> [Range<usize>; 2] {
    let split = ((n_hidden + 4) / 8 * 4).min(n_hidden);
    [0..split, split..n_hidden]
}

/// What every minibatch step shares: the data, the settings and the epoch's sample order.
struct Epoch<'a> {
    x: MatRef<'a>,
    cfg: &'a RbmTraining,
    learning_rate: f64,
    order: &'a [usize],
}

impl Epoch<'_> {
    fn batches(&self) -> std::slice::Chunks<'_, usize> {
        self.order.chunks(self.cfg.batch_size)
    }

    /// Chains of a minibatch of `b` rows: the persistent chains (PCD) or one per row (CD).
    fn chains(&self, b: usize) -> usize {
        if self.cfg.pcd {
            self.cfg.batch_size
        } else {
            b
        }
    }
}

/// The state of one half over an epoch.
struct Half {
    units: Range<usize>,
    /// `W[:, J]` (`k × |J|`, row-major) and its transpose (`|J| × k`).
    weights: Vec<f64>,
    transposed: Vec<f64>,
    hidden_bias: Vec<f64>,
    /// The visible bias `a`, held by the first half only.
    visible_bias: Option<Vec<f64>>,
    /// Hidden probabilities of the persistent chains (`batch_size × |J|`).
    chain: Vec<f64>,
    /// The data rows `v`, then the model visibles `vm` (`2 batch_size × k`).
    visible: Vec<f64>,
    /// `h[:, J]`, then the model hiddens `hm[:, J]` (`2 batch_size × |J|`).
    hidden: Vec<f64>,
    /// Sampled hidden states (`batch_size × |J|`).
    states: Vec<f64>,
    /// Sampled visible states of the Gibbs steps before the last (`batch_size × k`).
    visible_states: Vec<f64>,
    /// The uniforms of one row of hidden units.
    row_uniforms: Vec<f64>,
    /// The epoch's random stream, advanced by both halves alike.
    rng: ChaCha8Rng,
    /// Rows of the current minibatch and Gibbs steps done in it.
    rows: usize,
    step: usize,
}

impl Half {
    fn new(
        rbm: &Rbm,
        chain: &Mat,
        cfg: &RbmTraining,
        units: Range<usize>,
        rng: ChaCha8Rng,
    ) -> Self {
        let (k, n, width) = (rbm.n_visible, rbm.n_hidden, units.len());
        let columns = |data: &[f64]| -> Vec<f64> {
            data.chunks_exact(n)
                .flat_map(|row| row[units.clone()].iter().copied())
                .collect()
        };
        let weights = columns(&rbm.weights);
        let mut transposed = vec![0.0; k * width];
        transpose_into(&mut transposed, MatRef::new(k, width, &weights));
        let rows = cfg.batch_size;
        Self {
            weights,
            transposed,
            hidden_bias: rbm.hidden_bias[units.clone()].to_vec(),
            visible_bias: (units.start == 0).then(|| rbm.visible_bias.clone()),
            chain: columns(&chain.data),
            visible: vec![0.0; 2 * rows * k],
            hidden: vec![0.0; 2 * rows * width],
            states: vec![0.0; rows * width],
            visible_states: vec![0.0; if cfg.cd_steps > 1 { rows * k } else { 0 }],
            row_uniforms: vec![0.0; n],
            rng,
            rows: 0,
            step: 0,
            units,
        }
    }

    /// Writes the half's parameters and chains back into `rbm` and `chain`.
    fn store(self, rbm: &mut Rbm, chain: &mut Mat) {
        let (n, width) = (rbm.n_hidden, self.units.len());
        let put = |data: &mut [f64], from: &[f64]| {
            for (row, part) in data.chunks_exact_mut(n).zip(from.chunks_exact(width)) {
                row[self.units.clone()].copy_from_slice(part);
            }
        };
        put(&mut rbm.weights, &self.weights);
        put(&mut chain.data, &self.chain);
        rbm.hidden_bias[self.units.clone()].copy_from_slice(&self.hidden_bias);
        if let Some(a) = self.visible_bias {
            rbm.visible_bias = a;
        }
    }

    /// `out = σ(factor · (v W[:, J] + b[J]))` for the `rows` rows of `v`.
    #[inline(always)]
    fn hidden_potential(&self, out: &mut [f64], v: &[f64], rows: usize, factor: f64) {
        let (width, k) = (self.units.len(), self.transposed.len() / self.units.len());
        let w = MatRef::new(k, width, &self.weights);
        affine_up_into(out, MatRef::new(rows, k, v), w, &self.hidden_bias, factor);
        sigmoid_slice(out);
    }

    /// Replaces the hidden probabilities `values` (`rows × |J|`) by Bernoulli draws: the draws of
    /// these units among the uniforms of whole rows, in the order of the serial kernel.
    #[inline(always)]
    fn sample_hidden(
        values: &mut [f64],
        units: &Range<usize>,
        row_uniforms: &mut [f64],
        rng: &mut ChaCha8Rng,
    ) {
        for row in values.chunks_exact_mut(units.len()) {
            for u in row_uniforms.iter_mut() {
                *u = uniform(rng);
            }
            for (p, &u) in row.iter_mut().zip(&row_uniforms[units.clone()]) {
                *p = if u < *p { 1.0 } else { 0.0 };
            }
        }
    }

    /// This half's part of the downward product of the sampled states: `a + hs[:, J] W[:, J]ᵀ`
    /// in the first half, `hs[:, J] W[:, J]ᵀ` in the second (`chains × k`).
    #[inline(always)]
    fn downward_part(&self, part: &mut [f64], chains: usize) {
        let (width, k) = (self.units.len(), self.transposed.len() / self.units.len());
        let states = MatRef::new(chains, width, &self.states[..chains * width]);
        let wt = MatRef::new(width, k, &self.transposed);
        if self.visible_bias.is_none() {
            part.fill(0.0);
        }
        let bias = self.visible_bias.as_deref().unwrap_or_default();
        affine_up_into(part, states, wt, bias, 1.0);
    }

    /// The start of a minibatch: the data rows, `h[:, J]`, the sampled chain states and the
    /// first downward part.
    #[inline(always)]
    fn begin(&mut self, epoch: &Epoch, batch: &[usize], next: &[usize], part: &mut [f64]) {
        let (k, width) = (epoch.x.cols, self.units.len());
        let (b, m) = (batch.len(), epoch.chains(batch.len()));
        // The rows of the next minibatch, scattered over the data, load while this one trains.
        for &r in next {
            prefetch(epoch.x.row(r));
        }
        for (row, &r) in self.visible.chunks_exact_mut(k).zip(batch) {
            row.copy_from_slice(epoch.x.row(r));
        }
        let mut h = std::mem::take(&mut self.hidden);
        self.hidden_potential(
            &mut h[..b * width],
            &self.visible[..b * k],
            b,
            epoch.cfg.up_factor,
        );
        self.hidden = h;
        let source = if epoch.cfg.pcd {
            &self.chain
        } else {
            &self.hidden
        };
        self.states[..m * width].copy_from_slice(&source[..m * width]);
        Self::sample_hidden(
            &mut self.states[..m * width],
            &self.units,
            &mut self.row_uniforms,
            &mut self.rng,
        );
        self.rows = b;
        self.step = 0;
        self.downward_part(part, m);
    }

    /// Goes on after an exchange with both parts of the downward product: the model visibles
    /// `σ(factor · (own + other))`. Before the last Gibbs step they are sampled, the hidden states
    /// drawn from them, and the next part is written to `part` (`true`); after the last, the
    /// model hiddens and the gradient step finish the minibatch (`false`).
    #[inline(always)]
    fn resume(&mut self, epoch: &Epoch, own: &[f64], other: &[f64], part: &mut [f64]) -> bool {
        let cfg = epoch.cfg;
        let (k, width) = (epoch.x.cols, self.units.len());
        let (b, m) = (self.rows, epoch.chains(self.rows));
        self.step += 1;
        let last = self.step == cfg.cd_steps;
        let mut visible = std::mem::take(if last {
            &mut self.visible
        } else {
            &mut self.visible_states
        });
        let out = if last {
            &mut visible[b * k..(b + m) * k]
        } else {
            &mut visible[..m * k]
        };
        for ((o, p), q) in out.iter_mut().zip(own).zip(other) {
            *o = cfg.down_factor * (p + q);
        }
        sigmoid_slice(out);
        if !last {
            bernoulli_inplace(out, &mut self.rng);
            let mut states = std::mem::take(&mut self.states);
            self.hidden_potential(&mut states[..m * width], out, m, cfg.up_factor);
            Self::sample_hidden(
                &mut states[..m * width],
                &self.units,
                &mut self.row_uniforms,
                &mut self.rng,
            );
            self.states = states;
            self.visible_states = visible;
            self.downward_part(part, m);
            return true;
        }
        let mut hidden = std::mem::take(&mut self.hidden);
        let hm = &mut hidden[b * width..(b + m) * width];
        self.hidden_potential(hm, &visible[b * k..(b + m) * k], m, cfg.up_factor);
        if cfg.pcd {
            self.chain.copy_from_slice(hm);
        }
        // The negative phase uses as many chains as there are data rows.
        apply_gradient(
            Parameters {
                weights: &mut self.weights,
                transposed: Some(&mut self.transposed),
                visible_bias: self.visible_bias.as_deref_mut(),
                hidden_bias: &mut self.hidden_bias,
            },
            epoch.learning_rate,
            &visible[..2 * b * k],
            &mut hidden[..2 * b * width],
            b,
        );
        self.hidden = hidden;
        self.visible = visible;
        false
    }
}

simd_dispatch!(fn begin(half: &mut Half, epoch: &Epoch, batch: &[usize], next: &[usize], part: &mut [f64]) => begin_kernel);
simd_dispatch!(fn resume(half: &mut Half, epoch: &Epoch, own: &[f64], other: &[f64], part: &mut [f64]) -> bool => resume_kernel);

#[inline(always)]
fn begin_kernel(half: &mut Half, epoch: &Epoch, batch: &[usize], next: &[usize], part: &mut [f64]) {
    half.begin(epoch, batch, next, part);
}

#[inline(always)]
fn resume_kernel(
    half: &mut Half,
    epoch: &Epoch,
    own: &[f64],
    other: &[f64],
    part: &mut [f64],
) -> bool {
    half.resume(epoch, own, other, part)
}

/// A cache line of its own for a counter one half writes and the other reads.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// The downward parts the halves exchange: two buffers per half (exchange `e` uses `e % 2`, so
/// that a half writes its next part while the other may still read the last), and per half the
/// number of parts it has published.
struct Exchange {
    parts: [[RwLock<Vec<f64>>; 2]; 2],
    published: [Padded; 2],
}

impl Exchange {
    fn new(len: usize) -> Self {
        let buffer = || RwLock::new(vec![0.0; len]);
        Self {
            parts: [[buffer(), buffer()], [buffer(), buffer()]],
            published: [Padded(AtomicUsize::new(0)), Padded(AtomicUsize::new(0))],
        }
    }

    fn read(&self, half: usize, exchange: usize) -> RwLockReadGuard<'_, Vec<f64>> {
        self.parts[half][exchange % 2]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, half: usize, exchange: usize) -> RwLockWriteGuard<'_, Vec<f64>> {
        self.parts[half][exchange % 2]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// `half` has written its part of exchange `count - 1`.
    fn publish(&self, half: usize, count: usize) {
        self.published[half].0.store(count, Ordering::Release);
    }

    /// Waits until the other half has published `count` parts.
    fn wait(&self, half: usize, count: usize) {
        let mut spins = 0u32;
        while self.published[1 - half].0.load(Ordering::Acquire) < count {
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

fn lock(half: &Mutex<Half>) -> MutexGuard<'_, Half> {
    half.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One half's epoch on its own thread, in step with the other half through `exchange`.
fn run_in_step(half: &mut Half, index: usize, epoch: &Epoch, exchange: &Exchange) {
    let mut count = 0;
    let mut batches = epoch.batches().peekable();
    while let Some(batch) = batches.next() {
        let next = batches.peek().copied().unwrap_or_default();
        begin(half, epoch, batch, next, &mut exchange.write(index, count));
        count += 1;
        exchange.publish(index, count);
        loop {
            exchange.wait(index, count);
            let own = exchange.read(index, count - 1);
            let other = exchange.read(1 - index, count - 1);
            let more = resume(half, epoch, &own, &other, &mut exchange.write(index, count));
            drop((own, other));
            if !more {
                break;
            }
            count += 1;
            exchange.publish(index, count);
        }
    }
}

const OPEN: u8 = 0;
const TAKEN: u8 = 1;
const ALONE: u8 = 2;

/// Whether an epoch of this RBM and these settings runs in halves: from
/// [`super::rbm::TRANSPOSE_ROWS`] chains (the halves keep `Wᵀ`), [`MIN_HIDDEN`] hidden units and
/// [`MIN_WORK`] multiply-adds. The thread count plays no part, so that the results do not
/// depend on it.
pub(super) fn applies(rbm: &Rbm, cfg: &RbmTraining) -> bool {
    let work = cfg.batch_size * rbm.n_visible * rbm.n_hidden;
    cfg.batch_size >= super::rbm::TRANSPOSE_ROWS && rbm.n_hidden >= MIN_HIDDEN && work >= MIN_WORK
}

/// One epoch of `trainrbm!` in two halves of the hidden units (see the module documentation);
/// draws the sample order and every uniform from `rng`, as the serial kernel does.
pub(super) fn train_epoch(
    rbm: &mut Rbm,
    x: MatRef,
    cfg: &RbmTraining,
    learning_rate: f64,
    chain: &mut Mat,
    rng: &mut ChaCha8Rng,
) {
    let units = halves(rbm.n_hidden);
    // on one thread: the serial kernel with the downward products in the same two parts
    // (the same results, without the work both halves do)
    let mut serial_rng = rng.clone();
    let split = Some(units[1].start);
    let mut alone = |rbm: &mut Rbm, chain: &mut Mat| {
        rbm::train_epoch(rbm, x, cfg, learning_rate, chain, &mut serial_rng, split);
    };
    if !(parallelism_allowed() && rayon::current_num_threads() >= 2) {
        return alone(rbm, chain);
    }
    let order = permutation(rng, x.rows);
    let epoch = Epoch {
        x,
        cfg,
        learning_rate,
        order: &order,
    };
    let [first, second] =
        units.map(|units| Mutex::new(Half::new(rbm, chain, cfg, units, rng.clone())));
    let exchange = Exchange::new(cfg.batch_size * x.cols);
    let claim = AtomicU8::new(OPEN);
    let mut ran_alone = false;
    rayon::scope(|s| {
        s.spawn(|_| {
            if claim
                .compare_exchange(OPEN, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                run_in_step(&mut lock(&second), 1, &epoch, &exchange);
            }
        });
        let start = Instant::now();
        while claim.load(Ordering::Acquire) == OPEN && start.elapsed() < CLAIM_WAIT {
            std::hint::spin_loop();
        }
        ran_alone = claim
            .compare_exchange(OPEN, ALONE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ran_alone {
            alone(rbm, chain);
        } else {
            run_in_step(&mut lock(&first), 0, &epoch, &exchange);
        }
    });
    if !ran_alone {
        for half in [first, second] {
            half.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .store(rbm, chain);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::rbm::{self, init_rbm};
    use super::super::rng::{stream, Purpose};
    use super::*;

    /// Binary data with two prototypes and 10 % noise.
    fn planted(n: usize, p: usize) -> Mat {
        let mut rng = stream(5, Purpose::Sample, 3, 0);
        let data = (0..n * p)
            .map(|i| {
                let on = (i / p).is_multiple_of(2) == (i % p < p / 2);
                f64::from(u8::from(on != (uniform(&mut rng) < 0.1)))
            })
            .collect();
        Mat::from_vec(n, p, data)
    }

    fn settings(batch_size: usize, cd_steps: usize, pcd: bool) -> RbmTraining {
        RbmTraining {
            epochs: 1,
            learning_rates: vec![0.05],
            batch_size,
            cd_steps,
            pcd,
            up_factor: 2.0,
            down_factor: 1.0,
        }
    }

    /// Two epochs through `epoch` from the same start: the RBM and the chains.
    fn two_epochs(
        epoch: fn(&mut Rbm, MatRef, &RbmTraining, f64, &mut Mat, &mut ChaCha8Rng),
        x: &Mat,
        n_hidden: usize,
        cfg: &RbmTraining,
    ) -> (Rbm, Mat) {
        let mut model = init_rbm(x.view(), n_hidden, 1, 0).unwrap();
        let mut rng = stream(1, Purpose::RbmInit, 0, 1);
        let mut chain = Mat::from_vec(
            cfg.batch_size,
            n_hidden,
            (0..cfg.batch_size * n_hidden)
                .map(|_| uniform(&mut rng))
                .collect(),
        );
        for e in 0..2 {
            let mut rng = stream(1, Purpose::RbmEpoch, 0, e);
            epoch(&mut model, x.view(), cfg, 0.05, &mut chain, &mut rng);
        }
        (model, chain)
    }

    fn max_difference(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    fn halves_agree_with_the_serial_kernel() {
        // 103 rows: the last minibatch is shorter; 37 hidden units: halves of 20 and 17
        let x = planted(103, 23);
        for (batch_size, cd_steps, pcd) in [(10, 1, true), (8, 3, true), (4, 2, false)] {
            let cfg = settings(batch_size, cd_steps, pcd);
            let serial = two_epochs(
                |m, x, c, lr, ch, r| rbm::train_epoch(m, x, c, lr, ch, r, None),
                &x,
                37,
                &cfg,
            );
            let split = pool(2).install(|| two_epochs(train_epoch, &x, 37, &cfg));
            // Same samples; only the rounding of the downward products differs.
            let what = format!("batch {batch_size}, {cd_steps} steps, pcd {pcd}");
            assert!(serial.0.weights != split.0.weights, "{what}: not split");
            for (a, b) in [
                (&serial.0.weights, &split.0.weights),
                (&serial.0.visible_bias, &split.0.visible_bias),
                (&serial.0.hidden_bias, &split.0.hidden_bias),
                (&serial.1.data, &split.1.data),
            ] {
                assert!(
                    max_difference(a, b) < 1e-11,
                    "{what}: {}",
                    max_difference(a, b)
                );
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_threads() {
        // one thread: the serial kernel with the downward products in two parts; two: the
        // halves in step (the last minibatch is shorter: 93 rows)
        let x = planted(93, 30);
        for (batch_size, cd_steps, pcd) in [(10, 2, true), (10, 1, true), (4, 1, false)] {
            let cfg = settings(batch_size, cd_steps, pcd);
            let alone = pool(1).install(|| two_epochs(train_epoch, &x, 40, &cfg));
            let in_step = pool(2).install(|| two_epochs(train_epoch, &x, 40, &cfg));
            assert_eq!(alone, in_step);
            // Two fits side by side on two threads: neither finds a free worker for its
            // second half, so each runs alone.
            let (a, b) = pool(2).install(|| {
                rayon::join(
                    || two_epochs(train_epoch, &x, 40, &cfg),
                    || two_epochs(train_epoch, &x, 40, &cfg),
                )
            });
            assert_eq!(a, alone);
            assert_eq!(b, alone);
        }
    }
}
