//! The shared file-system watch: one inotify instance with non-recursive watches, routing
//! each event by directory (and an optional file-name filter) to the repo workers'
//! file-system triggers. A watch that cannot be added degrades its repo to polling. This
//! module must not scan or decide when to.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use notify::{EventKind, RecursiveMode, Watcher};

use super::Repo;
use crate::sync::lock;

type Route = (Weak<Repo>, Option<OsString>);

/// One shared inotify instance with non-recursive watches, routing events to repo workers.
pub(super) struct FsWatch {
    watcher: Mutex<notify::RecommendedWatcher>,
    routes: Arc<Mutex<HashMap<PathBuf, Vec<Route>>>>,
    warned: AtomicBool,
}

impl FsWatch {
    /// The watcher, or `None` (logged) when inotify is unavailable.
    pub(super) fn new() -> Option<Self> {
        let routes: Arc<Mutex<HashMap<PathBuf, Vec<Route>>>> = Arc::default();
        let r = routes.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            let routes = lock(&r);
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
    pub(super) fn add(&self, repo: &Arc<Repo>, routes: Vec<(PathBuf, Option<OsString>)>) -> bool {
        // The routes lock is never held across watch/unwatch: notify's event thread takes
        // it in the handler while `watch` waits on that thread.
        let mut fresh = Vec::new();
        {
            let mut table = lock(&self.routes);
            for (dir, filter) in routes {
                let entry = table.entry(dir.clone()).or_default();
                if entry.is_empty() {
                    fresh.push(dir);
                }
                entry.push((Arc::downgrade(repo), filter));
            }
        }
        let mut ok = true;
        let mut w = lock(&self.watcher);
        for dir in fresh {
            if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                // A missing refs/heads (packed refs only) is normal; limits are not.
                if dir.exists() {
                    ok = false;
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot add an inotify watch (limit reached?); degrading to polling");
                    }
                }
                lock(&self.routes).remove(&dir);
            }
        }
        ok
    }

    /// Drops a repo's routes and the watches no other repo needs.
    pub(super) fn remove(&self, repo: &Arc<Repo>) {
        let target = Arc::downgrade(repo);
        let mut gone = Vec::new();
        {
            let mut table = lock(&self.routes);
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
        let mut w = lock(&self.watcher);
        for dir in gone {
            let _ = w.unwatch(&dir);
        }
    }
}
