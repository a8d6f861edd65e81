//! boltzmann kernels (pure Rust).

#[cfg(feature = "python")]
pub mod python;
