//! Scan scheduling shared by every subscriber: one worker task per watched repository,
//! woken by triggers (path-store notifications, `refresh`, file-system events on `.git/HEAD`,
//! `.git/index`, refs and the paths chats touched) and by a fallback poll that backs off
//! while nothing changes. A file-system event first waits [`FS_SETTLE`] for the rest of its
//! burst (a notification or `refresh` ends the wait), so the exit notification of a process
//! that just wrote a watched file is served by the same scan. At most one scan starts per
//! repo per cooldown, with a guaranteed trailing scan; a scan still running a cooldown after
//! a newer trigger arrived is cancelled (its git processes are killed) and restarted at once;
//! every scan has a timeout.
//!
//! [`Subscription`] turns the workers' shared snapshots into per-connection updates with
//! Coder's delta semantics. This module must not know HTTP or WebSocket.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::Config;
use crate::discover::{self, RepoLocation};
use crate::pathstore::PathStore;
use crate::scan::{self, Outcome, Snapshot};

/// One repository's entry in an [`Update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoChange {
    /// The worktree root.
    pub repo_root: PathBuf,
    /// Short branch name (empty when detached, unborn-unknown, or removed).
    pub branch: String,
    /// `remote.origin.url` (empty when none or removed).
    pub remote_origin: String,
    /// The unified diff (empty when clean or removed).
    pub unified_diff: String,
    /// The repository vanished; it is no longer watched by this subscription.
    pub removed: bool,
}

/// What a subscription has to say after one or more scans.
#[derive(Debug, Clone)]
pub struct Update {
    /// When the newest contributing scan finished; never decreases per subscription.
    pub scanned_at: SystemTime,
    /// Repos whose snapshot differs from the last one given to this subscription, plus
    /// removals. Empty for a heartbeat.
    pub repositories: Vec<RepoChange>,
    /// The chat touched more repositories than a subscription follows
    /// ([`Config::max_repos`]): only the most recently touched ones are watched.
    pub truncated: bool,
}

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

/// How long a file-system event waits for the rest of its burst (or for the notification of
/// the process that caused it) before its scan starts.
const FS_SETTLE: Duration = Duration::from_millis(100);

const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Counters {
    scans: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    unchanged: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Counters {
    fn observe(&self, d: Duration) {
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

/// The watcher. Cheap to clone; [`GitWatch::shutdown`] stops every worker.
#[derive(Clone)]
pub struct GitWatch {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    paths: PathStore,
    repos: Mutex<HashMap<PathBuf, Arc<Repo>>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    fs: Option<FsWatch>,
    counters: Counters,
}

#[derive(Debug, Clone, Default)]
struct RepoState {
    seq: u64,
    scanned_at: Option<SystemTime>,
    snap: Option<Arc<Snapshot>>,
    removed: bool,
}

struct Repo {
    loc: RepoLocation,
    /// Bumped by notifications, `refresh` and new subscribers; the worker watches it.
    trig: watch::Sender<u64>,
    /// Bumped by file-system events; the worker watches it, after [`FS_SETTLE`].
    fs_trig: watch::Sender<u64>,
    state: watch::Sender<RepoState>,
    /// Subscription wakers.
    subs: Mutex<Vec<Arc<Notify>>>,
    cancel: CancellationToken,
    /// File-system watches failed: poll at the minimum interval, no backoff.
    degraded: AtomicBool,
    /// Touched paths already routed to the fs watcher.
    watched: Mutex<BTreeSet<PathBuf>>,
    /// The latest path-store notification id that triggered a scan: every subscriber sees a
    /// notification, the repo scans for it once.
    last_note: AtomicU64,
    /// A file-system check of this repo is in flight (a stuck one blocks new ones).
    fs_busy: Arc<AtomicBool>,
}

impl Repo {
    fn trigger(&self) {
        self.trig.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Triggers a scan for path-store notification `note` unless one was already triggered
    /// for it (or a later one) by another subscriber.
    fn trigger_for_note(&self, note: u64) {
        if self.last_note.fetch_max(note, Ordering::Relaxed) < note {
            self.trigger();
        }
    }

    fn fs_trigger(&self) {
        self.fs_trig.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn wake_subs(&self) {
        for s in self
            .subs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            s.notify_one();
        }
    }
}

impl GitWatch {
    /// Starts the watcher (no workers run until something subscribes). Must be called inside
    /// a tokio runtime.
    pub fn new(cfg: Config) -> Self {
        let fs = FsWatch::new();
        let paths = PathStore::with_limits(cfg.path_limits);
        Self {
            inner: Arc::new(Inner {
                cfg,
                paths,
                repos: Mutex::default(),
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                fs,
                counters: Counters::default(),
            }),
        }
    }

    /// The per-chat path store (feed it from process exits and file endpoints).
    pub fn paths(&self) -> &PathStore {
        &self.inner.paths
    }

    /// Subscribes a client. With a chat, the subscription follows the chat's paths; without
    /// one it watches nothing (Coder's behaviour without `chat_id`).
    pub fn subscribe(&self, chat: Option<Uuid>) -> Subscription {
        let paths_rx = chat.map(|c| self.inner.paths.subscribe(c));
        Subscription {
            hub: self.inner.clone(),
            chat,
            wake: Arc::new(Notify::new()),
            repos: BTreeMap::new(),
            paths_rx,
            paths_dirty: chat.is_some(),
            last_at: None,
            truncated: false,
            pending: None,
        }
    }

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
            repos_watched: self
                .inner
                .repos
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len() as u64,
        }
    }

    /// Stops every worker (killing running git processes) and waits for them, bounded.
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(timeout, self.inner.tasks.wait()).await;
    }
}

impl Inner {
    /// Attaches a subscription's waker to the repo at `loc`, starting its worker if needed.
    fn attach(self: &Arc<Self>, loc: RepoLocation, waker: &Arc<Notify>) -> Arc<Repo> {
        let mut repos = self.repos.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = repos.get(&loc.root)
            && !r.cancel.is_cancelled()
        {
            r.subs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(waker.clone());
            // A new subscriber needs a fresh scan for its first update.
            r.trigger();
            return r.clone();
        }
        let repo = Arc::new(Repo {
            loc: loc.clone(),
            trig: watch::channel(0).0,
            fs_trig: watch::channel(0).0,
            state: watch::channel(RepoState::default()).0,
            subs: Mutex::new(vec![waker.clone()]),
            cancel: self.cancel.child_token(),
            degraded: AtomicBool::new(self.fs.is_none()),
            watched: Mutex::default(),
            last_note: AtomicU64::new(0),
            fs_busy: Arc::default(),
        });
        repos.insert(loc.root.clone(), repo.clone());
        drop(repos);
        if self.fs.is_some() {
            let routes = vec![
                (loc.git_dir.clone(), Some(OsString::from("HEAD"))),
                (loc.git_dir.clone(), Some(OsString::from("index"))),
                (loc.common_dir.clone(), Some(OsString::from("packed-refs"))),
                (loc.common_dir.join("refs/heads"), None),
                (loc.root.clone(), Some(OsString::from(".git"))),
            ];
            self.add_watches(&repo, routes);
        }
        let hub = self.clone();
        let r = repo.clone();
        self.tasks.spawn(async move { hub.run_worker(r).await });
        repo
    }

    /// Adds inotify watches on the blocking pool (adding one looks the path up: a hung
    /// mount must not stall an async worker). A failure degrades the repo to polling.
    fn add_watches(self: &Arc<Self>, repo: &Arc<Repo>, routes: Vec<(PathBuf, Option<OsString>)>) {
        if routes.is_empty() || self.fs.is_none() {
            return;
        }
        let hub = self.clone();
        let repo = repo.clone();
        self.tasks.spawn_blocking(move || {
            if let Some(fs) = &hub.fs
                && !fs.add(&repo, routes)
            {
                repo.degraded.store(true, Ordering::Relaxed);
            }
        });
    }

    /// `is_gone` on the blocking pool, bounded; at most one in flight per repo.
    async fn is_gone(&self, repo: &Arc<Repo>) -> Result<bool, crate::FsError> {
        let root = repo.loc.root.clone();
        crate::fsio::blocking_fs_single(&repo.fs_busy, self.cfg.fs_timeout, move || {
            discover::is_gone(&root)
        })
        .await
    }

    /// Removes a subscription's waker; the last one out stops the worker.
    fn detach(self: &Arc<Self>, repo: &Arc<Repo>, waker: &Arc<Notify>) {
        let mut repos = self.repos.lock().unwrap_or_else(PoisonError::into_inner);
        let empty = {
            let mut subs = repo.subs.lock().unwrap_or_else(PoisonError::into_inner);
            subs.retain(|s| !Arc::ptr_eq(s, waker));
            subs.is_empty()
        };
        if empty {
            repo.cancel.cancel();
            if repos
                .get(&repo.loc.root)
                .is_some_and(|r| Arc::ptr_eq(r, repo))
            {
                repos.remove(&repo.loc.root);
            }
            drop(repos);
            self.remove_watches(repo);
        }
    }

    /// Removes a repo's watches on the blocking pool (behind the watcher lock a stuck
    /// `add` may be waiting on a hung mount).
    fn remove_watches(self: &Arc<Self>, repo: &Arc<Repo>) {
        if self.fs.is_none() {
            return;
        }
        let hub = self.clone();
        let repo = repo.clone();
        self.tasks.spawn_blocking(move || {
            if let Some(fs) = &hub.fs {
                fs.remove(&repo);
            }
        });
    }

    async fn run_worker(self: Arc<Self>, repo: Arc<Repo>) {
        let cfg = &self.cfg;
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
            match self.is_gone(&repo).await {
                Ok(true) => {
                    self.publish_removed(&repo);
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(repo = %root.display(), error = %e, "repo check failed; scan skipped");
                    continue;
                }
            }
            self.counters.scans.fetch_add(1, Ordering::Relaxed);
            let t0 = Instant::now();
            let res = tokio::select! {
                _ = repo.cancel.cancelled() => return,
                r = tokio::time::timeout(cfg.scan_timeout, scan::scan(cfg, &root, fp)) => Some(r),
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
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(repo = %root.display(), "scan superseded by a newer trigger; restarting");
                last_cancelled = true;
                pending = true;
                continue;
            };
            last_cancelled = false;
            match res {
                Ok(Ok(outcome)) => {
                    self.counters.observe(t0.elapsed());
                    let changed = match outcome {
                        Outcome::Unchanged => {
                            self.counters.unchanged.fetch_add(1, Ordering::Relaxed);
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
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    if matches!(self.is_gone(&repo).await, Ok(true)) {
                        self.publish_removed(&repo);
                        return;
                    }
                    tracing::warn!(repo = %root.display(), error = %e, "scan repo failed");
                    fp = None;
                }
                Err(_) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
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

    fn publish_removed(self: &Arc<Self>, repo: &Arc<Repo>) {
        tracing::info!(repo = %repo.loc.root.display(), "repository removed; no longer watched");
        {
            let mut repos = self.repos.lock().unwrap_or_else(PoisonError::into_inner);
            if repos
                .get(&repo.loc.root)
                .is_some_and(|r| Arc::ptr_eq(r, repo))
            {
                repos.remove(&repo.loc.root);
            }
        }
        repo.cancel.cancel();
        self.remove_watches(repo);
        repo.state.send_modify(|s| {
            s.seq += 1;
            s.scanned_at = Some(SystemTime::now());
            s.removed = true;
            s.snap = None;
        });
        repo.wake_subs();
    }
}

struct Attached {
    repo: Arc<Repo>,
    seen_seq: u64,
    sent: Option<Arc<Snapshot>>,
}

/// One client's view: the chat's repos and what this client was last told about them.
/// Dropping it detaches from the repos (the last subscriber out stops a repo's worker).
pub struct Subscription {
    hub: Arc<Inner>,
    chat: Option<Uuid>,
    wake: Arc<Notify>,
    repos: BTreeMap<PathBuf, Attached>,
    paths_rx: Option<watch::Receiver<u64>>,
    paths_dirty: bool,
    last_at: Option<SystemTime>,
    /// The last sync found more repos than [`Config::max_repos`].
    truncated: bool,
    /// The discovery of a sync in flight and its deadline.
    pending: Option<(tokio::task::JoinHandle<Found>, tokio::time::Instant)>,
}

/// One sync's discovery: repo root → (location, latest touch, touched paths with `is_dir`).
type Found = BTreeMap<PathBuf, (RepoLocation, u64, Vec<(PathBuf, bool)>)>;

impl Subscription {
    /// Asks for a scan of every watched repo (Coder's `refresh`).
    pub fn refresh(&self) {
        for a in self.repos.values() {
            a.repo.trigger();
        }
    }

    /// Waits for the next update. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Update {
        loop {
            if self.paths_dirty {
                // Cancel-safe: dropped mid-way, the sync simply runs again.
                self.sync_paths().await;
                self.paths_dirty = false;
            }
            if let Some(u) = self.collect() {
                return u;
            }
            let wake = self.wake.clone();
            let paths = async {
                match self.paths_rx.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ok = paths => {
                    if ok { self.paths_dirty = true } else { self.paths_rx = None }
                }
                _ = wake.notified() => {}
            }
        }
    }

    /// Re-reads the chat's paths, resolves them to repos on the blocking pool (bounded by
    /// [`Config::fs_timeout`]), keeps the [`Config::max_repos`] most recently touched repos
    /// attached (detaching the others), routes touched paths to the fs watcher, and
    /// triggers a scan of every repo (Coder rescans on every notification).
    async fn sync_paths(&mut self) {
        let Some(chat) = self.chat else { return };
        let note = self
            .paths_rx
            .as_mut()
            .map_or(0, |rx| *rx.borrow_and_update());
        // One discovery in flight per subscription, kept across cancellations of `next`
        // (a ping or a client message must not start another while it runs).
        if self.pending.is_none() {
            let paths = self.hub.paths.touched(chat);
            let task = crate::fsio::spawn_fs(move || {
                let mut by_root = Found::new();
                for (p, t) in paths {
                    if let Some(loc) = discover::discover(&p) {
                        let is_dir = p.is_dir();
                        let e = by_root
                            .entry(loc.root.clone())
                            .or_insert_with(|| (loc, 0, Vec::new()));
                        e.1 = e.1.max(t);
                        e.2.push((p, is_dir));
                    }
                }
                by_root
            });
            let task = match task {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(chat_id = %chat, error = %e, "resolving the chat's paths to repositories failed");
                    return;
                }
            };
            let deadline = tokio::time::Instant::now() + self.hub.cfg.fs_timeout;
            self.pending = Some((task, deadline));
        }
        let found = match self.pending.as_mut() {
            Some((task, deadline)) => match tokio::time::timeout_at(*deadline, task).await {
                Ok(Ok(f)) => Ok(f),
                Ok(Err(e)) => Err(crate::FsError::Task(e)),
                Err(_) => Err(crate::FsError::Timeout(self.hub.cfg.fs_timeout)),
            },
            None => return,
        };
        self.pending = None;
        let mut by_root = match found {
            Ok(f) => f,
            Err(e) => {
                // Not retried until the next notification: a hung mount must not pile up
                // blocking threads.
                tracing::warn!(chat_id = %chat, error = %e, "resolving the chat's paths to repositories failed");
                return;
            }
        };
        // The cap: newest-touched first over the repos found and those already attached
        // (an attached repo whose paths were forgotten counts as oldest).
        let max = self.hub.cfg.max_repos.max(1);
        let mut ranked: Vec<(u64, PathBuf)> =
            by_root.iter().map(|(r, v)| (v.1, r.clone())).collect();
        ranked.extend(
            self.repos
                .keys()
                .filter(|r| !by_root.contains_key(*r))
                .map(|r| (0, r.clone())),
        );
        self.truncated = ranked.len() > max;
        if self.truncated {
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            for (_, root) in ranked.drain(max..) {
                by_root.remove(&root);
                if let Some(a) = self.repos.remove(&root) {
                    self.hub.detach(&a.repo, &self.wake);
                }
            }
        }
        for (root, (loc, _, touched)) in by_root {
            let fresh = !self.repos.contains_key(&root);
            if fresh {
                let repo = self.hub.attach(loc, &self.wake);
                self.repos.insert(
                    root.clone(),
                    Attached {
                        repo,
                        seen_seq: 0,
                        sent: None,
                    },
                );
            }
            if let Some(a) = self.repos.get(&root) {
                let routes = route_touched(&a.repo, &touched, self.hub.cfg.max_path_watches);
                self.hub.add_watches(&a.repo, routes);
                if !fresh {
                    a.repo.trigger_for_note(note);
                }
            }
        }
    }

    fn collect(&mut self) -> Option<Update> {
        let mut scanned = false;
        let mut at: Option<SystemTime> = None;
        let mut changes = Vec::new();
        let mut evict = Vec::new();
        for (root, a) in self.repos.iter_mut() {
            let st = a.repo.state.borrow().clone();
            if st.seq == a.seen_seq {
                continue;
            }
            a.seen_seq = st.seq;
            scanned = true;
            at = at.max(st.scanned_at);
            if st.removed {
                changes.push(RepoChange {
                    repo_root: root.clone(),
                    branch: String::new(),
                    remote_origin: String::new(),
                    unified_diff: String::new(),
                    removed: true,
                });
                evict.push(root.clone());
            } else if let Some(snap) = st.snap
                && a.sent.as_deref() != Some(&*snap)
            {
                changes.push(RepoChange {
                    repo_root: root.clone(),
                    branch: snap.branch.clone(),
                    remote_origin: snap.remote_origin.clone(),
                    unified_diff: snap.unified_diff.clone(),
                    removed: false,
                });
                a.sent = Some(snap);
            }
        }
        for root in evict {
            if let Some(a) = self.repos.remove(&root) {
                self.hub.detach(&a.repo, &self.wake);
            }
        }
        if !scanned {
            return None;
        }
        let now = at.unwrap_or_else(SystemTime::now);
        let scanned_at = self.last_at.map_or(now, |l| l.max(now));
        self.last_at = Some(scanned_at);
        Some(Update {
            scanned_at,
            repositories: changes,
            truncated: self.truncated,
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for a in self.repos.values() {
            self.hub.detach(&a.repo, &self.wake);
        }
    }
}

/// The watch routes for touched paths not yet watched, within the per-repo budget (the
/// `is_dir` answers come from the blocking discovery).
fn route_touched(
    repo: &Arc<Repo>,
    touched: &[(PathBuf, bool)],
    budget: usize,
) -> Vec<(PathBuf, Option<OsString>)> {
    let mut watched = repo.watched.lock().unwrap_or_else(PoisonError::into_inner);
    let mut routes = Vec::new();
    for (p, is_dir) in touched {
        if watched.len() >= budget || watched.contains(p) {
            continue;
        }
        watched.insert(p.clone());
        if *is_dir {
            routes.push((p.clone(), None));
        } else if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
            routes.push((dir.to_path_buf(), Some(name.to_os_string())));
        }
    }
    routes
}

type Route = (Weak<Repo>, Option<OsString>);

/// One shared inotify instance with non-recursive watches, routing events to repo workers.
struct FsWatch {
    watcher: Mutex<notify::RecommendedWatcher>,
    routes: Arc<Mutex<HashMap<PathBuf, Vec<Route>>>>,
    warned: AtomicBool,
}

impl FsWatch {
    fn new() -> Option<Self> {
        let routes: Arc<Mutex<HashMap<PathBuf, Vec<Route>>>> = Arc::default();
        let r = routes.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            let routes = r.lock().unwrap_or_else(PoisonError::into_inner);
            for p in &ev.paths {
                let name = p.file_name();
                if name.is_some_and(|n| n.as_encoded_bytes().ends_with(b".lock")) {
                    continue;
                }
                let dirs = [p.parent(), Some(p.as_path())];
                for (i, dir) in dirs.into_iter().enumerate() {
                    let Some(dir) = dir else { continue };
                    for (repo, filter) in routes.get(dir).into_iter().flatten() {
                        let hit = i == 1 || filter.is_none() || filter.as_deref() == name;
                        if hit && let Some(repo) = repo.upgrade() {
                            repo.fs_trigger();
                        }
                    }
                }
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(w) => Some(Self {
                watcher: Mutex::new(w),
                routes,
                warned: AtomicBool::new(false),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "file-system watching unavailable; git watch degrades to polling");
                None
            }
        }
    }

    /// Adds routes (directory, optional file-name filter) for a repo. False when a watch
    /// could not be added (inotify limits): the repo then relies on polling.
    fn add(&self, repo: &Arc<Repo>, routes: Vec<(PathBuf, Option<OsString>)>) -> bool {
        // The routes lock is never held across watch/unwatch: notify's event thread takes
        // it in the handler while `watch` waits on that thread.
        let mut fresh = Vec::new();
        {
            let mut table = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            for (dir, filter) in routes {
                let entry = table.entry(dir.clone()).or_default();
                if entry.is_empty() {
                    fresh.push(dir);
                }
                entry.push((Arc::downgrade(repo), filter));
            }
        }
        let mut ok = true;
        let mut w = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        for dir in fresh {
            if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                // A missing refs/heads (packed refs only) is normal; limits are not.
                if dir.exists() {
                    ok = false;
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot add an inotify watch (limit reached?); degrading to polling");
                    }
                }
                self.routes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&dir);
            }
        }
        ok
    }

    fn remove(&self, repo: &Arc<Repo>) {
        let target = Arc::downgrade(repo);
        let mut gone = Vec::new();
        {
            let mut table = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            table.retain(|dir, routes| {
                routes.retain(|(r, _)| !r.ptr_eq(&target) && r.strong_count() > 0);
                if routes.is_empty() {
                    gone.push(dir.clone());
                    false
                } else {
                    true
                }
            });
        }
        let mut w = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        for dir in gone {
            let _ = w.unwatch(&dir);
        }
    }
}
