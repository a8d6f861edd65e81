//! Bernoulli restricted and deep Boltzmann machines (pure Rust).
//!
//! The algorithms follow BoltzmannMachines.jl (Lenz, Hess, Binder et al.; `fitrbm`, `stackrbms`,
//! `fitdbm`/`traindbm!`, `meanfield`, `gibbssample!`, `aislogimpweights`, `logproblowerbound`,
//! `exactloglikelihood`) and Salakhutdinov & Hinton (2012), "An efficient learning procedure for
//! deep Boltzmann machines", Neural Computation 24:1967–2006:
//!
//! * [`rbm`]: RBM initialisation (`W ~ N(0,1)/sqrt(n_visible)`, visible bias = logit of the
//!   empirical mean), (persistent) contrastive divergence, greedy stacking with the doubled-input
//!   factors of DBM pretraining.
//! * `halves`: RBM training epochs of large minibatches (four rows or more, enough work) with
//!   the hidden units in two fixed halves, one per core, exchanging the parts of the downward products once per
//!   Gibbs step (the same samples as the serial kernel; results independent of the threads).
//! * [`dbm`]: mean-field inference (tolerance 1e-3) and fine-tuning with persistent Gibbs
//!   particles (learning rates `lr·11/(10+epoch)`).
//! * [`gibbs`]: blocked Gibbs sampling on bit-packed states with subset-sum lookup tables (exact
//!   sums of the weights of active units, 4 units per table lookup), optional clamped visibles.
//! * [`ais`]: annealed importance sampling of log Z with alternate layers summed out, per-sample
//!   AIS log-likelihood, exact enumeration for tiny models, the mean-field lower bound and the
//!   reconstruction error.
//!
//! Gibbs schedules: BoltzmannMachines.jl's `gibbssample!` for DBMs updates every layer from the
//! *previous* states of its neighbours at once. Then the odd and the even layers are two
//! independent chains and a particle's layers are independent of each other (e.g. `E[v h1ᵀ]`
//! factorises), which biases the negative phase of fine-tuning. By default a sweep here samples
//! the odd layers given the even ones and then the even layers given the new odd ones (the
//! blocked Gibbs sampler of Salakhutdinov & Hinton), which leaves the joint distribution
//! invariant; fine-tuning can use the authors' schedule (`gibbs::Schedule::Synchronous`).

pub mod ais;
pub mod dbm;
pub mod dense;
pub mod gibbs;
mod halves;
pub mod rbm;
mod rng;
mod simd;

#[cfg(feature = "python")]
pub mod python;

use crate::error::{CoreError, CoreResult};
use dense::MatRef;

/// A Bernoulli RBM: `E(v, h) = -vᵀ W h - aᵀ v - bᵀ h`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rbm {
    pub n_visible: usize,
    pub n_hidden: usize,
    /// `n_visible × n_hidden`, row-major.
    pub weights: Vec<f64>,
    pub visible_bias: Vec<f64>,
    pub hidden_bias: Vec<f64>,
}

impl Rbm {
    /// Checks sizes and finiteness.
    pub fn new(
        n_visible: usize,
        n_hidden: usize,
        weights: Vec<f64>,
        visible_bias: Vec<f64>,
        hidden_bias: Vec<f64>,
    ) -> CoreResult<Self> {
        if n_visible == 0 || n_hidden == 0 {
            return Err(CoreError::invalid(format!(
                "an RBM layer needs at least one visible and one hidden unit, got {n_visible}×{n_hidden}"
            )));
        }
        if weights.len() != n_visible * n_hidden
            || visible_bias.len() != n_visible
            || hidden_bias.len() != n_hidden
        {
            return Err(CoreError::shape(format!(
                "RBM parameters do not agree: weights {} values for {n_visible}×{n_hidden}, \
                 visible bias {} (expected {n_visible}), hidden bias {} (expected {n_hidden})",
                weights.len(),
                visible_bias.len(),
                hidden_bias.len()
            )));
        }
        for (name, values) in [
            ("weights", &weights),
            ("visible bias", &visible_bias),
            ("hidden bias", &hidden_bias),
        ] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(CoreError::invalid(format!(
                    "RBM {name} has a non-finite value at flat index {i}; the model diverged or \
                     was corrupted (lower the learning rate)"
                )));
            }
        }
        Ok(Self {
            n_visible,
            n_hidden,
            weights,
            visible_bias,
            hidden_bias,
        })
    }

    #[inline]
    pub fn weight(&self, i: usize, j: usize) -> f64 {
        self.weights[i * self.n_hidden + j]
    }
}

/// A deep Boltzmann machine as a stack of RBMs (layer `l` and `l+1` joined by `layers[l]`);
/// intermediate layers have the sum of the two adjacent biases (`combined_biases`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dbm {
    pub layers: Vec<Rbm>,
}

impl Dbm {
    pub fn new(layers: Vec<Rbm>) -> CoreResult<Self> {
        if layers.is_empty() {
            return Err(CoreError::invalid("a DBM needs at least one RBM layer"));
        }
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].n_hidden != pair[1].n_visible {
                return Err(CoreError::shape(format!(
                    "layer {i} has {} hidden units but layer {} has {} visible units",
                    pair[0].n_hidden,
                    i + 1,
                    pair[1].n_visible
                )));
            }
        }
        Ok(Self { layers })
    }

    /// Units per layer, visible first.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.layers[0].n_visible];
        sizes.extend(self.layers.iter().map(|l| l.n_hidden));
        sizes
    }

    pub fn n_visible(&self) -> usize {
        self.layers[0].n_visible
    }

    /// Bias of every layer: visible bias of layer 0, `hidden_bias[l-1] + visible_bias[l]` for
    /// intermediate layers, hidden bias of the top layer.
    pub fn combined_biases(&self) -> Vec<Vec<f64>> {
        let n = self.layers.len();
        let mut out = Vec::with_capacity(n + 1);
        out.push(self.layers[0].visible_bias.clone());
        for l in 1..n {
            out.push(
                self.layers[l - 1]
                    .hidden_bias
                    .iter()
                    .zip(&self.layers[l].visible_bias)
                    .map(|(a, b)| a + b)
                    .collect(),
            );
        }
        out.push(self.layers[n - 1].hidden_bias.clone());
        out
    }
}

/// Check a data matrix for a model with `n_visible` units: shape, finite values in [0, 1];
/// `binary` additionally requires 0/1 values.
pub fn check_data(x: MatRef, n_visible: usize, binary: bool, what: &str) -> CoreResult<()> {
    if x.cols != n_visible {
        return Err(CoreError::shape(format!(
            "{what} has {} columns but the model has {n_visible} visible units",
            x.cols
        )));
    }
    if x.rows == 0 {
        return Err(CoreError::invalid(format!("{what} has no rows")));
    }
    let bad = |v: f64| {
        if binary {
            v != 0.0 && v != 1.0
        } else {
            !(0.0..=1.0).contains(&v)
        }
    };
    // a branch-free (vectorised) test first; the position only for the error message
    let valid = x
        .data
        .chunks(4096)
        .all(|chunk| !chunk.iter().fold(false, |any, &v| any | bad(v)));
    if valid {
        return Ok(());
    }
    for (index, &v) in x.data.iter().enumerate() {
        if bad(v) {
            let (row, column) = (index / x.cols, index % x.cols);
            let expected = if binary { "0 or 1" } else { "in [0, 1]" };
            return Err(CoreError::invalid(format!(
                "{what} must hold values {expected}; found {v} at row {row}, column {column} \
                 (dichotomise the data first, e.g. omicsembed.pp.dichotomize)"
            )));
        }
    }
    Ok(())
}

/// Optional per-epoch hook: return an error to stop training.
pub type EpochHook<'a, M> = &'a mut (dyn FnMut(usize, &M) -> CoreResult<()> + Send);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::ais::{
        default_temperatures, log_likelihood_ais, log_partition_ais, log_partition_exact,
        log_prob_lower_bound, log_unnormalized_exact,
    };
    use super::dbm::{decaying_learning_rates, fine_tune, mean_field, FineTuning};
    use super::dense::Mat;
    use super::gibbs::{gibbs_sample, run_sweeps, Particles, Sampler, Schedule};
    use super::rbm::{fit_rbm, pretraining_factors, stack_rbms, RbmTraining};
    use super::rng::{normal, stream, Purpose};
    use super::*;

    fn random_dbm(sizes: &[usize], scale: f64, seed: u64) -> Dbm {
        let mut rng = stream(seed, Purpose::RbmInit, 99, 0);
        let layers = sizes
            .windows(2)
            .map(|w| {
                let (nv, nh) = (w[0], w[1]);
                let weights = (0..nv * nh).map(|_| normal(&mut rng) * scale).collect();
                let a = (0..nv).map(|_| normal(&mut rng) * 0.5).collect();
                let b = (0..nh).map(|_| normal(&mut rng) * 0.5).collect();
                Rbm::new(nv, nh, weights, a, b).unwrap()
            })
            .collect();
        Dbm::new(layers).unwrap()
    }

    /// -E of a full configuration (one 0/1 vector per layer).
    fn neg_energy(dbm: &Dbm, state: &[Vec<f64>]) -> f64 {
        let biases = dbm.combined_biases();
        let mut e = 0.0;
        for (l, b) in biases.iter().enumerate() {
            e += b.iter().zip(&state[l]).map(|(x, y)| x * y).sum::<f64>();
        }
        for (l, rbm) in dbm.layers.iter().enumerate() {
            for i in 0..rbm.n_visible {
                for j in 0..rbm.n_hidden {
                    e += state[l][i] * rbm.weight(i, j) * state[l + 1][j];
                }
            }
        }
        e
    }

    fn all_states(sizes: &[usize]) -> Vec<Vec<Vec<f64>>> {
        let total: usize = sizes.iter().sum();
        (0..1usize << total)
            .map(|code| {
                let mut bit = 0;
                sizes
                    .iter()
                    .map(|&n| {
                        (0..n)
                            .map(|_| {
                                bit += 1;
                                ((code >> (bit - 1)) & 1) as f64
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect()
    }

    fn log_sum_exp(values: &[f64]) -> f64 {
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
    }

    /// Brute-force log Z and log p*(v) for every visible configuration.
    fn brute_force(dbm: &Dbm) -> (f64, Vec<(Vec<f64>, f64)>) {
        let sizes = dbm.sizes();
        let states = all_states(&sizes);
        let energies: Vec<f64> = states.iter().map(|s| neg_energy(dbm, s)).collect();
        let log_z = log_sum_exp(&energies);
        let mut by_visible: std::collections::BTreeMap<Vec<u8>, Vec<f64>> = Default::default();
        for (s, e) in states.iter().zip(&energies) {
            let key: Vec<u8> = s[0].iter().map(|&v| v as u8).collect();
            by_visible.entry(key).or_default().push(*e);
        }
        let marginals = by_visible
            .into_iter()
            .map(|(k, es)| (k.into_iter().map(f64::from).collect(), log_sum_exp(&es)))
            .collect();
        (log_z, marginals)
    }

    #[test]
    fn exact_partition_function_matches_brute_force() {
        for (sizes, seed) in [(vec![4, 3], 1), (vec![3, 4, 2], 2), (vec![3, 2, 3, 2], 3)] {
            let dbm = random_dbm(&sizes, 1.0, seed);
            let (log_z, marginals) = brute_force(&dbm);
            let exact = log_partition_exact(&dbm).unwrap();
            assert!(
                (exact - log_z).abs() < 1e-9,
                "{sizes:?}: {exact} vs {log_z}"
            );
            let x = Mat::from_vec(
                marginals.len(),
                sizes[0],
                marginals.iter().flat_map(|(v, _)| v.clone()).collect(),
            );
            let unnormalized = log_unnormalized_exact(&dbm, &x).unwrap();
            for ((_, expected), got) in marginals.iter().zip(unnormalized) {
                assert!((expected - got).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn ais_agrees_with_exact() {
        for (sizes, seed) in [(vec![6, 4], 4), (vec![5, 4, 3], 5), (vec![4, 3, 3, 2], 6)] {
            let dbm = random_dbm(&sizes, 1.0, seed);
            let exact = log_partition_exact(&dbm).unwrap();
            let ais = log_partition_ais(&dbm, &default_temperatures(200), 256, 5, 7).unwrap();
            assert!(
                (ais.log_z - exact).abs() < 0.05,
                "{sizes:?}: {} vs {exact}",
                ais.log_z
            );
            let x = Mat::from_vec(
                2,
                sizes[0],
                (0..2 * sizes[0])
                    .map(|i| (i % 3 == 0) as u8 as f64)
                    .collect(),
            );
            let ll =
                log_likelihood_ais(&dbm, &x, exact, &default_temperatures(100), 128, 5, 3).unwrap();
            let reference = log_unnormalized_exact(&dbm, &x).unwrap();
            for (a, b) in ll.iter().zip(reference) {
                assert!((a - (b - exact)).abs() < 0.05, "{a} vs {}", b - exact);
            }
        }
    }

    #[test]
    fn lower_bound_is_below_exact_log_likelihood() {
        let dbm = random_dbm(&[5, 4, 3], 1.0, 8);
        let log_z = log_partition_exact(&dbm).unwrap();
        let x = Mat::from_vec(
            3,
            5,
            vec![1., 0., 1., 1., 0., 0., 0., 1., 0., 1., 1., 1., 1., 1., 1.],
        );
        let exact = log_unnormalized_exact(&dbm, &x).unwrap();
        let bound = log_prob_lower_bound(&dbm, &x, log_z, 1e-6, 1000);
        for (b, e) in bound.iter().zip(exact) {
            assert!(*b <= e - log_z + 1e-9, "{b} > {}", e - log_z);
        }
    }

    #[test]
    fn gibbs_sampler_reproduces_the_joint_distribution() {
        let sizes = [3, 2, 2];
        let dbm = random_dbm(&sizes, 1.0, 9);
        let (log_z, _) = brute_force(&dbm);
        let n = 20_000;
        let sampler = Sampler::from_dbm(&dbm);
        let mut particles = Particles::random(&sampler, n, 1, Purpose::Sample, 1);
        gibbs_sample(&dbm, &mut particles, 30, 11, None).unwrap();
        let layers: Vec<Vec<u8>> = (0..3).map(|l| particles.unpack(l)).collect();
        let mut counts = vec![0f64; 128];
        for p in 0..n {
            let mut code = 0;
            let mut bit = 0;
            for (l, &size) in sizes.iter().enumerate() {
                for j in 0..size {
                    code |= (layers[l][p * size + j] as usize) << bit;
                    bit += 1;
                }
            }
            counts[code] += 1.0;
        }
        let states = all_states(&sizes);
        let mut chi2 = 0.0;
        for (s, &c) in states.iter().zip(&counts) {
            let expected = n as f64 * (neg_energy(&dbm, s) - log_z).exp();
            chi2 += (c - expected).powi(2) / expected;
        }
        // 127 degrees of freedom: the 99.9% quantile is about 181.
        assert!(chi2 < 181.0, "chi2 = {chi2}");
    }

    #[test]
    fn clamped_units_stay_clamped_and_seeds_repeat() {
        let dbm = random_dbm(&[10, 6, 3], 1.0, 10);
        let sampler = Sampler::from_dbm(&dbm);
        let start = Particles::random(&sampler, 100, 2, Purpose::Sample, 1);
        let mask: Vec<bool> = (0..10).map(|j| j % 3 == 0).collect();
        let mut a = start.clone();
        gibbs_sample(&dbm, &mut a, 7, 5, Some(&mask)).unwrap();
        let (v0, v1) = (start.unpack(0), a.unpack(0));
        for p in 0..100 {
            for j in (0..10).step_by(3) {
                assert_eq!(v0[p * 10 + j], v1[p * 10 + j]);
            }
        }
        let mut b = start.clone();
        gibbs_sample(&dbm, &mut b, 7, 5, Some(&mask)).unwrap();
        assert_eq!(a, b);
        let mut c = start;
        gibbs_sample(&dbm, &mut c, 7, 6, Some(&mask)).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn synchronous_sweeps_read_the_previous_state() {
        // v ↔ h1 copy each other (weights 100·I, bias −50), h2 is disconnected: a blocked sweep
        // (h1 given v, then v given the new h1) leaves v as it was, a synchronous sweep swaps v
        // and h1 (BoltzmannMachines.jl `gibbssample!`).
        let copy = Rbm::new(
            2,
            2,
            vec![100.0, 0.0, 0.0, 100.0],
            vec![-50.0; 2],
            vec![-50.0; 2],
        );
        let top = Rbm::new(2, 1, vec![0.0; 2], vec![0.0; 2], vec![0.0]);
        let dbm = Dbm::new(vec![copy.unwrap(), top.unwrap()]).unwrap();
        let sampler = Sampler::from_dbm(&dbm);
        let (v, h1, h2) = ([1u8, 0, 0, 1], [0u8, 1, 1, 0], [0u8, 1]);
        let start = Particles::pack(&dbm.sizes(), &[&v, &h1, &h2]).unwrap();
        let run = |schedule: Schedule| {
            let mut p = start.clone();
            run_sweeps(
                &sampler,
                &dbm.combined_biases(),
                &mut p,
                1,
                3,
                Purpose::Sample,
                0,
                None,
                schedule,
            )
            .unwrap();
            (p.unpack(0), p.unpack(1))
        };
        assert_eq!(run(Schedule::Blocked), (v.to_vec(), v.to_vec()));
        assert_eq!(run(Schedule::Synchronous), (h1.to_vec(), v.to_vec()));
    }

    /// Two noisy prototypes.
    fn planted(n: usize, p: usize, seed: u64) -> Mat {
        let mut rng = stream(seed, Purpose::Sample, 77, 0);
        let mut data = Vec::with_capacity(n * p);
        for r in 0..n {
            for j in 0..p {
                let on = if r % 2 == 0 { j < p / 2 } else { j >= p / 2 };
                let flip = super::rng::uniform(&mut rng) < 0.1;
                data.push((on != flip) as u8 as f64);
            }
        }
        Mat::from_vec(n, p, data)
    }

    #[test]
    fn training_increases_the_likelihood() {
        let x = planted(200, 8, 1);
        let cfg = RbmTraining {
            epochs: 1,
            learning_rates: vec![0.05; 30],
            batch_size: 10,
            cd_steps: 1,
            pcd: true,
            up_factor: 1.0,
            down_factor: 1.0,
        };
        let mean_ll = |dbm: &Dbm| {
            let z = log_partition_exact(dbm).unwrap();
            let v = log_unnormalized_exact(dbm, &x).unwrap();
            v.iter().sum::<f64>() / v.len() as f64 - z
        };
        let start = fit_rbm(
            x.view(),
            4,
            &RbmTraining {
                epochs: 0,
                ..cfg.clone()
            },
            3,
            0,
            None,
            None,
        )
        .unwrap();
        let before = mean_ll(&Dbm::new(vec![start]).unwrap());
        let rbm = fit_rbm(
            x.view(),
            4,
            &RbmTraining {
                epochs: 30,
                ..cfg.clone()
            },
            3,
            0,
            None,
            None,
        )
        .unwrap();
        let after_rbm = mean_ll(&Dbm::new(vec![rbm]).unwrap());
        assert!(after_rbm > before + 1.0, "{before} → {after_rbm}");
        // DBM: pretraining then fine-tuning.
        let mut dbm = stack_rbms(&x, &[4, 3], &RbmTraining { epochs: 30, ..cfg }, 3, None).unwrap();
        let pretrained = mean_ll(&dbm);
        assert!(pretrained > before, "{before} → {pretrained}");
        let ft = FineTuning {
            learning_rates: decaying_learning_rates(0.05, 30),
            n_particles: 100,
            n_gibbs_sweeps: 5,
            schedule: Schedule::Blocked,
            batch_size: Some(20),
            eps: 1e-3,
            max_iter: 1000,
        };
        fine_tune(&mut dbm, &x, &ft, 4, None).unwrap();
        let tuned = mean_ll(&dbm);
        assert!(tuned > before + 1.0, "{before} → {pretrained} → {tuned}");
    }

    #[test]
    fn mean_field_is_a_fixed_point() {
        let dbm = random_dbm(&[6, 4, 3], 0.5, 12);
        let x = planted(5, 6, 2);
        let (mu, iterations) = mean_field(&dbm, &x, 1e-10, 10_000);
        assert!(iterations < 10_000);
        let top = &dbm.layers[1];
        for r in 0..x.rows {
            for j in 0..4 {
                let mut input = dbm.layers[0].hidden_bias[j] + top.visible_bias[j];
                for i in 0..6 {
                    input += x.row(r)[i] * dbm.layers[0].weight(i, j);
                }
                for k in 0..3 {
                    input += mu[1].row(r)[k] * top.weight(j, k);
                }
                assert!((mu[0].row(r)[j] - dense::sigmoid(input)).abs() < 1e-8);
            }
            // the top layer: its own bias and the middle layer's means only
            for k in 0..3 {
                let mut input = top.hidden_bias[k];
                for j in 0..4 {
                    input += mu[0].row(r)[j] * top.weight(j, k);
                }
                assert!((mu[1].row(r)[k] - dense::sigmoid(input)).abs() < 1e-8);
            }
        }
    }

    #[test]
    fn fast_exponentials_are_accurate() {
        let mut worst64: f64 = 0.0;
        let mut worst32: f64 = 0.0;
        for i in -70_000..=70_000 {
            let x = i as f64 / 100.0;
            worst64 = worst64.max((dense::exp_f64(x) / x.exp() - 1.0).abs());
            if x.abs() < 80.0 {
                let y = gibbs::exp_f32(x as f32) as f64;
                worst32 = worst32.max((y / (x as f32 as f64).exp() - 1.0).abs());
            }
        }
        assert!(worst64 < 3e-15, "{worst64}");
        assert!(worst32 < 3e-7, "{worst32}");
    }

    #[test]
    fn factors_and_errors() {
        assert_eq!(pretraining_factors(0, 3), (2.0, 1.0));
        assert_eq!(pretraining_factors(1, 3), (2.0, 2.0));
        assert_eq!(pretraining_factors(2, 3), (1.0, 2.0));
        assert_eq!(pretraining_factors(0, 1), (2.0, 1.0));
        assert_eq!(pretraining_factors(0, 2), (2.0, 1.0));
        assert_eq!(pretraining_factors(1, 2), (1.0, 2.0));
        let x = Mat::from_vec(2, 2, vec![0.0, 0.5, 1.0, 0.0]);
        assert_eq!(
            check_data(x.view(), 2, true, "x").unwrap_err().kind,
            crate::ErrorKind::InvalidInput
        );
        assert!(check_data(x.view(), 2, false, "x").is_ok());
        assert_eq!(
            check_data(x.view(), 3, false, "x").unwrap_err().kind,
            crate::ErrorKind::ShapeMismatch
        );
        assert!(Rbm::new(2, 2, vec![f64::NAN; 4], vec![0.0; 2], vec![0.0; 2]).is_err());
        let big = random_dbm(&[40, 40], 0.1, 1);
        assert!(log_partition_exact(&big).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod timing {
    use super::gibbs::{gibbs_sample, Particles, Sampler};
    use super::rng::{normal, stream, Purpose};
    use super::*;

    /// `cargo test --release --no-default-features boltzmann::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gibbs_timing() {
        let sizes = [200usize, 100, 20];
        let mut rng = stream(1, Purpose::RbmInit, 0, 0);
        let layers = sizes
            .windows(2)
            .map(|w| {
                let weights = (0..w[0] * w[1]).map(|_| normal(&mut rng) * 0.07).collect();
                Rbm::new(w[0], w[1], weights, vec![0.0; w[0]], vec![0.0; w[1]]).unwrap()
            })
            .collect();
        let dbm = Dbm::new(layers).unwrap();
        let sampler = Sampler::from_dbm(&dbm);
        let mut particles = Particles::random(&sampler, 10_000, 1, Purpose::Sample, 1);
        let t = std::time::Instant::now();
        gibbs_sample(&dbm, &mut particles, 50, 1, None).unwrap();
        eprintln!("gibbs 10000×50: {:?}", t.elapsed());
    }

    #[test]
    #[ignore]
    fn rbm_epoch_timing() {
        use super::dense::Mat;
        use super::rbm::{fit_rbm, RbmTraining};
        let mut rng = stream(2, Purpose::Sample, 0, 0);
        let data = (0..10_000 * 200)
            .map(|_| (super::rng::uniform(&mut rng) < 0.4) as u8 as f64)
            .collect();
        let x = Mat::from_vec(10_000, 200, data);
        let cfg = RbmTraining {
            epochs: 1,
            learning_rates: vec![0.05],
            batch_size: 10,
            cd_steps: 1,
            pcd: true,
            up_factor: 1.0,
            down_factor: 1.0,
        };
        let t = std::time::Instant::now();
        fit_rbm(x.view(), 100, &cfg, 1, 0, None, None).unwrap();
        eprintln!("rbm epoch 10000×200→100, batch 10: {:?}", t.elapsed());
    }
}
