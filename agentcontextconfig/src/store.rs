//! The per-chat context store behind `agentd ctx add|clear|list`: parts added for one chat,
//! or for every chat (workspace-wide), persisted in one JSON file in the state dir.
//!
//! Every change is written atomically (temp file, fsync, rename, fsync of the directory)
//! before it becomes visible, so a crash or restart never loses an acknowledged add and
//! never leaves a half-written file. A store file that cannot be parsed is moved aside and
//! reported, never fatal. Limits follow Coder's `chat-context` endpoint: at most 100 parts
//! per add, context files sanitised then capped at 64 KiB, empty ones dropped. The store is
//! bounded: at most [`MAX_PARTS_PER_SCOPE`] parts per scope, [`MAX_CHAT_SCOPES`] chats
//! (configurable) and [`MAX_STORE_BYTES`] of text; the least recently used chat (added to or
//! read) is forgotten first, never the workspace scope nor the one being added to.
//!
//! The file format is private to this module (it is not a wire shape). This module must not
//! know HTTP.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::discover::ContextPart;
use crate::sanitize::sanitize_and_cap;
use crate::sync::lock;

/// The store's file name inside the state dir.
pub(crate) const STORE_FILE: &str = "context-store.json";
/// At most this many parts per add (Coder's limit).
pub(crate) const MAX_PARTS_PER_ADD: usize = 100;
/// At most this many parts stored per scope (a bound on the file's growth).
pub(crate) const MAX_PARTS_PER_SCOPE: usize = 1000;
/// Default cap on chat scopes kept: beyond it the least recently used chat (added to or
/// read) is forgotten. The workspace scope never is.
pub const MAX_CHAT_SCOPES: usize = 256;
/// At most this many bytes of part text (contents, paths, names, descriptions) stored for
/// all scopes together; least recently used chats are forgotten to stay under it.
pub(crate) const MAX_STORE_BYTES: usize = 32 << 20;

/// Whose context a part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every chat of the workspace.
    Workspace,
    /// One chat.
    Chat(Uuid),
}

impl Scope {
    /// `Workspace` for `None` or the nil UUID.
    pub fn from_chat(id: Option<Uuid>) -> Self {
        match id {
            Some(id) if !id.is_nil() => Scope::Chat(id),
            _ => Scope::Workspace,
        }
    }

    /// The chat id, nil for the workspace scope (as Coder spells "no chat").
    pub fn chat_id(&self) -> Uuid {
        match self {
            Scope::Workspace => Uuid::nil(),
            Scope::Chat(id) => *id,
        }
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// More parts than `MAX_PARTS_PER_ADD` (100) in one add.
    #[error("Too many context parts: {got} (at most {max} per request).")]
    TooManyParts {
        /// Parts given.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing usable in an add (Coder's message).
    #[error("No context-file or skill parts provided.")]
    NothingToAdd,
    /// One scope alone would exceed `MAX_STORE_BYTES` (32 MiB).
    #[error(
        "Context parts too large: {total} bytes stored for one chat (at most {max}); clear some first."
    )]
    ScopeTooLarge {
        /// Bytes the scope would hold.
        total: usize,
        /// The limit.
        max: usize,
    },
    /// The scope would exceed `MAX_PARTS_PER_SCOPE` (1000).
    #[error("Too many context parts stored: {total} (at most {max}); clear some first.")]
    ScopeFull {
        /// Parts after the add.
        total: usize,
        /// The limit.
        max: usize,
    },
    /// Writing the file failed; nothing changed.
    #[error("cannot write the context store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What [`ContextStore::open`] found wrong with an existing file (the store then starts
/// empty).
#[derive(Debug)]
pub struct OpenProblem {
    /// The store file.
    pub path: PathBuf,
    /// Where the unreadable file was moved, if it was.
    pub moved_to: Option<PathBuf>,
    /// What was wrong.
    pub error: LoadError,
}

/// Why an existing store file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error(transparent)]
    Read(std::io::Error),
    /// Not the store's JSON.
    #[error(transparent)]
    Json(serde_json::Error),
    /// A `version` this build does not know.
    #[error("unsupported store version {0}")]
    Version(u32),
    /// A scope's `chat_id` is not a UUID.
    #[error("bad chat id {id:?}: {source}")]
    ChatId {
        /// The stored value.
        id: String,
        /// The parse error.
        source: uuid::Error,
    },
}

/// The result of an add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddOutcome {
    /// Parts accepted (new + replaced).
    pub count: usize,
    /// Of those, parts that replaced a stored part with the same path.
    pub replaced: usize,
    /// Parts stored in the scope afterwards.
    pub total: usize,
    /// Least recently used chat scopes forgotten to stay within the caps.
    pub evicted: usize,
}

type Data = BTreeMap<Scope, Vec<ContextPart>>;

/// The store. All methods are blocking (file I/O); call them off the async runtime.
#[derive(Debug)]
pub struct ContextStore {
    path: PathBuf,
    data: Mutex<Data>,
    /// When each scope was last used (a store-wide clock); locked after `data`.
    used: Mutex<Recency>,
    max_chats: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Recency {
    clock: u64,
    at: std::collections::HashMap<Scope, u64>,
}

impl Recency {
    fn touch(&mut self, scope: Scope) {
        self.clock += 1;
        self.at.insert(scope, self.clock);
    }
}

fn part_bytes(p: &ContextPart) -> usize {
    match p {
        ContextPart::File { path, content, .. } => path.len() + content.len(),
        ContextPart::Skill {
            name,
            description,
            dir,
            meta_file,
        } => name.len() + description.len() + dir.len() + meta_file.len(),
    }
}

fn data_bytes(d: &Data) -> usize {
    d.values().flatten().map(part_bytes).sum()
}

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    scopes: Vec<FileScope>,
}

#[derive(Serialize, Deserialize)]
struct FileScope {
    /// `null` for the workspace scope.
    chat_id: Option<String>,
    /// Last use on the store's clock (LRU order survives a restart); absent in old files.
    #[serde(default)]
    used: u64,
    parts: Vec<FilePart>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum FilePart {
    #[serde(rename = "context-file")]
    File {
        path: String,
        content: String,
        #[serde(default)]
        truncated: bool,
    },
    #[serde(rename = "skill")]
    Skill {
        name: String,
        #[serde(default)]
        description: String,
        #[serde(default)]
        dir: String,
        #[serde(default)]
        meta_file: String,
    },
}

impl From<&ContextPart> for FilePart {
    fn from(p: &ContextPart) -> Self {
        match p.clone() {
            ContextPart::File {
                path,
                content,
                truncated,
            } => FilePart::File {
                path,
                content,
                truncated,
            },
            ContextPart::Skill {
                name,
                description,
                dir,
                meta_file,
            } => FilePart::Skill {
                name,
                description,
                dir,
                meta_file,
            },
        }
    }
}

impl From<FilePart> for ContextPart {
    fn from(p: FilePart) -> Self {
        match p {
            FilePart::File {
                path,
                content,
                truncated,
            } => ContextPart::File {
                path,
                content,
                truncated,
            },
            FilePart::Skill {
                name,
                description,
                dir,
                meta_file,
            } => ContextPart::Skill {
                name,
                description,
                dir,
                meta_file,
            },
        }
    }
}

fn decode(bytes: &[u8]) -> Result<(Data, Recency), LoadError> {
    let f: FileV1 = serde_json::from_slice(bytes).map_err(LoadError::Json)?;
    if f.version != 1 {
        return Err(LoadError::Version(f.version));
    }
    let mut data = Data::new();
    let mut used = Recency::default();
    for s in f.scopes {
        let scope = match s.chat_id {
            None => Scope::Workspace,
            Some(id) => match Uuid::try_parse(&id) {
                Ok(u) => Scope::from_chat(Some(u)),
                Err(source) => return Err(LoadError::ChatId { id, source }),
            },
        };
        used.clock = used.clock.max(s.used);
        used.at.insert(scope, s.used);
        if !s.parts.is_empty() {
            data.entry(scope)
                .or_default()
                .extend(s.parts.into_iter().map(ContextPart::from));
        }
    }
    Ok((data, used))
}

fn encode(data: &Data, used: &Recency) -> Vec<u8> {
    let f = FileV1 {
        version: 1,
        scopes: data
            .iter()
            .filter(|(_, parts)| !parts.is_empty())
            .map(|(scope, parts)| FileScope {
                chat_id: match scope {
                    Scope::Workspace => None,
                    Scope::Chat(id) => Some(id.to_string()),
                },
                used: used.at.get(scope).copied().unwrap_or_default(),
                parts: parts.iter().map(FilePart::from).collect(),
            })
            .collect(),
    };
    // Serialising plain strings and bools cannot fail.
    serde_json::to_vec(&f).unwrap_or_default()
}

/// Writes `bytes` to `path` atomically: temp file in the same dir, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Sanitises and validates the parts of one add: non-file/skill kinds cannot occur here;
/// file contents are sanitised and capped, empty ones dropped; skills need a name.
fn normalise(parts: Vec<ContextPart>) -> Vec<ContextPart> {
    parts
        .into_iter()
        .filter_map(|p| match p {
            ContextPart::File {
                path,
                content,
                truncated,
            } => {
                let (content, cut) = sanitize_and_cap(&content);
                (!content.is_empty()).then_some(ContextPart::File {
                    path,
                    content,
                    truncated: truncated || cut,
                })
            }
            ContextPart::Skill { ref name, .. } if name.trim().is_empty() => None,
            skill => Some(skill),
        })
        .collect()
}

impl ContextStore {
    /// Opens (or starts) the store in `state_dir`. A file that cannot be parsed is moved
    /// aside to `context-store.json.corrupt-<unix seconds>` and reported; the store then
    /// starts empty. Leftover temp files of an interrupted write are removed.
    pub fn open(state_dir: &Path) -> (Self, Option<OpenProblem>) {
        let path = state_dir.join(STORE_FILE);
        let tmp_prefix = format!("{STORE_FILE}.tmp-");
        if let Ok(entries) = std::fs::read_dir(state_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let (data, problem) = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Ok(d) => (d, None),
                Err(error) => {
                    let secs = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or_default();
                    let aside = path.with_extension(format!("json.corrupt-{secs}"));
                    let moved_to = std::fs::rename(&path, &aside).ok().map(|()| aside);
                    (
                        (Data::new(), Recency::default()),
                        Some(OpenProblem {
                            path: path.clone(),
                            moved_to,
                            error,
                        }),
                    )
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ((Data::new(), Recency::default()), None)
            }
            Err(e) => (
                (Data::new(), Recency::default()),
                Some(OpenProblem {
                    path: path.clone(),
                    moved_to: None,
                    error: LoadError::Read(e),
                }),
            ),
        };
        let (data, used) = data;
        (
            Self {
                path,
                data: Mutex::new(data),
                used: Mutex::new(used),
                max_chats: MAX_CHAT_SCOPES,
                max_bytes: MAX_STORE_BYTES,
            },
            problem,
        )
    }

    /// Sets the cap on chat scopes (at least 1); applied from the next add.
    pub fn with_max_chats(mut self, max_chats: usize) -> Self {
        self.max_chats = max_chats.max(1);
        self
    }

    fn recency(&self) -> std::sync::MutexGuard<'_, Recency> {
        lock(&self.used)
    }

    /// Forgets least recently used chat scopes of `next` (never the workspace, never
    /// `current`) until it is within the caps. Returns the scopes forgotten.
    fn evict(&self, next: &mut Data, current: Scope, used: &Recency) -> Vec<Scope> {
        let chats = |d: &Data| d.keys().filter(|s| matches!(s, Scope::Chat(_))).count();
        let mut bytes = data_bytes(next);
        if chats(next) <= self.max_chats && bytes <= self.max_bytes {
            return Vec::new();
        }
        let mut order: Vec<(u64, Scope)> = next
            .keys()
            .filter(|s| matches!(s, Scope::Chat(_)) && **s != current)
            .map(|s| (used.at.get(s).copied().unwrap_or_default(), *s))
            .collect();
        order.sort_unstable();
        let mut gone = Vec::new();
        for (_, s) in order {
            if chats(next) <= self.max_chats && bytes <= self.max_bytes {
                break;
            }
            if let Some(parts) = next.remove(&s) {
                bytes -= parts.iter().map(part_bytes).sum::<usize>();
                gone.push(s);
            }
        }
        gone
    }

    /// The store file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        lock(&self.data)
    }

    /// Persists `next` and, only if that worked, makes it current.
    fn commit(&self, cur: &mut Data, next: Data) -> Result<(), StoreError> {
        let bytes = encode(&next, &self.recency());
        write_atomic(&self.path, &bytes).map_err(|source| StoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        *cur = next;
        Ok(())
    }

    /// Adds parts to a scope: additive, deduplicated by path (a part with a stored path
    /// replaces it in place).
    pub fn add(&self, scope: Scope, parts: Vec<ContextPart>) -> Result<AddOutcome, StoreError> {
        if parts.len() > MAX_PARTS_PER_ADD {
            return Err(StoreError::TooManyParts {
                got: parts.len(),
                max: MAX_PARTS_PER_ADD,
            });
        }
        let parts = normalise(parts);
        if parts.is_empty() {
            return Err(StoreError::NothingToAdd);
        }
        let mut cur = self.lock();
        let mut next = cur.clone();
        let list = next.entry(scope).or_default();
        let mut replaced = 0;
        let count = parts.len();
        for p in parts {
            match list.iter_mut().find(|q| q.path_key() == p.path_key()) {
                Some(q) => {
                    *q = p;
                    replaced += 1;
                }
                None => list.push(p),
            }
        }
        let total = list.len();
        if total > MAX_PARTS_PER_SCOPE {
            return Err(StoreError::ScopeFull {
                total,
                max: MAX_PARTS_PER_SCOPE,
            });
        }
        let scope_bytes: usize = list.iter().map(part_bytes).sum();
        if scope_bytes > self.max_bytes {
            return Err(StoreError::ScopeTooLarge {
                total: scope_bytes,
                max: self.max_bytes,
            });
        }
        self.recency().touch(scope);
        let gone = self.evict(&mut next, scope, &self.recency());
        let evicted = gone.len();
        // Re-adding what is stored changes nothing: it is on disk already, skip the fsyncs.
        if next != *cur {
            self.commit(&mut cur, next)?;
        }
        let mut used = self.recency();
        for s in &gone {
            used.at.remove(s);
        }
        drop(used);
        Ok(AddOutcome {
            count,
            replaced,
            total,
            evicted,
        })
    }

    /// Removes every part of a scope; returns how many there were.
    pub fn clear(&self, scope: Scope) -> Result<usize, StoreError> {
        let mut cur = self.lock();
        let n = cur.get(&scope).map_or(0, Vec::len);
        if n == 0 {
            return Ok(0);
        }
        let mut next = cur.clone();
        next.remove(&scope);
        self.commit(&mut cur, next)?;
        self.recency().at.remove(&scope);
        Ok(n)
    }

    /// The parts of one scope, in insertion order; counts as a use of the scope (kept in
    /// memory, persisted with the next change).
    pub fn get(&self, scope: Scope) -> Vec<ContextPart> {
        let data = self.lock();
        let parts = data.get(&scope).cloned();
        if parts.is_some() {
            self.recency().touch(scope);
        }
        parts.unwrap_or_default()
    }

    /// Chat scopes stored (the workspace scope not counted).
    pub fn chats(&self) -> usize {
        self.lock()
            .keys()
            .filter(|s| matches!(s, Scope::Chat(_)))
            .count()
    }

    /// Every non-empty scope (workspace first, then chats by id).
    pub fn all(&self) -> Vec<(Scope, Vec<ContextPart>)> {
        self.lock()
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(s, p)| (*s, p.clone()))
            .collect()
    }

    /// Total parts stored.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f(path: &str, content: &str) -> ContextPart {
        ContextPart::File {
            path: path.into(),
            content: content.into(),
            truncated: false,
        }
    }

    fn sk(name: &str) -> ContextPart {
        ContextPart::Skill {
            name: name.into(),
            description: "d".into(),
            dir: format!("/s/{name}"),
            meta_file: "SKILL.md".into(),
        }
    }

    const A: Uuid = Uuid::from_u128(0xA);

    #[test]
    fn add_dedupe_clear_and_reopen() {
        let t = tempfile::tempdir().unwrap();
        let (s, p) = ContextStore::open(t.path());
        assert!(p.is_none() && s.is_empty());
        let o = s
            .add(Scope::Chat(A), vec![f("/a", "one"), sk("x")])
            .unwrap();
        assert_eq!(
            o,
            AddOutcome {
                count: 2,
                replaced: 0,
                total: 2,
                evicted: 0
            }
        );
        let o = s
            .add(Scope::Chat(A), vec![f("/a", "two"), f("/b", "b")])
            .unwrap();
        assert_eq!(
            o,
            AddOutcome {
                count: 2,
                replaced: 1,
                total: 3,
                evicted: 0
            }
        );
        s.add(Scope::Workspace, vec![f("/w", "w")]).unwrap();
        // An add that changes nothing does not rewrite the file (a sentinel stands in for
        // it); one that changes something does.
        std::fs::write(s.path(), b"sentinel").unwrap();
        assert_eq!(
            s.add(Scope::Workspace, vec![f("/w", "w")]).unwrap(),
            AddOutcome {
                count: 1,
                replaced: 1,
                total: 1,
                evicted: 0
            }
        );
        assert_eq!(std::fs::read(s.path()).unwrap(), b"sentinel");
        s.add(Scope::Workspace, vec![f("/w", "w2")]).unwrap();
        s.add(Scope::Workspace, vec![f("/w", "w")]).unwrap();
        assert_ne!(std::fs::read(s.path()).unwrap(), b"sentinel");
        assert_eq!(
            s.get(Scope::Chat(A)),
            vec![f("/a", "two"), sk("x"), f("/b", "b")]
        );

        // A restart sees exactly the same thing.
        let (s2, p) = ContextStore::open(t.path());
        assert!(p.is_none());
        assert_eq!(s2.all(), s.all());
        assert_eq!(s2.all()[0], (Scope::Workspace, vec![f("/w", "w")]));

        assert_eq!(s2.clear(Scope::Chat(A)).unwrap(), 3);
        assert_eq!(s2.clear(Scope::Chat(A)).unwrap(), 0);
        let (s3, _) = ContextStore::open(t.path());
        assert_eq!(s3.len(), 1);
    }

    #[test]
    fn limits_and_sanitising() {
        let t = tempfile::tempdir().unwrap();
        let (s, _) = ContextStore::open(t.path());
        let many: Vec<_> = (0..101).map(|i| f(&format!("/{i}"), "x")).collect();
        assert!(matches!(
            s.add(Scope::Workspace, many),
            Err(StoreError::TooManyParts { got: 101, max: 100 })
        ));
        assert!(matches!(
            s.add(
                Scope::Workspace,
                vec![f("/e", " \u{200B}\r\n "), f("/c", "<!-- x -->")]
            ),
            Err(StoreError::NothingToAdd)
        ));
        assert_eq!(
            StoreError::NothingToAdd.to_string(),
            "No context-file or skill parts provided."
        );
        let big = format!("{}{}", "\u{200B}".repeat(10), "é".repeat(40_000));
        s.add(Scope::Workspace, vec![f("/big", &big), f("/empty", "")])
            .unwrap();
        match &s.get(Scope::Workspace)[..] {
            [
                ContextPart::File {
                    content, truncated, ..
                },
            ] => {
                assert_eq!((content.len(), *truncated), (64 * 1024, true));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(STORE_FILE), b"{not json").unwrap();
        std::fs::write(t.path().join(format!("{STORE_FILE}.tmp-99")), b"partial").unwrap();
        let (s, p) = ContextStore::open(t.path());
        let p = p.unwrap();
        let moved = p.moved_to.unwrap();
        assert_eq!(std::fs::read(&moved).unwrap(), b"{not json");
        assert!(!t.path().join(STORE_FILE).exists());
        assert!(!t.path().join(format!("{STORE_FILE}.tmp-99")).exists());
        assert!(s.is_empty());
        s.add(Scope::Workspace, vec![f("/a", "a")]).unwrap();
        assert_eq!(ContextStore::open(t.path()).0.len(), 1);
    }

    #[test]
    fn failed_write_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("gone");
        std::fs::create_dir(&dir).unwrap();
        let (s, _) = ContextStore::open(&dir);
        std::fs::remove_dir(&dir).unwrap();
        assert!(matches!(
            s.add(Scope::Workspace, vec![f("/a", "a")]),
            Err(StoreError::Io { .. })
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn load_error_texts() {
        let text = |b: &[u8]| decode(b).map(|_| ()).unwrap_err().to_string();
        assert_eq!(text(b"{"), "EOF while parsing an object at line 1 column 1");
        assert_eq!(
            text(br#"{"version":2,"scopes":[]}"#),
            "unsupported store version 2"
        );
        assert_eq!(
            text(br#"{"version":1,"scopes":[{"chat_id":"x","used":0,"parts":[]}]}"#),
            "bad chat id \"x\": failed to parse a UUID"
        );
        assert_eq!(
            LoadError::Read(std::io::Error::from_raw_os_error(13)).to_string(),
            "Permission denied (os error 13)"
        );
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(STORE_FILE), b"{").unwrap();
        let (_, problem) = ContextStore::open(t.path());
        assert!(matches!(
            problem,
            Some(OpenProblem {
                error: LoadError::Json(_),
                moved_to: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn least_recently_used_chats_go_first_and_the_order_survives_a_reopen() {
        let t = tempfile::tempdir().unwrap();
        let (s, _) = ContextStore::open(t.path());
        let s = s.with_max_chats(2);
        let (a, b, c, d) = (
            Scope::Chat(Uuid::from_u128(1)),
            Scope::Chat(Uuid::from_u128(2)),
            Scope::Chat(Uuid::from_u128(3)),
            Scope::Chat(Uuid::from_u128(4)),
        );
        s.add(Scope::Workspace, vec![f("/w", "w")]).unwrap();
        s.add(a, vec![f("/a", "a")]).unwrap();
        s.add(b, vec![f("/b", "b")]).unwrap();
        assert_eq!(s.get(a).len(), 1); // a use: b is now the oldest
        let out = s.add(c, vec![f("/c", "c")]).unwrap();
        assert_eq!(out.evicted, 1);
        let scopes: Vec<Scope> = s.all().into_iter().map(|(s, _)| s).collect();
        assert_eq!(scopes, vec![Scope::Workspace, a, c]);
        // Reopened, a is still older than c (its use was persisted with c's add).
        drop(s);
        let (s, problem) = ContextStore::open(t.path());
        assert!(problem.is_none());
        let s = s.with_max_chats(2);
        s.add(d, vec![f("/d", "d")]).unwrap();
        let scopes: Vec<Scope> = s.all().into_iter().map(|(s, _)| s).collect();
        assert_eq!(scopes, vec![Scope::Workspace, c, d]);
        assert_eq!(s.recency().at.len(), 3);
    }
}
