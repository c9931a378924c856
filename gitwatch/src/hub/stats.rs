//! The git watch's counters for the metrics page: scans started, failed, cancelled and
//! unchanged, and the completed-scan duration histogram. This module must not schedule
//! anything.

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
    /// Completed-scan duration histogram: cumulative counts per upper bound in seconds.
    pub duration_buckets: Vec<(f64, u64)>,
    /// Sum of completed-scan durations, seconds.
    pub duration_sum: f64,
    /// Completed scans.
    pub duration_count: u64,
    /// Repositories with a live worker.
    pub repos_watched: u64,
}

const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The live counters behind [`Stats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) scans: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) unchanged: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Counters {
    /// Records a completed scan's duration.
    pub(super) fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
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
            duration_buckets: BUCKETS
                .iter()
                .zip(c.buckets.iter())
                .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                .collect(),
            duration_sum: c.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            duration_count: c.count.load(Ordering::Relaxed),
            repos_watched: lock(&self.inner.repos).len() as u64,
        }
    }
}
