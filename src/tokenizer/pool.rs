//! The threads of batch encoding and training.
//!
//! A pool of our own rather than rayon's global one, because threads do not survive
//! `fork()` (DataLoader workers): a pool made before a fork is abandoned (never touched or
//! dropped) in the child, which makes its own. Its size follows libtorch's intra-op thread
//! count, so `torch.set_num_threads(n)` bounds the tokenizer too.

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
            // Made before a fork: its threads do not exist here.
            std::mem::forget(old);
        }
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("lverse-tokenizer-{i}"))
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
pub(super) fn install<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(work),
        None => work(),
    }
}
