//! Work on several items at once (the layers of a pull, the blobs of a push), on a few
//! threads, stopping at the first error.
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Calls `work(index, item)` for each item on up to `threads` threads; no new item is
/// started once one failed, and the first error is returned.
pub fn each<T: Sync>(items: &[T], threads: usize, work: impl Fn(usize, &T) -> Result<()> + Sync) -> Result<()> {
    let next = Mutex::new(items.iter().enumerate());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let Some((i, item)) = next.lock().unwrap().next() else {
                    return;
                };
                if let Err(e) = work(i, item) {
                    failed.store(true, Ordering::Relaxed);
                    first_error.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    match first_error.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
