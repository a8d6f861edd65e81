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
use std::time::{Duration, Instant};

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

/// How long the worker kept awake by [`with_a_worker_awake`] waits without a job before it
/// goes back to rayon's usual idling (a sleeping worker costs ~20 µs to wake, small against a
/// millisecond of serial work).
pub const AWAKE_IDLE_LIMIT: Duration = Duration::from_millis(1);

/// Runs `work` on a worker thread of the current pool while another worker waits for the
/// parallel jobs `work` spawns without going to sleep, and returns its result.
///
/// An idle rayon worker spins briefly and then sleeps; waking it takes about 20 µs on a virtual
/// machine (measured here: a parallel loop of ten 5 µs jobs after 50 µs of serial work took
/// 46 µs at the median against 26 µs with a worker kept awake). Kernels that alternate short
/// serial sections with many short parallel loops (the log-linear selection: about 50 of them
/// per call) pay that at almost every loop. The waiting worker runs the pool's jobs through
/// [`rayon::yield_now`] as soon as they appear, so nothing waits for it; it stops when `work`
/// returns (or unwinds), or after [`AWAKE_IDLE_LIMIT`] without a job: waiting for `work`
/// inside another job, it could otherwise hold up a concurrent call that waits for that job.
/// In a pool of one thread, or when the job lands on the thread running `work`, nobody waits
/// and `work` runs as it would in [`rayon::scope`].
pub fn with_a_worker_awake<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    /// Tells the waiting worker to stop, also when `work` unwinds.
    struct Finished<'a>(&'a AtomicBool);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let finished = AtomicBool::new(false);
    rayon::scope(|scope| {
        let (here, finished) = (rayon::current_thread_index(), &finished);
        scope.spawn(move |_| {
            if rayon::current_thread_index() == here {
                return;
            }
            let mut last_job = Instant::now();
            while !finished.load(Ordering::Acquire) {
                if rayon::yield_now() == Some(rayon::Yield::Executed) {
                    last_job = Instant::now();
                } else if last_job.elapsed() > AWAKE_IDLE_LIMIT {
                    return;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let _finished = Finished(finished);
        work()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
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

    #[test]
    fn with_a_worker_awake_returns_the_work_and_its_parallel_results() {
        let sum = || (0..10_000u64).into_par_iter().map(|v| v * v).sum::<u64>();
        let expected: u64 = (0..10_000u64).map(|v| v * v).sum();
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let sums = pool.install(|| {
                (0..50)
                    .map(|_| super::with_a_worker_awake(sum))
                    .collect::<Vec<_>>()
            });
            assert!(sums.iter().all(|&s| s == expected), "{threads} threads");
            // nested inside a parallel loop: each call ends although the waiting worker may
            // be the one that runs another call's work
            let nested: Vec<u64> = pool.install(|| {
                (0..8)
                    .into_par_iter()
                    .map(|_| super::with_a_worker_awake(sum))
                    .collect()
            });
            assert!(
                nested.iter().all(|&s| s == expected),
                "{threads} threads, nested"
            );
        }
        // the waiting worker stops when the work unwinds
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let unwound = pool.install(|| {
            std::panic::catch_unwind(|| super::with_a_worker_awake(|| panic!("work failed")))
        });
        assert!(unwound.is_err());
    }
}
