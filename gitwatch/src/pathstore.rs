//! The per-chat path store: every path a chat touched (a process's working directory, a
//! written file), recorded for the chat and its ancestors, with change notifications.
//!
//! Semantics follow Coder's `PathStore`: nil chat ids are skipped, relative paths are
//! dropped, paths are lexically cleaned and deduplicated, reads come back sorted, and
//! notifications coalesce (a subscriber sees "something changed", never a backlog). It must
//! not resolve repositories or touch the file system.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;
use uuid::Uuid;

#[derive(Default)]
struct Entry {
    paths: BTreeSet<PathBuf>,
    /// The id of the latest notification touching this chat; subscribers watch it.
    generation: Option<watch::Sender<u64>>,
}

/// The store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Default)]
pub struct PathStore {
    chats: Mutex<HashMap<Uuid, Entry>>,
    /// Store-wide notification ids: one add/notify is one id for every chat it touches.
    last_id: AtomicU64,
}

impl PathStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `paths` for every chat in `chats` (the chat and its ancestors) and notifies
    /// their subscribers. Nil ids and relative paths are skipped. Returns the number of
    /// absolute paths accepted.
    pub fn add_paths(&self, chats: &[Uuid], paths: &[PathBuf]) -> usize {
        let cleaned: Vec<PathBuf> = paths
            .iter()
            .filter(|p| p.is_absolute())
            .map(|p| clean(p))
            .collect();
        let note = self.next_id();
        let mut map = self.chats.lock().unwrap_or_else(PoisonError::into_inner);
        for id in chats.iter().filter(|id| !id.is_nil()) {
            let e = map.entry(*id).or_default();
            e.paths.extend(cleaned.iter().cloned());
            publish(e, note);
        }
        cleaned.len()
    }

    /// Wakes the subscribers of `chats` without adding paths (a process without a working
    /// directory exited: the repos the chat already touched may have changed).
    pub fn notify(&self, chats: &[Uuid]) {
        let note = self.next_id();
        let mut map = self.chats.lock().unwrap_or_else(PoisonError::into_inner);
        for id in chats.iter().filter(|id| !id.is_nil()) {
            if let Some(e) = map.get_mut(id) {
                publish(e, note);
            }
        }
    }

    fn next_id(&self) -> u64 {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The chat's paths, sorted and deduplicated.
    pub fn paths(&self, chat: Uuid) -> Vec<PathBuf> {
        self.chats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&chat)
            .map(|e| e.paths.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Subscribes to the chat's changes. The receiver's value is the id of the latest
    /// add/notify touching the chat; bursts coalesce. Ids are store-wide and increasing, so
    /// every subscriber that sees one notification (of the chat or of an ancestor) sees the
    /// same id and a repo can act on it once.
    pub fn subscribe(&self, chat: Uuid) -> watch::Receiver<u64> {
        let mut map = self.chats.lock().unwrap_or_else(PoisonError::into_inner);
        let e = map.entry(chat).or_default();
        e.generation
            .get_or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

fn publish(e: &mut Entry, note: u64) {
    if let Some(tx) = &e.generation {
        tx.send_modify(|g| *g = (*g).max(note));
    }
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
}
