//! Rust kernels of omicsembed.
//!
//! Each area is a pure-Rust `mod.rs` (tested with `cargo test --no-default-features`) plus a
//! `python.rs` that only converts arguments, releases the GIL and maps errors.

pub mod boltzmann;
pub mod error;
pub mod loglinear;
pub mod sampler;
pub mod tissue;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, ErrorKind};
