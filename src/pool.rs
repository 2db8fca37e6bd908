//! lverse's own rayon pool, shared by all of its CPU work (image decoding, VQ search, tokenizer
//! batches): nothing in lverse uses rayon's global pool.
//!
//! It has as many threads as libtorch's intra-op setting (`torch.get_num_threads()`), so
//! `torch.set_num_threads(n)` bounds lverse's work too and the two never ask for more than
//! the cores torch was given; libtorch's workers are idle while it runs.
//!
//! Threads do not survive `fork()` (DataLoader workers): a pool made in a parent process is
//! abandoned (never touched or dropped) in a child, which makes its own.

use rayon::{ThreadPool, ThreadPoolBuilder};
use std::sync::{Arc, Mutex};

struct Cached {
    pid: u32,
    threads: usize,
    pool: Arc<ThreadPool>,
}

static POOL: Mutex<Option<Cached>> = Mutex::new(None);

fn pool() -> Option<Arc<ThreadPool>> {
    let threads = usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1);
    let pid = std::process::id();
    let mut cached = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(c) = cached.as_ref() {
        if c.pid == pid && c.threads == threads {
            return Some(c.pool.clone());
        }
    }
    if let Some(old) = cached.take() {
        if old.pid != pid {
            // Made before a fork: its threads do not exist here, so leave it alone.
            std::mem::forget(old);
        }
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lverse-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *cached = Some(Cached {
        pid,
        threads,
        pool: pool.clone(),
    });
    Some(pool)
}

/// Runs `work` inside the pool, so that its rayon iterators use it (or, if no thread
/// could be started, on the calling thread's current pool).
pub(crate) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}
