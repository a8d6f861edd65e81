//! Log-linear kernels (pure Rust): contingency tables, G², IPF and closed-form fits of
//! hierarchical log-linear models, and the stepwise G² feature selection of Hess, Hackenberg &
//! Binder (2020), "Exploring generative deep learning for omics data using log-linear models",
//! Bioinformatics 36(20):5045–5053, §2.5, following the authors' Julia packages
//! `LogLinearModels.jl` (`freqtab`, `ipf`, `gsquare`) and `PatternsByLogLin.jl` (`bestset`).
//!
//! Tables are dense and in C order (first variable slowest).

pub mod ipf;
pub mod select;
pub mod table;

pub use ipf::{closed_form, decomposable_order, ipf, is_decomposable, IpfFit};
pub use select::{select_features, Binary, Model, SelectOptions, Selection};
pub use table::{contingency_table, g_squared, infer_levels};

#[cfg(feature = "python")]
pub mod python;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::error::ErrorKind;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_binary(n: usize, cols: usize, prob: f64, seed: u64) -> Vec<u8> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * cols).map(|_| rng.random_bool(prob) as u8).collect()
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn contingency_table_counts_cells_in_c_order() {
        // rows (a, b, c) with levels (2, 3, 2)
        let data = [0u8, 2, 1, 1, 0, 0, 0, 2, 1, 1, 1, 1];
        let (levels, counts) = contingency_table(&data, 4, 3, Some(&[2, 3, 2])).unwrap();
        assert_eq!(levels, vec![2, 3, 2]);
        let mut expected = vec![0u64; 12];
        expected[5] = 2; // (0, 2, 1) = 0·6 + 2·2 + 1
        expected[6] = 1; // (1, 0, 0)
        expected[9] = 1; // (1, 1, 1)
        assert_eq!(counts, expected);
        // inferred levels: at least 2, else max + 1
        let (levels, _) = contingency_table(&data, 4, 3, None).unwrap();
        assert_eq!(levels, vec![2, 3, 2]);
    }

    #[test]
    fn contingency_table_rejects_values_outside_levels() {
        let data = [0u8, 1, 1, 0, 0, 2];
        let err = contingency_table(&data, 3, 2, Some(&[2, 2])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("row 2, column 1"), "{}", err.message);
        let err = contingency_table(&data, 2, 2, None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ShapeMismatch);
        let err = contingency_table(&data, 3, 2, Some(&[2])).unwrap_err();
        assert_eq!(err.kind, ErrorKind::ShapeMismatch);
    }

    #[test]
    fn g_squared_hand_example() {
        // 2 × 2 table [[10, 20], [30, 40]] under independence: m = row·col / N
        let n = [10.0, 20.0, 30.0, 40.0];
        let m = [12.0, 18.0, 28.0, 42.0];
        let expected = 2.0
            * (10.0 * (10.0f64 / 12.0).ln()
                + 20.0 * (20.0f64 / 18.0).ln()
                + 30.0 * (30.0f64 / 28.0).ln()
                + 40.0 * (40.0f64 / 42.0).ln());
        assert!(close(g_squared(&n, &m).unwrap(), expected, 1e-14));
        // zero cells do not contribute; n > 0 with m = 0 is infinite
        assert_eq!(g_squared(&[0.0, 1.0], &[5.0, 1.0]).unwrap(), 0.0);
        assert!(g_squared(&[1.0], &[0.0]).unwrap().is_infinite());
        assert_eq!(
            g_squared(&[1.0], &[1.0, 2.0]).unwrap_err().kind,
            ErrorKind::ShapeMismatch
        );
        assert_eq!(
            g_squared(&[-1.0], &[1.0]).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
    }

    fn random_table(cells: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..cells).map(|_| rng.random_range(0..30) as f64).collect()
    }

    #[test]
    fn closed_form_equals_ipf_on_decomposable_models() {
        let levels = [2, 3, 2, 2];
        let table = random_table(24, 7);
        for margins in [
            vec![vec![0], vec![1]],
            vec![vec![0, 1], vec![2]],
            vec![vec![0, 1], vec![1, 2]],
            vec![vec![0, 1], vec![1, 2], vec![2, 3]],
            vec![vec![0, 1, 2], vec![1, 2, 3]],
            vec![vec![3], vec![0, 2]],
            vec![],
        ] {
            let cf = closed_form(&table, &levels, &margins).unwrap();
            let fit = ipf(&table, &levels, &margins, 1e-12, 100).unwrap();
            assert!(fit.converged);
            for (a, b) in cf.iter().zip(&fit.fitted) {
                assert!(close(*a, *b, 1e-12), "{margins:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn decomposability() {
        let cases = [
            (vec![vec![0, 1], vec![1, 2]], true),
            (vec![vec![0, 1], vec![1, 2], vec![0, 2]], false),
            (vec![vec![0, 1], vec![1, 2], vec![2, 3], vec![3, 0]], false),
            (vec![vec![0, 1, 2], vec![1, 2, 3]], true),
            (vec![vec![0, 1, 2], vec![0, 1], vec![3]], true),
            (
                vec![vec![0, 1, 2], vec![0, 1], vec![1, 2], vec![0, 2]],
                true,
            ),
        ];
        for (margins, expected) in cases {
            assert_eq!(
                is_decomposable(&margins, 4).unwrap(),
                expected,
                "{margins:?}"
            );
        }
        assert_eq!(
            closed_form(&[1.0; 8], &[2, 2, 2], &[vec![0, 1], vec![1, 2], vec![0, 2]])
                .unwrap_err()
                .kind,
            ErrorKind::InvalidInput
        );
        assert_eq!(
            is_decomposable(&[vec![0, 4]], 4).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        // variables outside every generator cost nothing (this took minutes when all of
        // 0..d were visited)
        assert!(is_decomposable(&[vec![0], vec![1 << 40]], 1 << 41).unwrap());
        // a finite total whose margins' product overflows: the ratio comes first
        let fit = closed_form(&[1e200; 4], &[2, 2], &[vec![0], vec![1]]).unwrap();
        assert!(
            fit.iter().all(|&f| (f / 1e200 - 1.0).abs() < 1e-12),
            "{fit:?}"
        );
        // a total past float64 is an error, not NaN fitted values reported as converged
        let huge = [1e308; 4];
        for result in [
            ipf(&huge, &[2, 2], &[vec![0], vec![1]], 1e-10, 100).map(|fit| fit.fitted),
            closed_form(&huge, &[2, 2], &[vec![0], vec![1]]),
        ] {
            assert_eq!(result.unwrap_err().kind, ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn ipf_no_three_way_interaction_matches_margins() {
        let levels = [2, 2, 3];
        let table = random_table(12, 3);
        let margins = [vec![0, 1], vec![1, 2], vec![0, 2]];
        let fit = ipf(&table, &levels, &margins, 1e-11, 1000).unwrap();
        assert!(fit.converged && fit.iterations > 2);
        // fitted two-way margins equal the observed ones
        for (a, b) in [(0, 1), (1, 2), (0, 2)] {
            let mut obs = [0.0; 9];
            let mut fitm = [0.0; 9];
            for (c, &value) in table.iter().enumerate() {
                let idx = [c / 6, (c / 3) % 2, c % 3];
                obs[idx[a] * 3 + idx[b]] += value;
                fitm[idx[a] * 3 + idx[b]] += fit.fitted[c];
            }
            for (o, f) in obs.iter().zip(&fitm) {
                assert!((o - f).abs() < 1e-9);
            }
        }
        // a cap of one cycle does not converge and says so
        let capped = ipf(&table, &levels, &margins, 1e-11, 1).unwrap();
        assert!(!capped.converged && capped.iterations == 1);
    }

    /// G² of the candidate table (U_j, S…, X_i) computed the slow way: dense table, 0.5 fill,
    /// IPF of the model, g_squared.
    #[allow(clippy::too_many_arguments)]
    fn naive_g2(
        x: &[u8],
        u: Option<&[u8]>,
        n: usize,
        p: usize,
        r: usize,
        selected: &[usize],
        i: usize,
        j: usize,
        model: Model,
    ) -> f64 {
        let mut cols: Vec<Vec<u8>> = Vec::new();
        if let Some(u) = u {
            cols.push((0..n).map(|t| u[t * r + j]).collect());
        }
        for &f in selected {
            cols.push((0..n).map(|t| x[t * p + f]).collect());
        }
        cols.push((0..n).map(|t| x[t * p + i]).collect());
        let q = cols.len();
        let data: Vec<u8> = (0..n)
            .flat_map(|t| cols.iter().map(move |c| c[t]))
            .collect();
        let (levels, counts) = contingency_table(&data, n, q, Some(&vec![2; q])).unwrap();
        let filled: Vec<f64> = counts
            .iter()
            .map(|&c| if c == 0 { 0.5 } else { c as f64 })
            .collect();
        let s: Vec<usize> = (usize::from(u.is_some())..q - 1).collect();
        let margins = match (u.is_some(), model) {
            (true, Model::Marginal) => vec![(0..q - 1).collect::<Vec<_>>(), vec![q - 1]],
            (true, Model::Conditional) => {
                vec![
                    (0..q - 1).collect(),
                    s.iter().copied().chain([q - 1]).collect(),
                ]
            }
            (false, _) => vec![s.clone(), vec![q - 1]],
        };
        let fit = ipf(&filled, &levels, &margins, 1e-12, 1000).unwrap();
        g_squared(&filled, &fit.fitted).unwrap()
    }

    #[test]
    fn selection_matches_dense_ipf() {
        let (n, p, r) = (150, 7, 3);
        let x = random_binary(n, p, 0.4, 11);
        let u = random_binary(n, r, 0.5, 12);
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let ub = Binary::new(&u, n, r, "U").unwrap();
        for model in [Model::Marginal, Model::Conditional] {
            let options = SelectOptions {
                k: 4,
                model,
                n_permutations: 0,
                seed: 0,
            };
            let sel = select_features(&xb, Some(&ub), &options).unwrap();
            for step in 0..4 {
                let before = &sel.selected[..step];
                for i in 0..p {
                    for j in 0..r {
                        let got = sel.scores[step * p * r + i * r + j];
                        if before.contains(&i) {
                            assert!(got.is_nan());
                            continue;
                        }
                        let want = naive_g2(&x, Some(&u), n, p, r, before, i, j, model);
                        assert!(
                            close(got, want, 1e-9),
                            "{model:?} {step} {i} {j}: {got} {want}"
                        );
                    }
                    if !before.contains(&i) {
                        let slow =
                            select::feature_scores(&xb, Some(&ub), before, i, model).unwrap();
                        for (j, &want) in slow.iter().enumerate() {
                            let got = sel.scores[step * p * r + i * r + j];
                            assert!(close(got, want, 1e-10));
                        }
                    }
                }
                let (i, j) = (sel.selected[step], sel.latent_units[step].unwrap());
                assert_eq!(sel.g2[step], sel.scores[step * p * r + i * r + j]);
            }
        }
    }

    #[test]
    fn selection_without_latent_units_starts_from_best_pair() {
        let (n, p) = (120, 6);
        let x = random_binary(n, p, 0.5, 5);
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let options = SelectOptions {
            k: 4,
            model: Model::Marginal,
            n_permutations: 0,
            seed: 0,
        };
        let sel = select_features(&xb, None, &options).unwrap();
        assert_eq!(sel.r, 1);
        // the pair: best [X_i][X_k] over all pairs, first i then first k on ties
        let mut best = (f64::NEG_INFINITY, 0, 0);
        for i in 0..p {
            for k in 0..p {
                if k != i {
                    let g = naive_g2(&x, None, n, p, 0, &[i], k, 0, Model::Marginal);
                    if g > best.0 + 1e-9 {
                        best = (g, i, k);
                    }
                }
            }
        }
        assert_eq!(&sel.selected[..2], &[best.1, best.2]);
        assert!(close(sel.g2[0], best.0, 1e-9) && close(sel.g2[1], best.0, 1e-9));
        for step in 2..4 {
            let before = &sel.selected[..step];
            for i in (0..p).filter(|i| !before.contains(i)) {
                let want = naive_g2(&x, None, n, p, 0, before, i, 0, Model::Marginal);
                assert!(close(sel.scores[step * p + i], want, 1e-9));
            }
        }
        assert!(sel.latent_units.iter().all(Option::is_none));
    }

    #[test]
    fn planted_feature_is_selected_first_and_significant() {
        let (n, p, r) = (400, 20, 4);
        let mut x = random_binary(n, p, 0.5, 21);
        let u = random_binary(n, r, 0.5, 22);
        for t in 0..n {
            x[t * p + 13] = u[t * r + 2]; // feature 13 copies latent unit 2
        }
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let ub = Binary::new(&u, n, r, "U").unwrap();
        let options = SelectOptions {
            k: 3,
            model: Model::Marginal,
            n_permutations: 99,
            seed: 1,
        };
        let sel = select_features(&xb, Some(&ub), &options).unwrap();
        assert_eq!((sel.selected[0], sel.latent_units[0]), (13, Some(2)));
        let p_values = sel.p_values.unwrap();
        assert!((p_values[0] - 0.01).abs() < 1e-12);
        // p = (1 + #{G²_perm ≥ G²_obs}) / (B + 1): a whole number of hundredths from 0.01 on
        for &v in &p_values[1..] {
            let hundredths = v * 100.0;
            assert!((hundredths - hundredths.round()).abs() < 1e-9, "{v}");
            assert!((1.0..=100.0).contains(&hundredths.round()), "{v}");
        }
    }

    #[test]
    fn ties_go_to_first_feature_then_first_unit() {
        let (n, r) = (64, 3);
        let u = random_binary(n, r, 0.5, 2);
        // features 1 and 2 both copy unit 1; feature 0 and 3 are constant
        let mut x = vec![0u8; n * 4];
        for t in 0..n {
            x[t * 4 + 1] = u[t * r + 1];
            x[t * 4 + 2] = u[t * r + 1];
        }
        // unit 2 duplicates unit 1 as well
        let mut u2 = u.clone();
        for t in 0..n {
            u2[t * r + 2] = u[t * r + 1];
        }
        let xb = Binary::new(&x, n, 4, "X").unwrap();
        let ub = Binary::new(&u2, n, r, "U").unwrap();
        let options = SelectOptions {
            k: 1,
            model: Model::Marginal,
            n_permutations: 0,
            seed: 0,
        };
        let sel = select_features(&xb, Some(&ub), &options).unwrap();
        assert_eq!((sel.selected[0], sel.latent_units[0]), (1, Some(1)));
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let (n, p, r) = (300, 40, 5);
        let x = random_binary(n, p, 0.3, 8);
        let u = random_binary(n, r, 0.5, 9);
        let xb = Binary::new(&x, n, p, "X").unwrap();
        let ub = Binary::new(&u, n, r, "U").unwrap();
        let options = SelectOptions {
            k: 3,
            model: Model::Conditional,
            n_permutations: 20,
            seed: 4,
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| select_features(&xb, Some(&ub), &options).unwrap())
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.selected, b.selected);
        assert_eq!(a.p_values, b.p_values);
        assert!(a
            .scores
            .iter()
            .zip(&b.scores)
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn selection_errors_are_typed() {
        let x = [0u8, 1, 2, 0];
        assert_eq!(
            Binary::new(&x, 2, 2, "X").unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        let x = [0u8, 1, 1, 0];
        let xb = Binary::new(&x, 2, 2, "X").unwrap();
        let u = [1u8, 0, 1];
        let ub = Binary::new(&u, 3, 1, "U").unwrap();
        let mut options = SelectOptions {
            k: 3,
            model: Model::Marginal,
            n_permutations: 0,
            seed: 0,
        };
        assert_eq!(
            select_features(&xb, None, &options).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        options.k = 1;
        assert_eq!(
            select_features(&xb, Some(&ub), &options).unwrap_err().kind,
            ErrorKind::ShapeMismatch
        );
        options.model = Model::Conditional;
        assert_eq!(
            select_features(&xb, None, &options).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
    }
}
