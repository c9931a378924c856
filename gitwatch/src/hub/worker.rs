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
        let t0 = Instant::now();
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
                cfg.scan_observer.observe(t0.elapsed());
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::discover::RepoLocation;
    use crate::scan::Snapshot;

    /// A scan that takes the next of `durations` (0 when none is left); the first scan finds
    /// a change, the rest find none.
    struct Fake {
        t0: Instant,
        starts: Mutex<Vec<u128>>,
        durations: Mutex<VecDeque<Duration>>,
        calls: AtomicU64,
    }

    impl Fake {
        fn new(durations: &[u64]) -> Arc<Self> {
            Arc::new(Self {
                t0: Instant::now(),
                starts: Mutex::default(),
                durations: Mutex::new(durations.iter().map(|s| Duration::from_secs(*s)).collect()),
                calls: AtomicU64::new(0),
            })
        }

        /// When each scan started, in ms since the test began.
        fn starts(&self) -> Vec<u128> {
            self.starts.lock().unwrap().clone()
        }

        async fn at(&self, ms: u64) {
            tokio::time::sleep_until(self.t0 + Duration::from_millis(ms)).await;
        }
    }

    impl Host for Fake {
        async fn is_gone(&self, _repo: &Arc<Repo>) -> Result<bool, FsError> {
            Ok(false)
        }

        async fn scan(&self, _root: &Path, _prev: Option<u64>) -> Result<Outcome, ScanError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            self.starts
                .lock()
                .unwrap()
                .push(self.t0.elapsed().as_millis());
            let d = self
                .durations
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_default();
            tokio::time::sleep(d).await;
            Ok(if n == 0 {
                Outcome::Changed(
                    Snapshot {
                        branch: "main".into(),
                        ..Snapshot::default()
                    },
                    1,
                )
            } else {
                Outcome::Unchanged
            })
        }

        fn removed(&self, _repo: &Arc<Repo>) {}
    }

    fn repo() -> Arc<Repo> {
        Arc::new(Repo {
            loc: RepoLocation {
                root: "/r".into(),
                git_dir: "/r/.git".into(),
                common_dir: "/r/.git".into(),
            },
            trig: watch::channel(0).0,
            fs_trig: watch::channel(0).0,
            state: watch::channel(super::super::RepoState::default()).0,
            subs: Mutex::default(),
            cancel: CancellationToken::new(),
            degraded: AtomicBool::new(false),
            watched: Mutex::default(),
            last_note: AtomicU64::new(0),
            fs_busy: Arc::default(),
        })
    }

    /// Runs a worker on `repo` with the default timing (cooldown 1 s, poll 5 s → 60 s).
    fn spawn(fake: &Arc<Fake>, repo: &Arc<Repo>) -> Arc<Counters> {
        spawn_with(fake, repo, Config::default())
    }

    fn spawn_with(fake: &Arc<Fake>, repo: &Arc<Repo>, cfg: Config) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        let (fake, repo, c) = (fake.clone(), repo.clone(), counters.clone());
        tokio::spawn(async move { run(&*fake, &cfg, &c, repo).await });
        counters
    }

    /// A config whose scan observer records each duration it is told.
    fn observed() -> (Config, Arc<Mutex<Vec<Duration>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let cfg = Config {
            scan_observer: crate::ScanObserver::new(move |d| s.lock().unwrap().push(d)),
            ..Config::default()
        };
        (cfg, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_within_the_cooldown_fold_into_one_scan() {
        let (fake, repo) = (Fake::new(&[]), repo());
        spawn(&fake, &repo);
        for ms in [100, 200, 300] {
            fake.at(ms).await;
            repo.trigger();
        }
        fake.at(3000).await;
        // The first scan at once, then one scan a cooldown after it for all three triggers.
        assert_eq!(fake.starts(), vec![0, 1000]);
        assert_eq!(repo.state.borrow().seq, 2);
        repo.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_trigger_cancels_a_long_scan_once() {
        let (fake, repo) = (Fake::new(&[10, 10]), repo());
        let (cfg, seen) = observed();
        let counters = spawn_with(&fake, &repo, cfg);
        fake.at(500).await;
        repo.trigger();
        // Cancelled a cooldown after it started, restarted at once; the trigger during the
        // restarted scan does not cancel it again: it gets the trailing scan.
        fake.at(1500).await;
        repo.trigger();
        fake.at(12_000).await;
        assert_eq!(fake.starts(), vec![0, 1000, 11_000]);
        assert_eq!(counters.cancelled.load(Ordering::Relaxed), 1);
        assert_eq!(counters.scans.load(Ordering::Relaxed), 3);
        // The observer hears of the two completed scans (10 s, then 0 s), not the cancelled one.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Duration::from_secs(10), Duration::ZERO]
        );
        repo.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_scan_is_not_cancelled() {
        let (fake, repo) = (Fake::new(&[0, 0]), repo());
        let counters = spawn(&fake, &repo);
        fake.at(200).await;
        repo.trigger();
        fake.at(5000).await;
        assert_eq!(fake.starts(), vec![0, 1000]);
        assert_eq!(counters.cancelled.load(Ordering::Relaxed), 0);
        repo.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn the_poll_backs_off_from_5_to_60_seconds_while_nothing_changes() {
        let (fake, repo) = (Fake::new(&[]), repo());
        spawn(&fake, &repo);
        fake.at(200_000).await;
        assert_eq!(
            fake.starts(),
            vec![0, 5000, 15_000, 35_000, 75_000, 135_000, 195_000]
        );
        repo.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_degraded_repo_polls_at_the_minimum() {
        let (fake, repo) = (Fake::new(&[]), repo());
        repo.degraded.store(true, Ordering::Relaxed);
        spawn(&fake, &repo);
        fake.at(21_000).await;
        assert_eq!(fake.starts(), vec![0, 5000, 10_000, 15_000, 20_000]);
        repo.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_system_event_settles_unless_a_notification_comes() {
        let (fake, repo) = (Fake::new(&[]), repo());
        spawn(&fake, &repo);
        fake.at(2000).await;
        repo.fs_trigger();
        fake.at(3500).await;
        repo.fs_trigger();
        fake.at(3540).await;
        repo.trigger();
        fake.at(4000).await;
        // 2000 + FS_SETTLE; the notification at 3540 ends the second wait.
        assert_eq!(fake.starts(), vec![0, 2100, 3540]);
        repo.cancel.cancel();
    }
}
