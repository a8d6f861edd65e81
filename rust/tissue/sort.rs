//! Sorting one gene column together with the group codes of its values.
//!
//! Values are mapped to order-preserving integer keys ([`super::Expr::order_key`]) and sorted
//! as single `u64` words with `sort_unstable_by_key` on the key bits only: comparisons of plain
//! integers, and runs of equal values (the zeros of expression data) are recognised by the
//! pattern-defeating quicksort and cost linear time. The order of equal values is unspecified,
//! which does not matter: the gaps between them are 0.

use super::Expr;

/// Sort an `f32` column: words `order_key << 32 | group`.
pub(crate) fn sort_f32(
    col: &[f32],
    codes: &[u32],
    packed: &mut Vec<u64>,
    xs: &mut [f64],
    groups: &mut [u32],
) {
    packed.clear();
    packed.extend(
        col.iter()
            .zip(codes)
            .map(|(&v, &g)| (v.order_key() << 32) | u64::from(g)),
    );
    packed.sort_unstable_by_key(|&p| (p >> 32) as u32);
    for ((&p, x), g) in packed.iter().zip(xs.iter_mut()).zip(groups.iter_mut()) {
        *x = f32::from_key(p >> 32);
        *g = p as u32;
    }
}

/// Sort an `f64` column: words `order_key` with its low `b` bits replaced by the row index
/// (`2^b ≥ n`), sorted by the truncated key. Values whose keys differ only in those low bits may
/// then be out of order (rare: it needs two values within `2^b` ulps of each other); that is
/// detected while unpacking and repaired by sorting such runs by their exact keys.
pub(crate) fn sort_f64(
    col: &[f64],
    codes: &[u32],
    packed: &mut Vec<u64>,
    xs: &mut [f64],
    groups: &mut [u32],
) {
    let n = col.len();
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    let index_mask = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    packed.clear();
    packed.extend(
        col.iter()
            .enumerate()
            .map(|(i, &v)| (v.order_key() & !index_mask) | i as u64),
    );
    packed.sort_unstable_by_key(|&p| p & !index_mask);
    if !unpack_f64(col, codes, packed, index_mask, xs, groups) {
        let exact = |p: u64| col[(p & index_mask) as usize].order_key();
        let mut start = 0;
        while start < n {
            let truncated = packed[start] & !index_mask;
            let mut end = start + 1;
            while end < n && packed[end] & !index_mask == truncated {
                end += 1;
            }
            if end - start > 1 {
                packed[start..end].sort_unstable_by_key(|&p| exact(p));
            }
            start = end;
        }
        unpack_f64(col, codes, packed, index_mask, xs, groups);
    }
}

/// Write values and group codes in the order of `packed`; returns whether the values are sorted.
fn unpack_f64(
    col: &[f64],
    codes: &[u32],
    packed: &[u64],
    index_mask: u64,
    xs: &mut [f64],
    groups: &mut [u32],
) -> bool {
    let mut sorted = true;
    let mut previous = f64::NEG_INFINITY;
    for ((&p, x), g) in packed.iter().zip(xs.iter_mut()).zip(groups.iter_mut()) {
        let i = (p & index_mask) as usize;
        let v = col[i];
        sorted &= previous <= v;
        previous = v;
        *x = v;
        *g = codes[i];
    }
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn check_f64(col: &[f64]) {
        let n = col.len();
        let codes: Vec<u32> = (0..n as u32).map(|i| i % 7).collect();
        let (mut xs, mut gs, mut packed) = (vec![0.0; n], vec![0; n], Vec::new());
        sort_f64(col, &codes, &mut packed, &mut xs, &mut gs);
        let mut want: Vec<f64> = col.to_vec();
        want.sort_by(f64::total_cmp);
        for (a, b) in xs.iter().zip(&want) {
            assert!(a == b, "{a} != {b}"); // -0.0 == 0.0
        }
        // The (value, group) pairs are a permutation of the input pairs.
        let mut got: Vec<(u64, u32)> = xs.iter().map(|v| v.to_bits()).zip(gs).collect();
        let mut input: Vec<(u64, u32)> = col.iter().map(|v| v.to_bits()).zip(codes).collect();
        got.sort_unstable();
        input.sort_unstable();
        assert_eq!(got, input);
    }

    #[test]
    fn f64_sort_is_exact_when_truncated_keys_collide() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        check_f64(&[]);
        check_f64(&[2.0]);
        check_f64(&[0.0, -0.0, 0.0, -1e-300, 5.0]);
        for n in [3usize, 100, 5000] {
            // Values that differ only in their last mantissa bits, with ties and zeros.
            let col: Vec<f64> = (0..n)
                .map(|_| match rng.random_range(0..4) {
                    0 => 0.0,
                    1 => 1.0 + rng.random_range(0..64) as f64 * f64::EPSILON,
                    2 => -3.0 - rng.random_range(0..8) as f64 * 4.0 * f64::EPSILON,
                    _ => rng.random::<f64>(),
                })
                .collect();
            check_f64(&col);
        }
    }

    #[test]
    fn f32_sort_keeps_pairs() {
        let col = [3.5f32, -0.0, 0.0, -2.0, 3.5, 1e-30];
        let codes = [0u32, 1, 2, 3, 4, 5];
        let (mut xs, mut gs, mut packed) = (vec![0.0; 6], vec![0; 6], Vec::new());
        sort_f32(&col, &codes, &mut packed, &mut xs, &mut gs);
        assert_eq!(xs, [-2.0, 0.0, 0.0, f64::from(1e-30f32), 3.5, 3.5]);
        assert_eq!(gs[0], 3);
        assert_eq!(gs[3], 5);
        let mut tail = [gs[4], gs[5]];
        tail.sort_unstable();
        assert_eq!(tail, [0, 4]);
    }
}
