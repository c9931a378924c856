//! The per-repo scan scheduler: triggers, file-system settling, cooldown, cancelling a
//! superseded scan once, the scan timeout and the poll backoff. What a scan is, whether the
//! repo is gone and what removal means come from a [`Host`] (the hub; a fake in the tests),
//! so the timing is tested on paused time. This module must not touch the file system.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::Repo;
use super::stats::Counters;
use crate::Config;
use crate::fsio::FsError;
use crate::scan::{Outcome, ScanError};

/// How long a file-system event waits for the rest of its burst (or for the notification of
/// the process that caused it) before its scan starts.
pub(super) const FS_SETTLE: Duration = Duration::from_millis(100);

/// What the worker needs from the hub.
pub(super) trait Host: Send + Sync {
    /// Whether the repo is gone (its root, `.git` or worktree gitdir missing).
    fn is_gone(&self, repo: &Arc<Repo>) -> impl Future<Output = Result<bool, FsError>> + Send;
    /// Scans `root`; `prev` is the last fingerprint.
    fn scan(
        &self,
        root: &Path,
        prev: Option<u64>,
    ) -> impl Future<Output = Result<Outcome, ScanError>> + Send;
    /// The repo is gone: stop watching it and tell its subscribers.
    fn removed(&self, repo: &Arc<Repo>);
}

/// One repo's worker: waits for a trigger, a settled file-system event or the poll, keeps the
/// cooldown, scans through `host` (bounded by the scan timeout; a scan superseded for a full
/// cooldown is cancelled once and restarted), publishes the result and wakes the
/// subscribers. Returns when the repo is cancelled or removed.
pub(super) async fn run(host: &impl Host, cfg: &Config, counters: &Counters, repo: Arc<Repo>) {
    let mut trig = repo.trig.subscribe();
    let mut fs_trig = repo.fs_trig.subscribe();
    let mut pending = true;
    let mut last_start: Option<Instant> = None;
    let mut interval = cfg.poll_min;
    let mut fp: Option<u64> = None;
    let mut last_cancelled = false;
    let root = repo.loc.root.clone();
    loop {
        let mut polled = false;
        if !pending {
            let poll = if repo.degraded.load(Ordering::Relaxed) {
                cfg.poll_min
            } else {
                interval
            };
            tokio::select! {
                _ = repo.cancel.cancelled() => return,
                r = trig.changed() => if r.is_err() { return },
                r = fs_trig.changed() => {
                    if r.is_err() { return }
                    tokio::select! {
                        _ = repo.cancel.cancelled() => return,
                        _ = trig.changed() => {}
                        _ = tokio::time::sleep(FS_SETTLE) => {}
                    }
                }
                _ = tokio::time::sleep(poll) => polled = true,
            }
        }
        pending = false;
        if let Some(t) = last_start {
            let since = t.elapsed();
            if since < cfg.cooldown {
                tokio::select! {
                    _ = repo.cancel.cancelled() => return,
                    _ = tokio::time::sleep(cfg.cooldown - since) => {}
                }
            }
        }
        // Triggers that arrived while waiting are served by this scan.
        trig.borrow_and_update();
        fs_trig.borrow_and_update();
        last_start = Some(Instant::now());
        match host.is_gone(&repo).await {
            Ok(true) => {
                host.removed(&repo);
                return;
            }
            Ok(false) => {}
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(repo = %root.display(), error = %e, "repo check failed; scan skipped");
                continue;
            }
        }
        counters.scans.fetch_add(1, Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        let res = tokio::select! {
            _ = repo.cancel.cancelled() => return,
            r = tokio::time::timeout(cfg.scan_timeout, host.scan(&root, fp)) => Some(r),
            // Cancel a superseded scan once it has run a full cooldown (a short scan
            // finishes and the trailing scan follows), never twice in a row: a steady
            // stream of triggers must not starve snapshots.
            r = async {
                tokio::time::sleep(cfg.cooldown).await;
                tokio::select! {
                    r = trig.changed() => r,
                    r = fs_trig.changed() => r,
                }
            }, if !last_cancelled => { let _ = r; None },
        };
        let Some(res) = res else {
            counters.cancelled.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(repo = %root.display(), "scan superseded by a newer trigger; restarting");
            last_cancelled = true;
            pending = true;
            continue;
        };
        last_cancelled = false;
        match res {
            Ok(Ok(outcome)) => {
                counters.observe(t0.elapsed());
                let changed = match outcome {
                    Outcome::Unchanged => {
                        counters.unchanged.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    Outcome::Changed(snap, f) => {
                        fp = Some(f);
                        let snap = Arc::new(snap);
                        let differs = repo.state.borrow().snap.as_deref() != Some(&*snap);
                        repo.state.send_modify(|s| s.snap = Some(snap));
                        differs
                    }
                };
                interval = if changed {
                    cfg.poll_min
                } else if polled {
                    (interval * 2).min(cfg.poll_max)
                } else {
                    interval
                };
            }
            Ok(Err(e)) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                if matches!(host.is_gone(&repo).await, Ok(true)) {
                    host.removed(&repo);
                    return;
                }
                tracing::warn!(repo = %root.display(), error = %e, "scan repo failed");
                fp = None;
            }
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    repo = %root.display(),
                    timeout_ms = cfg.scan_timeout.as_millis() as u64,
                    "scan repo timed out; its git processes were killed"
                );
                fp = None;
            }
        }
        repo.state.send_modify(|s| {
            s.seq += 1;
            s.scanned_at = Some(SystemTime::now());
        });
        repo.wake_subs();
    }
}
