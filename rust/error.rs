//! One error type for every kernel; `python.rs` at the crate root maps each kind to a Python
//! exception class exactly once.

use std::fmt;

/// What went wrong, independent of where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A value is out of its domain (NaN/inf, negative, bad label, empty or single group ...).
    InvalidInput,
    /// Arrays whose shapes do not agree.
    ShapeMismatch,
    /// An iterative method did not converge.
    Convergence,
}

/// A kernel error: a kind plus a message that says what, where and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl CoreError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::InvalidInput,
            message: message.into(),
        }
    }
    pub fn shape(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::ShapeMismatch,
            message: message.into(),
        }
    }
    pub fn convergence(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Convergence,
            message: message.into(),
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;
