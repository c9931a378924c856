//! The git watch's counters for the metrics page (scans started, failed, cancelled and
//! unchanged) and the [`ScanObserver`] that is told each completed scan's duration. This
//! module must not schedule anything, and keeps no histogram: the daemon does.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::GitWatch;
use crate::sync::lock;

/// Counters for the metrics page.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Scans started (including cancelled ones).
    pub scans_total: u64,
    /// Scans that failed or timed out.
    pub scans_failed: u64,
    /// Scans cancelled because a newer trigger superseded them.
    pub scans_cancelled: u64,
    /// Scans that found the fingerprint unchanged (no diff generated).
    pub scans_unchanged: u64,
    /// Repositories with a live worker.
    pub repos_watched: u64,
}

/// Told the duration of every completed scan (not of failed, timed-out or cancelled ones).
/// Called on the scan worker's task: it must return quickly and never block.
#[derive(Clone)]
pub struct ScanObserver(Arc<dyn Fn(Duration) + Send + Sync>);

impl ScanObserver {
    /// An observer calling `f`.
    pub fn new(f: impl Fn(Duration) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Reports one completed scan.
    pub(super) fn observe(&self, d: Duration) {
        (self.0)(d)
    }
}

impl Default for ScanObserver {
    /// Does nothing.
    fn default() -> Self {
        Self::new(|_| {})
    }
}

impl fmt::Debug for ScanObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScanObserver")
    }
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) scans: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) unchanged: AtomicU64,
}

impl GitWatch {
    /// Counters for the metrics page.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            scans_total: c.scans.load(Ordering::Relaxed),
            scans_failed: c.failed.load(Ordering::Relaxed),
            scans_cancelled: c.cancelled.load(Ordering::Relaxed),
            scans_unchanged: c.unchanged.load(Ordering::Relaxed),
            repos_watched: lock(&self.inner.repos).len() as u64,
        }
    }
}
