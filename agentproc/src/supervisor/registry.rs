//! The supervisor's books: every known process by id, the processes whose task has not
//! finished, and the groups of forgotten processes that still had live members; retention
//! and the cap on exited records; which groups a shutdown must signal. This module must not
//! start or signal anything.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::process::Process;
use crate::group;
use crate::sync::lock;

/// The process tables.
#[derive(Default)]
pub(super) struct Registry {
    /// Every process still readable.
    procs: Mutex<HashMap<String, Arc<Process>>>,
    /// Processes whose task has not finished (shell unreaped or pipe open).
    active: Mutex<HashMap<String, Arc<Process>>>,
    /// Groups of forgotten processes that still had live members.
    stray_groups: Mutex<HashSet<u32>>,
}

impl Registry {
    /// Whether `id` is taken.
    pub(super) fn contains(&self, id: &str) -> bool {
        lock(&self.procs).contains_key(id)
    }

    /// Records a started process (readable and active).
    pub(super) fn insert(&self, proc: &Arc<Process>) {
        lock(&self.procs).insert(proc.id.clone(), proc.clone());
        lock(&self.active).insert(proc.id.clone(), proc.clone());
    }

    /// The process's task has finished.
    pub(super) fn finished(&self, id: &str) {
        lock(&self.active).remove(id);
    }

    /// Whether every process task has finished.
    pub(super) fn none_active(&self) -> bool {
        lock(&self.active).is_empty()
    }

    /// A process by id.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Process>> {
        lock(&self.procs).get(id).cloned()
    }

    /// Every readable process.
    pub(super) fn all(&self) -> Vec<Arc<Process>> {
        lock(&self.procs).values().cloned().collect()
    }

    /// Forgets processes that exited more than `retention` ago. Returns how many, and the
    /// groups of those whose tree was not seen gone (for [`Registry::remember_strays`]).
    pub(super) fn forget_expired(&self, retention: Duration) -> (usize, Vec<u32>) {
        let now = SystemTime::now();
        // Forgotten processes whose group may still have live members.
        let mut gone = Vec::new();
        let reaped = {
            let mut procs = lock(&self.procs);
            let before = procs.len();
            procs.retain(|_, p| {
                let keep = match p.exit() {
                    Some(e) => now.duration_since(e.at).unwrap_or_default() < retention,
                    None => true,
                };
                if !keep && !p.group_gone.load(Ordering::Relaxed) {
                    gone.push(p.pid);
                }
                keep
            });
            before - procs.len()
        };
        (reaped, gone)
    }

    /// Forgets the oldest exited processes beyond `cap` exited records. Returns the groups
    /// of those whose tree was not seen gone (for [`Registry::remember_strays`]).
    pub(super) fn evict_exited(&self, cap: usize) -> Vec<u32> {
        let mut gone = Vec::new();
        {
            let mut procs = lock(&self.procs);
            if procs.len() <= cap {
                return gone;
            }
            // Runs on every exit once the table is over the cap, so no sort and no id copies
            // but for the few records that go: the n oldest by a linear selection.
            let mut exited: Vec<(SystemTime, u64, &str)> = procs
                .values()
                .filter_map(|p| p.exit().map(|e| (e.at, p.seq, p.id.as_str())))
                .collect();
            if exited.len() <= cap {
                return gone;
            }
            let n = exited.len() - cap;
            exited.select_nth_unstable(n - 1);
            let oldest: Vec<String> = exited[..n].iter().map(|e| e.2.to_owned()).collect();
            for id in oldest {
                if let Some(p) = procs.remove(&id)
                    && !p.group_gone.load(Ordering::Relaxed)
                {
                    gone.push(p.pid);
                }
            }
        }
        gone
    }

    /// Keeps the groups of forgotten processes that still have live members. Blocking (a
    /// `/proc` scan).
    pub(super) fn remember_strays(&self, gone: &[u32]) {
        if gone.is_empty() {
            return;
        }
        let live = group::live_groups();
        let mut stray = lock(&self.stray_groups);
        stray.retain(|g| live.contains(g));
        stray.extend(gone.iter().filter(|g| live.contains(g)));
    }

    /// Groups that may still have live members: those with a live member now, or whose
    /// shell is unreaped (its pgid cannot have been reused). Blocking (a `/proc` scan).
    pub(super) fn target_groups(&self) -> Vec<u32> {
        let mut groups: HashSet<u32> = lock(&self.procs).values().map(|p| p.pid).collect();
        groups.extend(lock(&self.active).values().map(|p| p.pid));
        groups.extend(lock(&self.stray_groups).iter().copied());
        let unreaped: HashSet<u32> = lock(&self.active)
            .values()
            .filter(|p| p.running())
            .map(|p| p.pid)
            .collect();
        let live = group::live_groups();
        groups
            .into_iter()
            .filter(|g| *g > 1 && (live.contains(g) || unreaped.contains(g)))
            .collect()
    }

    /// Every group that may have members: known processes, active ones, strays.
    pub(super) fn all_groups(&self) -> Vec<u32> {
        let mut groups: HashSet<u32> = lock(&self.procs).values().map(|p| p.pid).collect();
        groups.extend(lock(&self.active).values().map(|p| p.pid));
        groups.extend(lock(&self.stray_groups).iter().copied());
        groups.into_iter().filter(|g| *g > 1).collect()
    }
}
