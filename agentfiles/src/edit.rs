//! edit-files as a batch: duplicate merging, symlink-alias rejection, a validating phase
//! that writes nothing, then a two-phase commit (every temp file staged and fsynced first,
//! then the renames; a failed rename rolls the earlier ones back from the originals, or the
//! error says exactly which files stayed committed).
//!
//! Text matching is `matcher`'s (bytes in, bytes out: a file that is not UTF-8 is edited like
//! any other, its untouched bytes kept, as in Coder). It must not lock (the caller serializes
//! per file) and must not know HTTP.
//!
//! A public module, not re-exported at the crate root: its request/response types and the
//! three phases (`edit::plan`, `edit::prepare_cancellable`, `edit::commit`) are one cohesive
//! group, and `plan`/`commit` would say nothing at the root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{FileError, Kind, go_quote};
use crate::matcher;
use crate::path::{clean, display, is_abs};
use crate::write::{Journal, Staged, Target, sha256_hex, write_all};

/// Largest file edit-files reads (beyond: a clear error, never an unbounded read).
pub(crate) const MAX_EDIT_FILE_SIZE: u64 = 64 << 20;

/// One search/replace edit as the request carries it (owned; the matcher borrows it as a
/// `matcher::Edit`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edit {
    /// Text to find (`old_text`, legacy `search`).
    pub old_text: String,
    /// Replacement (`new_text`, legacy `replace`); empty deletes.
    pub new_text: String,
    /// Replace every non-overlapping match instead of requiring exactly one.
    pub replace_all: bool,
}

impl Edit {
    /// The matcher's borrowed view.
    pub(crate) fn as_matcher(&self) -> matcher::Edit<'_> {
        matcher::Edit {
            old_text: &self.old_text,
            new_text: &self.new_text,
            replace_all: self.replace_all,
        }
    }
}

/// One request entry.
#[derive(Debug, Clone, Default)]
pub struct FileEdits {
    /// Caller path.
    pub path: String,
    /// Its edits, in order.
    pub edits: Vec<Edit>,
    /// Optional precondition: the SHA-256 the file must have before the edits.
    pub expected_sha256: Option<String>,
}

/// Entries after duplicate merging, each with its resolved path.
#[derive(Debug, Clone)]
pub struct Group {
    /// First caller spelling.
    pub caller: String,
    /// Resolved path, or the resolve error.
    pub resolved: Result<PathBuf, FileError>,
    /// Every merged entry's edits, in request order.
    pub edits: Vec<Edit>,
    /// First precondition given.
    pub expected_sha256: Option<String>,
}

/// A failed batch: every error (request order) and the files that stayed changed.
#[derive(Debug, Clone, Default)]
pub struct BatchError {
    /// The errors; the wire status is the largest of their statuses.
    pub errors: Vec<FileError>,
    /// Caller paths of files that were committed and could not be rolled back.
    pub committed: Vec<String>,
}

impl BatchError {
    fn one(e: FileError) -> Self {
        Self {
            errors: vec![e],
            committed: vec![],
        }
    }

    /// All messages joined with `\n` (Go's `errors.Join`).
    pub fn message(&self) -> String {
        self.errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Resolves every entry and merges literal duplicates (same resolved file, same cleaned
/// caller path); the same file under two spellings (a symlink alias) is an error.
pub fn plan(files: Vec<FileEdits>) -> Result<Vec<Group>, BatchError> {
    let mut groups: Vec<(String, String, Group)> = Vec::new(); // (key, cleaned caller, group)
    let mut errors = Vec::new();
    for f in files {
        let resolved = if f.path.is_empty() {
            Err(FileError::invalid("\"path\" is required"))
        } else {
            crate::path::resolve(&f.path)
        };
        let key = match &resolved {
            Ok(p) => display(p),
            Err(_) => clean(&f.path),
        };
        let cleaned = clean(&f.path);
        if let Some((_, first_clean, g)) = groups.iter_mut().find(|(k, _, _)| *k == key) {
            if *first_clean == cleaned {
                g.edits.extend(f.edits);
                if g.expected_sha256.is_none() {
                    g.expected_sha256 = f.expected_sha256;
                }
            } else {
                errors.push(FileError::invalid(format!(
                    "duplicate file path {} aliases {} (same real file): combine edits into a single entry's \"edits\" list",
                    go_quote(&f.path),
                    go_quote(&g.caller)
                )));
            }
            continue;
        }
        groups.push((
            key,
            cleaned,
            Group {
                caller: f.path,
                resolved,
                edits: f.edits,
                expected_sha256: f.expected_sha256,
            },
        ));
    }
    if !errors.is_empty() {
        return Err(BatchError {
            errors,
            committed: vec![],
        });
    }
    Ok(groups.into_iter().map(|(_, _, g)| g).collect())
}

/// A validated, computed edit of one file, ready to write.
#[derive(Debug)]
pub struct Pending {
    /// Caller path.
    pub caller: String,
    /// The target (resolved path, mode, owner).
    pub target: Target,
    /// Content before.
    pub original: Vec<u8>,
    /// Content after.
    pub new: Vec<u8>,
}

impl Pending {
    /// The unified diff of this file against its original content, labelled with the caller
    /// path (empty for a no-op). CPU work: call it where blocking is allowed.
    pub fn diff(&self) -> String {
        matcher::unified_diff(&self.caller, &self.original, &self.new)
    }
}

/// Phase 1: reads every file and applies its edits in memory; nothing is written. Every
/// failure is collected (Coder's messages; a matcher failure is `edit <resolved>: <msg>`).
/// Stops early (with an error nobody needs to read) once `cancelled` is set: checked before
/// each file and each edit, so a caller that gave up on a large batch frees the CPU soon.
pub fn prepare_cancellable(
    groups: Vec<Group>,
    cancelled: &AtomicBool,
) -> Result<Vec<Pending>, BatchError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for g in groups {
        if cancelled.load(Ordering::Relaxed) {
            return Err(BatchError::one(FileError::new(Kind::Internal, CANCELLED)));
        }
        match prepare_one(g, cancelled) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(BatchError {
            errors,
            committed: vec![],
        })
    }
}

/// [`prepare_cancellable`] never cancelled (tests).
#[cfg(test)]
pub(crate) fn prepare(groups: Vec<Group>) -> Result<Vec<Pending>, BatchError> {
    prepare_cancellable(groups, &AtomicBool::new(false))
}

/// The message of a batch given up by its caller.
const CANCELLED: &str = "edit-files: cancelled before anything was written";

fn prepare_one(g: Group, cancelled: &AtomicBool) -> Result<Pending, FileError> {
    if g.caller.is_empty() {
        return Err(FileError::invalid("\"path\" is required"));
    }
    if !is_abs(&g.caller) {
        return Err(FileError::not_absolute(&g.caller));
    }
    if g.edits.is_empty() {
        return Err(FileError::invalid("must specify at least one edit"));
    }
    let resolved = g.resolved.map_err(|e| FileError {
        kind: Kind::Internal,
        message: format!("resolve symlink {}: {}", go_quote(&g.caller), e.message),
    })?;
    let rp = display(&resolved);
    let o = crate::read::open_regular(&rp).map_err(|e| match e {
        crate::read::OpenError::Io(e) => FileError::io("open", &rp, &e),
        crate::read::OpenError::Stat(e) => FileError {
            kind: Kind::Internal,
            ..FileError::io("stat", &rp, &e)
        },
        crate::read::OpenError::Dir => FileError::invalid(format!("open {rp}: not a file")),
        crate::read::OpenError::Special => {
            FileError::invalid(format!("open {rp}: not a regular file"))
        }
    })?;
    let too_big = |n: u64| {
        FileError::new(
            Kind::TooLarge,
            format!(
                "edit {rp}: file is {n} bytes; edit-files handles files up to {MAX_EDIT_FILE_SIZE} bytes"
            ),
        )
    };
    if o.size > MAX_EDIT_FILE_SIZE {
        return Err(too_big(o.size));
    }
    let data =
        crate::read::read_bounded(&o.file, MAX_EDIT_FILE_SIZE + 1).map_err(|e| FileError {
            kind: Kind::Internal,
            ..FileError::io("read", &rp, &e)
        })?;
    if data.len() as u64 > MAX_EDIT_FILE_SIZE {
        return Err(too_big(data.len() as u64));
    }
    if let Some(want) = &g.expected_sha256 {
        let have = sha256_hex(&data);
        let want = want.trim().to_ascii_lowercase();
        if have != want {
            return Err(FileError::new(
                Kind::Mismatch,
                format!(
                    "file {} changed: its SHA-256 is {have}, expected {want}",
                    g.caller
                ),
            ));
        }
    }
    // Each edit applies to the result of the previous one (as `matcher::apply_edits`, with a
    // cancellation check in between).
    let mut new: Option<Vec<u8>> = None;
    for e in &g.edits {
        if cancelled.load(Ordering::Relaxed) {
            return Err(FileError::new(Kind::Internal, CANCELLED));
        }
        let current = new.as_deref().unwrap_or(&data);
        let next = matcher::apply_edit(current, &e.as_matcher())
            .map_err(|e| FileError::invalid(format!("edit {rp}: {e}")))?;
        new = Some(next);
    }
    let new = new.unwrap_or_else(|| data.clone());
    let target = Target::prepare(resolved)?;
    Ok(Pending {
        caller: g.caller,
        target,
        original: data,
        new,
    })
}

/// A committed file.
#[derive(Debug, Clone)]
pub struct Done {
    /// Caller path.
    pub caller: String,
    /// Resolved path written.
    pub resolved: PathBuf,
    /// SHA-256 of the new content.
    pub sha256: String,
    /// Content before (what a rollback restores).
    pub original: Vec<u8>,
}

/// Phase 2: stages every file (temp + fsync), then renames them in order. A staging failure
/// changes nothing; a failed rename rolls the earlier files back from their originals.
pub fn commit(pending: Vec<Pending>, journal: &Journal) -> Result<Vec<Done>, BatchError> {
    commit_with(pending, journal, |_, _| {})
}

fn commit_with(
    pending: Vec<Pending>,
    journal: &Journal,
    mut before_rename: impl FnMut(usize, &Path),
) -> Result<Vec<Done>, BatchError> {
    let mut staged: Vec<Staged> = Vec::with_capacity(pending.len());
    for p in &pending {
        match write_all(p.target.clone(), journal, &p.new) {
            Ok(s) => staged.push(s),
            Err(e) => return Err(BatchError::one(e)),
        }
    }
    let mut done: Vec<Done> = Vec::with_capacity(pending.len());
    for (i, (s, p)) in staged.into_iter().zip(pending).enumerate() {
        before_rename(i, &p.target.path);
        match s.rename() {
            Ok(c) => done.push(Done {
                caller: p.caller,
                resolved: c.path,
                sha256: c.sha256,
                original: p.original,
            }),
            Err(e) => {
                let mut err = BatchError::one(e);
                let mut restored = Vec::new();
                for d in &done {
                    let back = Target::prepare(d.resolved.clone())
                        .and_then(|t| write_all(t, journal, &d.original))
                        .and_then(Staged::rename);
                    match back {
                        Ok(_) => restored.push(d.caller.clone()),
                        Err(_) => err.committed.push(d.caller.clone()),
                    }
                }
                if !restored.is_empty() {
                    err.errors.push(FileError::new(
                        Kind::Internal,
                        format!(
                            "rolled back (original content restored): {}",
                            restored.join(", ")
                        ),
                    ));
                }
                if !err.committed.is_empty() {
                    err.errors.push(FileError::new(
                        Kind::Internal,
                        format!(
                            "committed and could not be rolled back: {}",
                            err.committed.join(", ")
                        ),
                    ));
                }
                return Err(err);
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ed(s: &str, r: &str) -> Edit {
        Edit {
            old_text: s.into(),
            new_text: r.into(),
            replace_all: false,
        }
    }

    #[test]
    fn failed_rename_rolls_back_the_earlier_files() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(Some(t.path().join("j")));
        let a = t.path().join("a");
        let b = t.path().join("b");
        std::fs::write(&a, "one").unwrap();
        std::fs::write(&b, "two").unwrap();
        let files = vec![
            FileEdits {
                path: display(&a),
                edits: vec![ed("one", "ONE")],
                expected_sha256: None,
            },
            FileEdits {
                path: display(&b),
                edits: vec![ed("two", "TWO")],
                expected_sha256: None,
            },
        ];
        let pending = prepare(plan(files).unwrap()).unwrap();
        let dir = t.path().to_path_buf();
        let err = commit_with(pending, &j, |i, _| {
            if i == 1 {
                // Make b's rename fail: its temp file vanishes.
                for e in std::fs::read_dir(&dir).unwrap().flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(".b.tmp.") {
                        std::fs::remove_file(e.path()).unwrap();
                    }
                }
            }
        })
        .unwrap_err();
        assert!(
            err.errors[0]
                .message
                .starts_with(&format!("write {}: ", b.display()))
        );
        assert!(err.committed.is_empty());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "two");
        assert_eq!(std::fs::read_dir(t.path().join("j")).unwrap().count(), 0);
    }

    #[test]
    fn a_cancelled_prepare_stops_and_a_non_utf8_file_is_edited_as_bytes() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"\xff one \xfe\r\n").unwrap();
        let files = || {
            vec![FileEdits {
                path: display(&f),
                edits: vec![ed("one", "ONE"), ed("ONE", "1")],
                expected_sha256: None,
            }]
        };
        let err = prepare_cancellable(plan(files()).unwrap(), &AtomicBool::new(true)).unwrap_err();
        assert_eq!(err.message(), CANCELLED);
        let p = prepare(plan(files()).unwrap()).unwrap();
        assert_eq!(p[0].new, b"\xff 1 \xfe\r\n");
        assert_eq!(p[0].original, b"\xff one \xfe\r\n");
        assert_eq!(std::fs::read(&f).unwrap(), b"\xff one \xfe\r\n");
    }

    #[test]
    fn merging_aliases_and_errors() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let x = root.join("x");
        std::fs::write(&x, "one two").unwrap();
        std::os::unix::fs::symlink(&x, root.join("l")).unwrap();
        let g = plan(vec![
            FileEdits {
                path: format!("{}/./x", root.display()),
                edits: vec![ed("one", "1")],
                ..Default::default()
            },
            FileEdits {
                path: display(&x),
                edits: vec![ed("two", "2")],
                ..Default::default()
            },
        ])
        .unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].edits.len(), 2);
        let e = plan(vec![
            FileEdits {
                path: display(&x),
                edits: vec![ed("one", "1")],
                ..Default::default()
            },
            FileEdits {
                path: display(&root.join("l")),
                edits: vec![ed("two", "2")],
                ..Default::default()
            },
        ])
        .unwrap_err();
        assert!(e.message().contains("aliases"), "{}", e.message());
    }
}
