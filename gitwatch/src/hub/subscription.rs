//! One client's view of the git watch: follows its chat's paths (discovery on the blocking
//! pool, bounded), attaches to the repos' shared workers (at most [`crate::Config::max_repos`],
//! most recently touched kept), routes touched paths to the file-system watch, and turns the
//! workers' snapshots into [`Update`]s with Coder's delta semantics. This module must not
//! scan.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{Notify, watch};
use uuid::Uuid;

use super::{Inner, Repo};
use crate::discover::{self, RepoLocation};
use crate::scan::Snapshot;
use crate::sync::lock;

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
    /// ([`crate::Config::max_repos`]): only the most recently touched ones are watched.
    pub truncated: bool,
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
    /// The last sync found more repos than [`crate::Config::max_repos`].
    truncated: bool,
    /// The discovery of a sync in flight and its deadline.
    pending: Option<(tokio::task::JoinHandle<Found>, tokio::time::Instant)>,
}

/// One sync's discovery: repo root → (location, latest touch, touched paths with `is_dir`).
type Found = BTreeMap<PathBuf, (RepoLocation, u64, Vec<(PathBuf, bool)>)>;

impl Subscription {
    /// A subscription of `chat` (none: it watches nothing).
    pub(super) fn new(hub: Arc<Inner>, chat: Option<Uuid>) -> Self {
        let paths_rx = chat.map(|c| hub.paths.subscribe(c));
        Self {
            hub,
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
    /// [`crate::Config::fs_timeout`]), keeps the [`crate::Config::max_repos`] most recently touched repos
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
    let mut watched = lock(&repo.watched);
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
