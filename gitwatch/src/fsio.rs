//! Blocking file-system calls on client-chosen paths (discovery, `is_gone`, stats of listed
//! files): run on tokio's blocking pool with a timeout, never on an async worker, so a hung
//! mount costs one blocking thread and a timeout error, not the daemon (on 2 CPUs there is
//! one async worker). A call that timed out keeps its thread until the kernel returns; it
//! cannot be interrupted. This module must not decide what to do about a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A blocking file-system call that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The call did not return in time (a hung or very slow mount).
    #[error("a file-system call did not finish within {} ms (hung mount?)", .0.as_millis())]
    Timeout(Duration),
    /// The previous call for the same thing is still stuck in the kernel; no new one is
    /// started (so a hung mount cannot pile up blocking threads).
    #[error("a previous file-system call on this path has not returned yet (hung mount?)")]
    Busy,
    /// The blocking task panicked or the runtime is shutting down.
    #[error("a file-system task failed: {0}")]
    Task(String),
}

/// Runs `f` on the blocking pool, giving up after `timeout`.
pub async fn blocking_fs<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FsError> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FsError::Task(e.to_string())),
        Err(_) => Err(FsError::Timeout(timeout)),
    }
}

/// Like [`blocking_fs`], but at most one call per `busy` flag is in flight: while an earlier
/// one is still running (it timed out and is stuck), answers [`FsError::Busy`] at once.
pub async fn blocking_fs_single<T: Send + 'static>(
    busy: &Arc<AtomicBool>,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FsError> {
    if busy.swap(true, Ordering::AcqRel) {
        return Err(FsError::Busy);
    }
    let flag = busy.clone();
    blocking_fs(timeout, move || {
        let v = f();
        flag.store(false, Ordering::Release);
        v
    })
    .await
}
