//! Blocking file-system calls on client-chosen paths (discovery, `is_gone`, stats of listed
//! files): run on tokio's blocking pool with a timeout, never on an async worker, so a hung
//! mount costs one blocking thread and a timeout error, not the daemon (on 2 CPUs there is
//! one async worker). A call that timed out keeps its thread until the kernel returns; it
//! cannot be interrupted. This module must not decide what to do about a timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// Too many earlier calls are still stuck in the kernel; no new one is started (so a
    /// hung mount cannot exhaust the blocking pool that store writes and git scans need).
    #[error("{MAX_IN_FLIGHT} file-system calls are still waiting on the kernel (hung mount?)")]
    Saturated,
    /// The blocking task panicked or the runtime is shutting down.
    #[error("a file-system task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// At most this many file-system calls on client paths are in flight at once (a call that
/// timed out still counts until the kernel returns).
pub(crate) const MAX_IN_FLIGHT: usize = 64;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts `f` on the blocking pool, counted against [`MAX_IN_FLIGHT`] until it returns.
pub(crate) fn spawn_fs<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<tokio::task::JoinHandle<T>, FsError> {
    if IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        return Err(FsError::Saturated);
    }
    let slot = Slot;
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f()
    }))
}

/// Runs `f` on the blocking pool, giving up after `timeout`.
pub async fn blocking_fs<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, FsError> {
    match tokio::time::timeout(timeout, spawn_fs(f)?).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(FsError::Task(e)),
        Err(_) => Err(FsError::Timeout(timeout)),
    }
}

/// Like [`blocking_fs`], but at most one call per `busy` flag is in flight: while an earlier
/// one is still running (it timed out and is stuck), answers [`FsError::Busy`] at once.
pub(crate) async fn blocking_fs_single<T: Send + 'static>(
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_call_times_out_and_single_flight_refuses_a_second_one() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = Arc::new(AtomicBool::new(false));
        let t = Duration::from_millis(50);
        let r = blocking_fs_single(&busy, t, move || rx.recv().is_ok()).await;
        assert!(matches!(r, Err(FsError::Timeout(d)) if d == t));
        // The first call is still stuck: no second thread is started.
        let r = blocking_fs_single(&busy, t, || true).await;
        assert!(matches!(r, Err(FsError::Busy)));
        tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(blocking_fs_single(&busy, t, || true).await.unwrap());
        assert_eq!(blocking_fs(t, || 7).await.unwrap(), 7);
    }
}
