//! rayon in forked processes.
//!
//! rayon's global thread pool does not survive `fork`: in a child forked after the pool
//! started (torch `DataLoader` workers, `multiprocessing` with the fork start method), a
//! parallel call would wait forever for threads that do not exist. The Python bindings register
//! a `pthread_atfork` child handler that calls [`disable_parallelism`] (the
//! huggingface-tokenizers approach). From then on [`run`] gives every kernel call a one-thread
//! pool of the child's own, and the narrow-format sampler fills its batches without rayon. The
//! kernels' results do not depend on the number of threads, so the child computes what the
//! parent would.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{CoreError, CoreResult};

static PARALLELISM_DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns off rayon's global pool in this process (called in forked children, where the
/// parent's rayon threads do not exist). Only stores a flag: safe in a `fork` child handler.
pub fn disable_parallelism() {
    PARALLELISM_DISABLED.store(true, Ordering::SeqCst);
}

/// Whether rayon's global pool may be used in this process.
pub fn parallelism_allowed() -> bool {
    !PARALLELISM_DISABLED.load(Ordering::SeqCst)
}

/// Runs `work` as it is where rayon's global pool works, else (in a forked child) in a new
/// pool of one thread, whose parallel calls then run one after the other.
///
/// # Errors
/// [`CoreError`] from `work`, or an invalid-input error when the forked process cannot start a
/// thread.
pub fn run<T: Send>(work: impl FnOnce() -> CoreResult<T> + Send) -> CoreResult<T> {
    if parallelism_allowed() {
        return work();
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| {
            CoreError::invalid(format!(
                "this process was forked after the extension started its threads, and it \
                 cannot start a thread of its own: {e}"
            ))
        })?;
    pool.install(work)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rayon::prelude::*;

    #[test]
    fn run_gives_a_pool_of_one_thread_once_parallelism_is_off() {
        let threads = || {
            Ok((0..4)
                .into_par_iter()
                .map(|_| rayon::current_num_threads())
                .max())
        };
        assert!(super::parallelism_allowed());
        assert_eq!(
            super::run(threads).unwrap(),
            Some(rayon::current_num_threads())
        );
        super::disable_parallelism();
        assert_eq!(super::run(threads).unwrap(), Some(1));
        super::PARALLELISM_DISABLED.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
