//! Seeded random streams.
//!
//! Every random draw comes from a ChaCha8 stream keyed by `(seed, purpose, a)` and selected by a
//! stream index (particle chunk, sample, ...), so results depend on the seed and the work split
//! by index, never on the number of threads. Bulk uniforms for Gibbs sweeps come from eight
//! xoshiro128++ lanes seeded from such a stream (vectorisable, ~5× faster than ChaCha8).

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a stream is used for; keeps the streams of different jobs apart.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub(crate) enum Purpose {
    RbmInit = 1,
    RbmEpoch = 2,
    DbmParticles = 3,
    DbmUpdate = 4,
    Sample = 5,
    Ais = 6,
    AisSample = 7,
    FineTuneBatches = 8,
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The ChaCha8 stream `index` of the key derived from `(seed, purpose, a)`.
pub(crate) fn stream(seed: u64, purpose: Purpose, a: u64, index: u64) -> ChaCha8Rng {
    let mut state = seed ^ (purpose as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut key = [0u8; 32];
    let mixed = [
        splitmix(&mut state),
        splitmix(&mut state) ^ a.wrapping_mul(0xA076_1D64_78BD_642F),
        splitmix(&mut state),
        splitmix(&mut state),
    ];
    for (chunk, word) in key.chunks_exact_mut(8).zip(mixed) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

/// Eight xoshiro128++ generators in structure-of-arrays layout (vectorises to one AVX2 lane set).
#[derive(Clone, Debug)]
pub(crate) struct FastUniform {
    s0: [u32; 8],
    s1: [u32; 8],
    s2: [u32; 8],
    s3: [u32; 8],
}

impl FastUniform {
    pub(crate) fn from_rng(rng: &mut ChaCha8Rng) -> Self {
        let mut lanes = [[0u32; 8]; 4];
        for lane in lanes.iter_mut() {
            rng.fill(&mut lane[..]);
        }
        // xoshiro must not start from the all-zero state.
        let zero: Vec<usize> = (0..8)
            .filter(|&l| lanes.iter().all(|lane| lane[l] == 0))
            .collect();
        for l in zero {
            lanes[0][l] = 0x9E37_79B9;
        }
        Self {
            s0: lanes[0],
            s1: lanes[1],
            s2: lanes[2],
            s3: lanes[3],
        }
    }

    /// Eight uniform `u32`.
    #[inline(always)]
    pub(crate) fn next8(&mut self) -> [u32; 8] {
        let mut out = [0u32; 8];
        #[allow(clippy::needless_range_loop)]
        for l in 0..8 {
            out[l] = self.s0[l]
                .wrapping_add(self.s3[l])
                .rotate_left(7)
                .wrapping_add(self.s0[l]);
            let t = self.s1[l] << 9;
            self.s2[l] ^= self.s0[l];
            self.s3[l] ^= self.s1[l];
            self.s1[l] ^= self.s2[l];
            self.s0[l] ^= self.s3[l];
            self.s2[l] ^= t;
            self.s3[l] = self.s3[l].rotate_left(11);
        }
        out
    }

    /// Eight uniforms in [0, 1) with 24-bit resolution.
    #[inline(always)]
    pub(crate) fn next8_f32(&mut self) -> [f32; 8] {
        self.next8().map(|b| (b >> 8) as f32 * (1.0 / 16_777_216.0))
    }
}

/// [`FastUniform`] with its state in AVX2 registers, for kernels that draw many uniforms in a
/// row: the same numbers in the same order as [`FastUniform::next8_f32`].
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::FastUniform;

    pub(crate) struct Lanes {
        s: [__m256i; 4],
    }

    impl Lanes {
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn load(from: &FastUniform) -> Self {
            let lane = |s: &[u32; 8]| _mm256_loadu_si256(s.as_ptr().cast());
            Self {
                s: [
                    lane(&from.s0),
                    lane(&from.s1),
                    lane(&from.s2),
                    lane(&from.s3),
                ],
            }
        }

        /// Write the state back (the stream continues there).
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn store(&self, to: &mut FastUniform) {
            for (dst, src) in [&mut to.s0, &mut to.s1, &mut to.s2, &mut to.s3]
                .into_iter()
                .zip(self.s)
            {
                _mm256_storeu_si256(dst.as_mut_ptr().cast(), src);
            }
        }

        /// Eight uniforms in [0, 1) with 24-bit resolution (xoshiro128++ in eight lanes).
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn next8_f32(&mut self) -> __m256 {
            let [s0, s1, s2, s3] = self.s;
            let sum = _mm256_add_epi32(s0, s3);
            let rotated = _mm256_or_si256(_mm256_slli_epi32(sum, 7), _mm256_srli_epi32(sum, 25));
            let out = _mm256_add_epi32(rotated, s0);
            let t = _mm256_slli_epi32(s1, 9);
            let s2 = _mm256_xor_si256(s2, s0);
            let s3 = _mm256_xor_si256(s3, s1);
            let s1 = _mm256_xor_si256(s1, s2);
            let s0 = _mm256_xor_si256(s0, s3);
            let s2 = _mm256_xor_si256(s2, t);
            let s3 = _mm256_or_si256(_mm256_slli_epi32(s3, 11), _mm256_srli_epi32(s3, 21));
            self.s = [s0, s1, s2, s3];
            let top = _mm256_cvtepi32_ps(_mm256_srli_epi32(out, 8));
            _mm256_mul_ps(top, _mm256_set1_ps(1.0 / 16_777_216.0))
        }
    }
}

/// A uniform f64 in [0, 1) (53 bits) from a ChaCha stream.
#[inline]
pub(crate) fn uniform(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// A standard normal draw (Box–Muller; one value per call, simple and exact enough for
/// weight initialisation).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let u1 = uniform(rng);
        if u1 > 0.0 {
            let u2 = uniform(rng);
            return (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        }
    }
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub(crate) fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}
