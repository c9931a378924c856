//! Config watching: the parent directory of every config file (or, if it does not exist
//! yet, its nearest existing ancestor) is watched non-recursively; relevant events are
//! debounced and trigger a differential reload; watches are re-armed after each reload so
//! directories created later are picked up.
//!
//! If the watcher cannot be created the manager simply does not watch (`?refresh=true`
//! still reloads).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::Manager;

fn watch_dirs(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    files
        .iter()
        .filter_map(|f| {
            let mut d = f.parent()?.to_path_buf();
            while !d.is_dir() {
                d = d.parent()?.to_path_buf();
            }
            Some(d)
        })
        .collect()
}

fn relevant(event_paths: &[PathBuf], files: &[PathBuf]) -> bool {
    event_paths.is_empty()
        || event_paths.iter().any(|p| {
            files
                .iter()
                .any(|f| f == p || f.starts_with(p) || p.starts_with(f))
        })
}

fn rearm(w: &mut notify::RecommendedWatcher, armed: &mut BTreeSet<PathBuf>, files: &[PathBuf]) {
    let want = watch_dirs(files);
    for d in armed.difference(&want) {
        let _ = w.unwatch(d);
    }
    for d in want.difference(armed) {
        if let Err(e) = w.watch(Path::new(d), RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch MCP config directory");
        }
    }
    *armed = want;
}

pub(crate) fn spawn(m: Manager) {
    let files = m.options().config_files.clone();
    if files.is_empty() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher = match notify::recommended_watcher(
        move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let _ = tx.send(ev.paths);
            }
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch MCP config files; changes apply on ?refresh=true");
            return;
        }
    };
    let mut armed: BTreeSet<PathBuf> = BTreeSet::new();
    rearm(&mut watcher, &mut armed, &files);
    let cancel = m.cancelled();
    let debounce = m.options().debounce;
    let tasks = m.tasks().clone();
    tasks.spawn(async move {
        loop {
            let paths = tokio::select! {
                _ = cancel.cancelled() => break,
                p = rx.recv() => p,
            };
            let Some(paths) = paths else { break };
            if !relevant(&paths, &files) {
                continue;
            }
            // Debounce: wait until the config files have been quiet for `debounce`. Other
            // files in the watched directories do not extend the wait (they may never be
            // quiet).
            let mut quiet_at = tokio::time::Instant::now() + debounce;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(quiet_at) => break,
                    p = rx.recv() => match p {
                        None => break,
                        Some(p) if relevant(&p, &files) => {
                            quiet_at = tokio::time::Instant::now() + debounce;
                        }
                        Some(_) => {}
                    },
                }
            }
            rearm(&mut watcher, &mut armed, &files);
            let changed = m.reload().await;
            tracing::info!(changed, "MCP config files changed; reloaded");
        }
        drop(watcher);
    });
}
