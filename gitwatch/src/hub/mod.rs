//! Scan scheduling shared by every subscriber: one worker task per watched repository,
//! woken by triggers (path-store notifications, `refresh`, file-system events on `.git/HEAD`,
//! `.git/index`, refs and the paths chats touched) and by a fallback poll that backs off
//! while nothing changes. A file-system event first waits [`worker::FS_SETTLE`] for the rest of its
//! burst (a notification or `refresh` ends the wait), so the exit notification of a process
//! that just wrote a watched file is served by the same scan. At most one scan starts per
//! repo per cooldown, with a guaranteed trailing scan; a scan still running a cooldown after
//! a newer trigger arrived is cancelled (its git processes are killed) and restarted at once;
//! every scan has a timeout.
//!
//! [`Subscription`] turns the workers' shared snapshots into per-connection updates with
//! Coder's delta semantics. This module (the registry of repos and their workers) must not
//! know HTTP or WebSocket. Roles: `worker.rs` the scheduler, `subscription.rs` a client's
//! view, `fswatch.rs` the shared inotify watch, `stats.rs` the counters and the
//! completed-scan observer.

mod fswatch;
mod stats;
mod subscription;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::Config;
use crate::discover::{self, RepoLocation};
use crate::pathstore::PathStore;
use crate::scan::{self, Outcome, ScanError, Snapshot};
use crate::sync::lock;
use fswatch::FsWatch;
use stats::Counters;
pub use stats::{ScanObserver, Stats};
pub use subscription::{RepoChange, Subscription, Update};

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
    /// Bumped by file-system events; the worker watches it, after [`worker::FS_SETTLE`].
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
        for s in lock(&self.subs).iter() {
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
        Subscription::new(self.inner.clone(), chat)
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
        let mut repos = lock(&self.repos);
        if let Some(r) = repos.get(&loc.root)
            && !r.cancel.is_cancelled()
        {
            lock(&r.subs).push(waker.clone());
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
        self.tasks
            .spawn(async move { worker::run(&hub, &hub.cfg, &hub.counters, r).await });
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
        let mut repos = lock(&self.repos);
        let empty = {
            let mut subs = lock(&repo.subs);
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

    fn publish_removed(self: &Arc<Self>, repo: &Arc<Repo>) {
        tracing::info!(repo = %repo.loc.root.display(), "repository removed; no longer watched");
        {
            let mut repos = lock(&self.repos);
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

impl worker::Host for Arc<Inner> {
    async fn is_gone(&self, repo: &Arc<Repo>) -> Result<bool, crate::FsError> {
        Inner::is_gone(self, repo).await
    }

    async fn scan(&self, root: &Path, prev: Option<u64>) -> Result<Outcome, ScanError> {
        scan::scan(&self.cfg, root, prev).await
    }

    fn removed(&self, repo: &Arc<Repo>) {
        self.publish_removed(repo);
    }
}
