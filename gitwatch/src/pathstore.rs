//! The per-chat path store: every path a chat touched (a process's working directory, a
//! written file), recorded for the chat and its ancestors, with change notifications.
//!
//! Semantics follow Coder's `PathStore`: nil chat ids are skipped, relative paths are
//! dropped, paths are lexically cleaned and deduplicated, reads come back sorted, and
//! notifications coalesce (a subscriber sees "something changed", never a backlog).
//!
//! Unlike Coder's, it is bounded ([`PathLimits`]): at most `max_paths_per_chat` paths per
//! chat (the least recently touched path goes first), at most `max_chats` chats and at most
//! `max_bytes` of accounted memory (each distinct path is stored once, shared by every chat
//! that touched it; the least recently used chat loses its paths first; the chat being
//! written to loses only its older paths, so the store can exceed `max_bytes` by at most one
//! request). A chat with a live
//! subscriber keeps its notification channel when it loses its paths. It must not resolve
//! repositories or touch the file system.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

use crate::sync::lock;

/// The store's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathLimits {
    /// Chats kept; the least recently used beyond it are forgotten.
    pub max_chats: usize,
    /// Paths kept per chat; the least recently touched beyond it are forgotten.
    pub max_paths_per_chat: usize,
    /// Accounted bytes (path bytes + per-entry overhead) kept for all chats together.
    pub max_bytes: usize,
}

/// Default [`PathLimits::max_chats`].
pub const DEFAULT_MAX_CHATS: usize = 1024;
/// Default [`PathLimits::max_paths_per_chat`].
pub const DEFAULT_MAX_PATHS_PER_CHAT: usize = 4096;
/// Default [`PathLimits::max_bytes`] (4 MiB).
pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

impl Default for PathLimits {
    fn default() -> Self {
        Self {
            max_chats: DEFAULT_MAX_CHATS,
            max_paths_per_chat: DEFAULT_MAX_PATHS_PER_CHAT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Accounted cost of one distinct stored path beyond its bytes (the shared allocation and
/// its slots in the two intern tables).
const PATH_OVERHEAD: usize = 96;
/// Accounted cost of one (chat, path) membership.
const SLOT_OVERHEAD: usize = 48;

/// What the store holds, for the metrics page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Chats with at least one path.
    pub chats: usize,
    /// Distinct paths stored.
    pub paths: usize,
    /// Accounted bytes.
    pub bytes: usize,
    /// Chats forgotten to stay within the bounds (since start).
    pub chats_evicted: u64,
    /// Paths dropped from a chat to stay within its bounds (since start).
    pub paths_evicted: u64,
}

#[derive(Default)]
struct Entry {
    /// Interned path id → when it was last touched (the store clock).
    paths: HashMap<u64, u64>,
    /// When the chat was last used (added to, read by a subscription, subscribed).
    used: u64,
    /// The id of the latest notification touching this chat; subscribers watch it.
    generation: Option<watch::Sender<u64>>,
}

impl Entry {
    fn subscribed(&self) -> bool {
        self.generation
            .as_ref()
            .is_some_and(|tx| tx.receiver_count() > 0)
    }
}

struct Interned {
    path: Arc<Path>,
    /// Chats holding it.
    refs: usize,
}

#[derive(Default)]
struct State {
    chats: HashMap<Uuid, Entry>,
    /// Every distinct stored path once: path → id, id → path (chats hold ids, so a path
    /// shared by a chat and its 64 ancestors is stored and hashed once).
    ids: HashMap<Arc<Path>, u64>,
    by_id: HashMap<u64, Interned>,
    next_path_id: u64,
    bytes: usize,
    clock: u64,
    chats_evicted: u64,
    paths_evicted: u64,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn intern(&mut self, p: PathBuf) -> u64 {
        if let Some(id) = self.ids.get(p.as_path()) {
            return *id;
        }
        let path: Arc<Path> = Arc::from(p);
        self.next_path_id += 1;
        let id = self.next_path_id;
        self.bytes += path.as_os_str().len() + PATH_OVERHEAD;
        self.ids.insert(path.clone(), id);
        self.by_id.insert(id, Interned { path, refs: 0 });
        id
    }

    fn path(&self, id: u64) -> Option<&Arc<Path>> {
        self.by_id.get(&id).map(|i| &i.path)
    }

    fn retain(&mut self, id: u64) {
        if let Some(i) = self.by_id.get_mut(&id) {
            i.refs += 1;
        }
        self.bytes += SLOT_OVERHEAD;
    }

    fn release(&mut self, id: u64) {
        self.bytes = self.bytes.saturating_sub(SLOT_OVERHEAD);
        if let Some(i) = self.by_id.get_mut(&id) {
            i.refs = i.refs.saturating_sub(1);
        }
        self.forget_unheld(id);
    }

    /// Drops an interned path no chat holds.
    fn forget_unheld(&mut self, id: u64) {
        if self.by_id.get(&id).is_some_and(|i| i.refs == 0)
            && let Some(i) = self.by_id.remove(&id)
        {
            self.ids.remove(&i.path);
            self.bytes = self
                .bytes
                .saturating_sub(i.path.as_os_str().len() + PATH_OVERHEAD);
        }
    }

    /// Drops a chat's paths; the entry itself goes unless someone is subscribed to it.
    fn evict_chat(&mut self, id: &Uuid) {
        let Some(e) = self.chats.get_mut(id) else {
            return;
        };
        let paths = std::mem::take(&mut e.paths);
        if !e.subscribed() {
            self.chats.remove(id);
        }
        if !paths.is_empty() {
            self.chats_evicted += 1;
        }
        for p in paths.into_keys() {
            self.release(p);
        }
    }

    /// Drops the chat's least recently touched paths: down to `max` paths, and (stamped
    /// before `protect_from` only) until the store is within `max_bytes`.
    fn trim_chat(&mut self, id: &Uuid, max: usize, max_bytes: usize, protect_from: u64) {
        let Some(e) = self.chats.get(id) else {
            return;
        };
        if e.paths.len() <= max && self.bytes <= max_bytes {
            return;
        }
        let mut by_age: Vec<(u64, u64)> = e.paths.iter().map(|(p, t)| (*t, *p)).collect();
        by_age.sort_unstable();
        let mut left = by_age.len();
        for (t, p) in by_age {
            let over_count = left > max;
            let over_bytes = self.bytes > max_bytes && t < protect_from;
            if !over_count && !over_bytes {
                break;
            }
            if let Some(e) = self.chats.get_mut(id) {
                e.paths.remove(&p);
            }
            left -= 1;
            self.paths_evicted += 1;
            self.release(p);
        }
    }

    /// Forgets least recently used chats until the store is within `limits` with `reserve`
    /// bytes to spare. Chats in `keep` go last (the request being served, ancestors first);
    /// the first of them (the chat itself) is never forgotten here, so one request always
    /// lands. Only chats holding paths count against `max_chats`; empty entries nobody
    /// listens to are dropped on the way.
    fn enforce(&mut self, limits: &PathLimits, keep: &[Uuid], reserve: usize) {
        let max_chats = limits.max_chats.max(keep.len());
        let mut holding = self.chats.values().filter(|e| !e.paths.is_empty()).count();
        let over =
            |s: &State, holding: usize| s.bytes + reserve > limits.max_bytes || holding > max_chats;
        if !over(self, holding) && self.chats.len() <= 2 * max_chats {
            return;
        }
        self.chats
            .retain(|id, e| !e.paths.is_empty() || e.subscribed() || keep.contains(id));
        if !over(self, holding) {
            return;
        }
        let rank = |id: &Uuid| keep.iter().position(|k| k == id).map(|i| keep.len() - i);
        let mut order: Vec<(usize, u64, Uuid)> = self
            .chats
            .iter()
            .filter(|(id, e)| !e.paths.is_empty() && keep.first() != Some(*id))
            .map(|(id, e)| (rank(id).unwrap_or(0), e.used, *id))
            .collect();
        order.sort_unstable();
        for (_, _, id) in order {
            if !over(self, holding) {
                break;
            }
            self.evict_chat(&id);
            holding -= 1;
        }
    }
}

/// The store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Default)]
pub struct PathStore {
    state: Mutex<State>,
    limits: PathLimits,
    /// Store-wide notification ids: one add/notify is one id for every chat it touches.
    last_id: AtomicU64,
}

impl PathStore {
    /// An empty store with the default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with these bounds (each at least 1).
    pub(crate) fn with_limits(limits: PathLimits) -> Self {
        Self {
            limits: PathLimits {
                max_chats: limits.max_chats.max(1),
                max_paths_per_chat: limits.max_paths_per_chat.max(1),
                max_bytes: limits.max_bytes.max(1),
            },
            ..Self::default()
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> PathLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Records `paths` for every chat in `chats` (the chat and its ancestors) and notifies
    /// their subscribers. Nil ids and relative paths are skipped. Returns the number of
    /// absolute paths accepted. The store then forgets what exceeds its bounds (see the
    /// module doc), so a path accepted here may be gone later.
    pub fn add_paths(&self, chats: &[Uuid], paths: &[PathBuf]) -> usize {
        self.add_owned(chats, paths.to_vec()).0
    }

    /// [`PathStore::add_paths`] taking the paths by value (no copy of a large request).
    /// Returns the number accepted and the cleaned paths stored for the chat (shared with
    /// the store: resolving them costs no copy either).
    pub fn add_owned(&self, chats: &[Uuid], paths: Vec<PathBuf>) -> (usize, Vec<Arc<Path>>) {
        let mut cleaned: Vec<PathBuf> = paths
            .into_iter()
            .filter(|p| p.is_absolute())
            .map(clean_owned)
            .collect();
        let accepted = cleaned.len();
        // Only the most recent `max_paths_per_chat` of one request can stay.
        if cleaned.len() > self.limits.max_paths_per_chat {
            cleaned.drain(..cleaned.len() - self.limits.max_paths_per_chat);
        }
        let mut ids: Vec<Uuid> = Vec::with_capacity(chats.len());
        for id in chats.iter().filter(|id| !id.is_nil()) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        if ids.is_empty() {
            return (accepted, Vec::new());
        }
        let note = self.next_id();
        let mut st = self.lock();
        // Make room first, so the store never holds the old and the new at once.
        let incoming: usize = cleaned
            .iter()
            .map(|p| p.as_os_str().len() + PATH_OVERHEAD + SLOT_OVERHEAD)
            .sum();
        st.enforce(&self.limits, &ids, incoming.min(self.limits.max_bytes));
        let first_stamp = st.clock + 1;
        let mut stamped: Vec<(u64, u64)> = Vec::with_capacity(cleaned.len());
        for p in cleaned {
            let t = st.tick();
            let k = st.intern(p);
            stamped.push((k, t));
        }
        let now = st.tick();
        for id in &ids {
            let mut fresh = Vec::new();
            {
                let e = st.chats.entry(*id).or_default();
                e.used = now;
                for (k, t) in &stamped {
                    match e.paths.get_mut(k) {
                        Some(old) => *old = *t,
                        None => {
                            e.paths.insert(*k, *t);
                            fresh.push(*k);
                        }
                    }
                }
                publish(e, note);
            }
            for k in fresh {
                st.retain(k);
            }
            st.trim_chat(id, self.limits.max_paths_per_chat, usize::MAX, 0);
            // Keep the transient peak of a request to many ancestors bounded too.
            st.enforce(&self.limits, &ids, 0);
        }
        // Still over: the chat itself gives up its older paths, never this request's.
        st.trim_chat(
            &ids[0],
            self.limits.max_paths_per_chat,
            self.limits.max_bytes,
            first_stamp,
        );
        let kept: Vec<Arc<Path>> = stamped
            .iter()
            .filter_map(|(k, _)| st.path(*k).cloned())
            .collect();
        (accepted, kept)
    }

    /// Wakes the subscribers of `chats` without adding paths (a process without a working
    /// directory exited: the repos the chat already touched may have changed).
    pub fn notify(&self, chats: &[Uuid]) {
        let note = self.next_id();
        let mut st = self.lock();
        for id in chats.iter().filter(|id| !id.is_nil()) {
            if let Some(e) = st.chats.get_mut(id) {
                publish(e, note);
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The chat's paths, sorted and deduplicated; counts as a use of the chat.
    pub fn paths(&self, chat: Uuid) -> Vec<PathBuf> {
        let mut st = self.lock();
        let now = st.tick();
        let mut out: Vec<PathBuf> = match st.chats.get_mut(&chat) {
            Some(e) => {
                e.used = now;
                e.paths.keys().copied().collect::<Vec<u64>>()
            }
            None => Vec::new(),
        }
        .into_iter()
        .filter_map(|k| st.path(k).map(|p| p.to_path_buf()))
        .collect();
        out.sort_unstable();
        out
    }

    /// The chat's paths with when each was last touched (larger is more recent; the clock
    /// is store-wide), unsorted; counts as a use of the chat.
    pub fn touched(&self, chat: Uuid) -> Vec<(PathBuf, u64)> {
        let mut st = self.lock();
        let now = st.tick();
        match st.chats.get_mut(&chat) {
            Some(e) => {
                e.used = now;
                e.paths.iter().map(|(p, t)| (*p, *t)).collect::<Vec<_>>()
            }
            None => Vec::new(),
        }
        .into_iter()
        .filter_map(|(k, t)| st.path(k).map(|p| (p.to_path_buf(), t)))
        .collect()
    }

    /// The chat's paths, sorted, without counting as a use (inspection).
    pub fn peek(&self, chat: Uuid) -> Vec<PathBuf> {
        let st = self.lock();
        let mut out: Vec<PathBuf> = st
            .chats
            .get(&chat)
            .map(|e| {
                e.paths
                    .keys()
                    .filter_map(|k| st.path(*k).map(|p| p.to_path_buf()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// What the store holds.
    pub fn stats(&self) -> PathStats {
        let st = self.lock();
        PathStats {
            chats: st.chats.values().filter(|e| !e.paths.is_empty()).count(),
            paths: st.by_id.len(),
            bytes: st.bytes,
            chats_evicted: st.chats_evicted,
            paths_evicted: st.paths_evicted,
        }
    }

    /// Subscribes to the chat's changes. The receiver's value is the id of the latest
    /// add/notify touching the chat; bursts coalesce. Ids are store-wide and increasing, so
    /// every subscriber that sees one notification (of the chat or of an ancestor) sees the
    /// same id and a repo can act on it once.
    pub fn subscribe(&self, chat: Uuid) -> watch::Receiver<u64> {
        let mut st = self.lock();
        let now = st.tick();
        let rx = {
            let e = st.chats.entry(chat).or_default();
            e.used = now;
            e.generation
                .get_or_insert_with(|| watch::channel(0).0)
                .subscribe()
        };
        st.enforce(&self.limits, &[chat], 0);
        rx
    }
}

fn publish(e: &mut Entry, note: u64) {
    if let Some(tx) = &e.generation {
        tx.send_modify(|g| *g = (*g).max(note));
    }
}

/// [`clean`], reusing the allocation when the path is clean already.
fn clean_owned(p: PathBuf) -> PathBuf {
    let b = p.as_os_str().as_encoded_bytes();
    let dirty = b.len() > 1 && b.ends_with(b"/")
        || b.windows(2).any(|w| w == b"//")
        || b.split(|&c| c == b'/').any(|c| c == b"." || c == b"..");
    if dirty { clean(&p) } else { p }
}

/// Lexical cleaning like Go's `filepath.Clean` for absolute paths: drops `.`, resolves `..`
/// textually, removes duplicate and trailing separators.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn stores_for_chat_and_ancestors_skipping_nil_and_relative() {
        let s = PathStore::new();
        let n = s.add_paths(
            &[id(1), id(2), Uuid::nil()],
            &[
                "/a/b/../c/".into(),
                "rel/x".into(),
                "/a/c".into(),
                "/z".into(),
            ],
        );
        assert_eq!(n, 3);
        let want: Vec<PathBuf> = vec!["/a/c".into(), "/z".into()];
        assert_eq!(s.paths(id(1)), want);
        assert_eq!(s.paths(id(2)), want);
        assert!(s.paths(Uuid::nil()).is_empty());
        assert!(s.paths(id(3)).is_empty());
    }

    #[tokio::test]
    async fn subscribers_are_notified_and_bursts_coalesce() {
        let s = PathStore::new();
        let mut a = s.subscribe(id(1));
        let mut b = s.subscribe(id(1));
        let mut parent = s.subscribe(id(9));
        s.add_paths(&[id(1), id(9)], &["/x".into()]);
        s.add_paths(&[id(1)], &["/y".into()]);
        s.notify(&[id(1)]);
        a.changed().await.unwrap();
        assert_eq!(*a.borrow_and_update(), 3);
        assert!(!a.has_changed().unwrap());
        b.changed().await.unwrap();
        parent.changed().await.unwrap();
        assert_eq!(*parent.borrow_and_update(), 1);
        s.notify(&[Uuid::nil(), id(2)]);
        assert!(!parent.has_changed().unwrap());
    }

    #[test]
    fn concurrent_writers_and_readers() {
        let s = std::sync::Arc::new(PathStore::new());
        let mut hs = Vec::new();
        for w in 0..20u128 {
            let s = s.clone();
            hs.push(std::thread::spawn(move || {
                for i in 0..50 {
                    s.add_paths(&[id(1)], &[format!("/p/{w}/{i}").into()]);
                    let _ = s.paths(id(1));
                }
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(s.paths(id(1)).len(), 1000);
    }

    #[test]
    fn chats_are_evicted_least_recently_used_first() {
        let s = PathStore::with_limits(PathLimits {
            max_chats: 3,
            ..PathLimits::default()
        });
        for n in 1..=3 {
            s.add_paths(&[id(n)], &[format!("/c/{n}").into()]);
        }
        // Reading chat 1 (a subscription syncing) is a use; chat 2 is now the oldest.
        assert_eq!(s.paths(id(1)), vec![PathBuf::from("/c/1")]);
        s.add_paths(&[id(4)], &["/c/4".into()]);
        assert!(s.peek(id(2)).is_empty());
        for n in [1, 3, 4] {
            assert_eq!(s.peek(id(n)), vec![PathBuf::from(format!("/c/{n}"))]);
        }
        let st = s.stats();
        assert_eq!((st.chats, st.paths, st.chats_evicted), (3, 3, 1));
    }

    #[test]
    fn paths_per_chat_drop_the_least_recently_touched() {
        let s = PathStore::with_limits(PathLimits {
            max_paths_per_chat: 3,
            ..PathLimits::default()
        });
        s.add_paths(&[id(1)], &["/a".into(), "/b".into(), "/c".into()]);
        s.add_paths(&[id(1)], &["/a".into()]);
        s.add_paths(&[id(1)], &["/d".into()]);
        let want: Vec<PathBuf> = vec!["/a".into(), "/c".into(), "/d".into()];
        assert_eq!(s.peek(id(1)), want);
        // One request over the cap keeps its last paths.
        let many: Vec<PathBuf> = (0..10).map(|i| format!("/m/{i}").into()).collect();
        s.add_paths(&[id(2)], &many);
        let want: Vec<PathBuf> = vec!["/m/7".into(), "/m/8".into(), "/m/9".into()];
        assert_eq!(s.peek(id(2)), want);
        assert_eq!(s.stats().paths_evicted, 1);
    }

    #[test]
    fn the_byte_budget_holds_and_shared_paths_are_stored_once() {
        let limits = PathLimits {
            max_bytes: 64 * 1024,
            ..PathLimits::default()
        };
        let s = PathStore::with_limits(limits);
        let long = "x".repeat(1000);
        let ancestors: Vec<Uuid> = (100..164).map(id).collect();
        for r in 0..50u128 {
            let mut ids = vec![id(r + 1)];
            ids.extend(ancestors.iter().copied());
            let paths: Vec<PathBuf> = (0..20).map(|i| format!("/{r}/{i}/{long}").into()).collect();
            s.add_paths(&ids, &paths);
            let st = s.stats();
            // Within the budget plus at most this one request.
            assert!(
                st.bytes <= limits.max_bytes + 20 * (1100 + 64 + 48),
                "{st:?}"
            );
            assert_eq!(s.peek(id(r + 1)).len(), 20);
        }
        let st = s.stats();
        assert!(st.paths <= 80, "{st:?}");
        assert!(st.chats_evicted > 0);
        // Everything released when the chats go: the accounting returns to zero.
        let small = PathStore::with_limits(PathLimits {
            max_chats: 1,
            ..PathLimits::default()
        });
        small.add_paths(&[id(1), id(2)], &["/shared".into()]);
        small.add_paths(&[id(3)], &["/other".into()]);
        assert_eq!(small.stats().paths, 1);
        assert_eq!(
            small.stats().bytes,
            "/other".len() + PATH_OVERHEAD + SLOT_OVERHEAD
        );
    }

    #[test]
    fn a_subscribed_chat_keeps_its_channel_when_evicted() {
        let s = PathStore::with_limits(PathLimits {
            max_chats: 1,
            ..PathLimits::default()
        });
        let mut rx = s.subscribe(id(1));
        s.add_paths(&[id(1)], &["/one".into()]);
        s.add_paths(&[id(2)], &["/two".into()]);
        assert!(s.peek(id(1)).is_empty());
        rx.borrow_and_update();
        s.add_paths(&[id(1)], &["/again".into()]);
        assert!(rx.has_changed().unwrap());
        assert!(s.peek(id(2)).is_empty());
    }
}
