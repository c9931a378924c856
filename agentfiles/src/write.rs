//! Durable whole-file writes: a temp file `.<base>.tmp.<8 hex>` in the target's directory,
//! fsync of the file, rename over the target, fsync of the directory. The target's mode
//! (with setuid/setgid/sticky) and, when running as root, its owner are put on the temp file
//! before the rename; a symlink is written through (the caller resolves it first), never
//! replaced. Directories, FIFOs, devices and sockets are refused; a target with other hard
//! links is replaced like Coder does but reported (the other names keep the old content).
//!
//! Every temp file is noted in a journal directory first (`Journal`), so temp files a
//! killed daemon left behind are removed at the next start. It must not decide locking
//! (the caller serializes writers of one file) and must never leave a half-written target:
//! the target only ever changes by `rename(2)`.
//!
//! A public module, not re-exported at the crate root: `write::Target`, `write::Staged` and
//! `write::check_expected` are the write-file protocol as one group, and `Target` alone would
//! be ambiguous at the root.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{FileError, Kind};
use crate::path::display;

/// Where temp files are noted while they exist (one small file per temp file).
#[derive(Debug, Clone)]
pub struct Journal {
    dir: Option<PathBuf>,
}

/// What a start-up sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Stale temp files removed.
    pub removed: Vec<PathBuf>,
}

impl Journal {
    /// A journal in `dir` (created 0700). `None`: no journal (temp files of a crash stay).
    pub fn open(dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|d| {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
            {
                Ok(()) => Some(d),
                Err(_) => None,
            }
        });
        Self { dir }
    }

    /// Removes the temp files that earlier daemons noted and never finished (a crash or
    /// `kill -9` mid-write), and their notes. Only names of the temp pattern are removed.
    pub fn sweep(&self) -> Swept {
        let mut swept = Swept::default();
        let Some(dir) = &self.dir else { return swept };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return swept;
        };
        for e in entries.flatten() {
            let note = e.path();
            if let Ok(text) = std::fs::read_to_string(&note) {
                let tmp = PathBuf::from(text.trim_end_matches('\n'));
                let is_temp = tmp
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') && n.contains(".tmp."));
                if is_temp && std::fs::remove_file(&tmp).is_ok() {
                    swept.removed.push(tmp);
                }
            }
            let _ = std::fs::remove_file(&note);
        }
        swept
    }

    fn note(&self, tmp: &Path, id: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let note = dir.join(id);
        std::fs::write(&note, tmp.as_os_str().as_encoded_bytes()).ok()?;
        Some(note)
    }
}

/// What is known about a write target before the temp file is made.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resolved path (symlinks followed).
    pub path: PathBuf,
    /// Mode bits of the existing file (permissions + setuid/setgid/sticky).
    pub mode: Option<u32>,
    /// Owner of the existing file.
    pub owner: Option<(u32, u32)>,
    /// Its link count.
    pub nlink: u64,
}

impl Target {
    /// Creates missing parents (0755 minus umask) and stats the target: a directory is
    /// `open <p>: is a directory`, a FIFO/device/socket `open <p>: not a regular file`
    /// (both invalid); mkdir errors are Go's (ENOTDIR invalid, EACCES denied).
    pub fn prepare(resolved: PathBuf) -> Result<Self, FileError> {
        let p = display(&resolved);
        if let Some(dir) = resolved.parent() {
            mkdir_all(dir)?;
        }
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => Err(FileError::invalid(format!("open {p}: is a directory"))),
            Ok(m) if !m.is_file() => {
                Err(FileError::invalid(format!("open {p}: not a regular file")))
            }
            Ok(m) => Ok(Self {
                mode: Some(m.mode() & 0o7777),
                owner: Some((m.uid(), m.gid())),
                nlink: m.nlink(),
                path: resolved,
            }),
            Err(_) => Ok(Self {
                path: resolved,
                mode: None,
                owner: None,
                nlink: 0,
            }),
        }
    }

    /// The hard-link warning, when the target has other names.
    pub fn warning(&self) -> Option<String> {
        (self.nlink > 1).then(|| {
            format!(
                "{} had {} hard links; it was replaced by a new file, the other {} names keep the old content",
                display(&self.path),
                self.nlink,
                self.nlink - 1
            )
        })
    }
}

fn mkdir_all(dir: &Path) -> Result<(), FileError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            let e = std::io::Error::from_raw_os_error(libc::ENOTDIR);
            return Err(mkdir_error(dir, &e));
        }
        Err(_) => {}
    }
    if let Some(parent) = dir.parent() {
        mkdir_all(parent)?;
    }
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(mkdir_error(dir, &e)),
    }
}

fn mkdir_error(dir: &Path, e: &std::io::Error) -> FileError {
    let mut err = FileError::io("mkdir", &display(dir), e);
    if e.raw_os_error() == Some(libc::ENOTDIR) {
        err.kind = Kind::Invalid;
    }
    err
}

/// A temp file being filled. Dropped without [`Staged::commit`], it is removed.
pub struct Staged {
    file: Option<File>,
    tmp: PathBuf,
    target: Target,
    note: Option<PathBuf>,
    hasher: sha2::Sha256,
    written: u64,
    done: bool,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("tmp", &self.tmp)
            .field("written", &self.written)
            .finish()
    }
}

/// A committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The path written (resolved).
    pub path: PathBuf,
    /// SHA-256 of the new content, lower-case hex.
    pub sha256: String,
    /// Bytes written.
    pub bytes: u64,
}

impl Staged {
    /// Creates the temp file next to the target (`O_EXCL`, 0666 minus umask), noted in the
    /// journal. EACCES is denied.
    pub fn create(target: Target, journal: &Journal) -> Result<Self, FileError> {
        let dir = target.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let base = target
            .path
            .file_name()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_default();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tmp = dir.join(format!(".{base}.tmp.{}", &id[..8]));
        let note = journal.note(&tmp, &id);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp);
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                if let Some(n) = &note {
                    let _ = std::fs::remove_file(n);
                }
                return Err(FileError::io("open", &display(&tmp), &e));
            }
        };
        Ok(Self {
            file: Some(file),
            tmp,
            target,
            note,
            hasher: sha2::Sha256::new(),
            written: 0,
            done: false,
        })
    }

    /// Appends `data`. Errors are `write <target>: <err>` (internal).
    pub fn write(&mut self, data: &[u8]) -> Result<(), FileError> {
        let Some(f) = self.file.as_mut() else {
            return Err(FileError::new(Kind::Internal, "write after close"));
        };
        f.write_all(data).map_err(|e| self.write_error(&e))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    fn write_error(&self, e: &std::io::Error) -> FileError {
        let mut err = FileError::io("write", &display(&self.target.path), e);
        err.kind = Kind::Internal;
        err
    }

    /// Makes the content durable and ready to rename: mode and owner of the old file, fsync,
    /// close. After this only [`Staged::rename`] remains (it cannot fail half-way).
    pub(crate) fn finish(&mut self) -> Result<(), FileError> {
        let Some(f) = self.file.take() else {
            return Ok(());
        };
        if let Some(mode) = self.target.mode {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(mode));
        }
        if let Some((uid, gid)) = self.target.owner
            && is_root()
        {
            let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
            // chown clears setuid/setgid: put the mode back.
            if let Some(mode) = self.target.mode {
                let _ = f.set_permissions(std::fs::Permissions::from_mode(mode));
            }
        }
        f.sync_all().map_err(|e| self.write_error(&e))?;
        drop(f);
        Ok(())
    }

    /// SHA-256 of what was written so far.
    pub(crate) fn sha256(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }

    /// Renames the finished temp file over the target and fsyncs the directory. A failed
    /// rename removes the temp (`write <target>: <err>`; EACCES denied).
    pub(crate) fn rename(mut self) -> Result<Committed, FileError> {
        self.finish()?;
        if let Err(e) = std::fs::rename(&self.tmp, &self.target.path) {
            let mut err = FileError::io("write", &display(&self.target.path), &e);
            if err.kind != Kind::Denied {
                err.kind = Kind::Internal;
            }
            return Err(err);
        }
        self.done = true;
        if let Some(dir) = self.target.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        if let Some(n) = &self.note {
            let _ = std::fs::remove_file(n);
        }
        Ok(Committed {
            path: self.target.path.clone(),
            sha256: self.sha256(),
            bytes: self.written,
        })
    }

    /// `finish` + `rename`.
    pub fn commit(self) -> Result<Committed, FileError> {
        self.rename()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
            if let Some(n) = &self.note {
                let _ = std::fs::remove_file(n);
            }
        }
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// SHA-256 of `data`, lower-case hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&sha2::Sha256::digest(data))
}

/// SHA-256 of the current content of `path` (`None` when it does not exist or is not a
/// regular file), read at most `max + 1` bytes.
pub(crate) fn current_sha256(path: &Path) -> Result<Option<String>, FileError> {
    let p = display(path);
    match crate::read::open_regular(&p) {
        Ok(o) => {
            let mut h = sha2::Sha256::new();
            let mut f = &o.file;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = std::io::Read::read(&mut f, &mut buf)
                    .map_err(|e| FileError::io("read", &p, &e))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Ok(Some(hex(&h.finalize())))
        }
        Err(_) => Ok(None),
    }
}

/// Checks an expected SHA-256 precondition against the current content: mismatch (or a
/// missing file) is `Kind::Mismatch` with both hashes in the message.
pub fn check_expected(path: &Path, caller: &str, expected: &str) -> Result<(), FileError> {
    let current = current_sha256(path)?;
    let want = expected.trim().to_ascii_lowercase();
    match current {
        Some(c) if c == want => Ok(()),
        Some(c) => Err(FileError::new(
            Kind::Mismatch,
            format!("file {caller} changed: its SHA-256 is {c}, expected {want}"),
        )),
        None => Err(FileError::new(
            Kind::Mismatch,
            format!("file {caller} does not exist; expected SHA-256 {want}"),
        )),
    }
}

/// Writes `content` durably to `target` in one go (edit-files' phase 2 and rollbacks).
pub(crate) fn write_all(
    target: Target,
    journal: &Journal,
    content: &[u8],
) -> Result<Staged, FileError> {
    let mut s = Staged::create(target, journal)?;
    s.write(content)?;
    s.finish()?;
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn write_keeps_mode_sweeps_and_reports_links() {
        let t = tempfile::tempdir().unwrap();
        let j = Journal::open(Some(t.path().join("journal")));
        let f = t.path().join("sub/dir/f.sh");
        let s = write_all(Target::prepare(f.clone()).unwrap(), &j, b"one").unwrap();
        s.commit().unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = Target::prepare(f.clone()).unwrap();
        assert_eq!(target.mode, Some(0o755));
        let c = write_all(target, &j, b"two").unwrap().commit().unwrap();
        assert_eq!(c.sha256, sha256_hex(b"two"));
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o755);
        // An abandoned temp is removed on drop; one left by a "crash" by the sweep.
        let s = Staged::create(Target::prepare(f.clone()).unwrap(), &j).unwrap();
        let tmp = s.tmp.clone();
        std::mem::forget(s);
        assert!(tmp.exists());
        assert_eq!(j.sweep().removed, vec![tmp.clone()]);
        assert!(!tmp.exists());
        // Hard links are reported.
        std::fs::hard_link(&f, t.path().join("other")).unwrap();
        let target = Target::prepare(f.clone()).unwrap();
        assert!(target.warning().unwrap().contains("2 hard links"));
        // Directories are refused.
        let e = Target::prepare(t.path().join("sub")).unwrap_err();
        assert!(e.message.ends_with(": is a directory"), "{e}");
        let e = Target::prepare(f.join("x")).unwrap_err();
        assert_eq!(e.kind, Kind::Invalid);
        assert!(e.message.ends_with("not a directory"), "{e}");
    }
}
