//! Path resolution as the kernel does it (`realpath` semantics, missing trailing components
//! kept), Go's lexical `filepath.Clean`, and absolute-path checks.
//!
//! Coder resolves the leaf before its parents, so `..` in a relative link target under a
//! symlinked directory lands elsewhere than the kernel would (`/a/b` → `/c/d`,
//! `/a/b/link` → `../x`: Coder `/a/x`, kernel `/c/x`); this module walks left to right
//! like the kernel. It must not open files (only `lstat` and `readlink`).
//!
//! A public module, not re-exported at the crate root: `path::resolve` and `path::display`
//! would be ambiguous there (the crate resolves and displays more than paths).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crate::error::{FileError, Kind, go_quote};

/// Symlink hops before giving up (Linux's and Coder's limit).
pub(crate) const MAX_HOPS: usize = 40;

/// Go's `filepath.IsAbs` on Unix.
pub fn is_abs(path: &str) -> bool {
    path.starts_with('/')
}

/// Go's `filepath.Clean`: lexical, `..` at the root stays at the root.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Resolves every symlink in the existing part of `path`, left to right as the kernel
/// does; components from the first missing one on are appended as they are (`..` among
/// them is applied lexically). Errors: a relative path, more than `MAX_HOPS` (40) links
/// (`too many levels of symlinks resolving "<p>"`), and `lstat`/`readlink` failures other
/// than "does not exist" / "not a directory" (EACCES is `Kind::Denied`).
pub fn resolve(path: &str) -> Result<PathBuf, FileError> {
    if !is_abs(path) {
        return Err(FileError::not_absolute(path));
    }
    let mut queue: VecDeque<std::ffi::OsString> = walk_parts(Path::new(path)).collect();
    let mut resolved = PathBuf::from("/");
    let mut hops = 0usize;
    let mut missing = false;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        if missing {
            resolved = candidate;
            continue;
        }
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(FileError::new(
                        Kind::Internal,
                        format!("too many levels of symlinks resolving {}", go_quote(path)),
                    ));
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(|e| FileError::io("readlink", &candidate.to_string_lossy(), &e))?;
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                let front: Vec<std::ffi::OsString> = walk_parts(&target).collect();
                for x in front.into_iter().rev() {
                    queue.push_front(x);
                }
            }
            Ok(_) => resolved = candidate,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                missing = true;
                resolved = candidate;
            }
            Err(e) => return Err(FileError::io("lstat", &candidate.to_string_lossy(), &e)),
        }
    }
    Ok(resolved)
}

/// The names and `..`s of `p` in order, as the kernel walks them (root and `.` dropped).
fn walk_parts(p: &Path) -> impl Iterator<Item = std::ffi::OsString> + '_ {
    p.components().filter_map(|c| match c {
        std::path::Component::Normal(s) => Some(s.to_os_string()),
        std::path::Component::ParentDir => Some("..".into()),
        _ => None,
    })
}

/// The string form of a resolved path (lossy only for non-UTF-8 names, which a JSON or
/// query string could not have named anyway).
pub fn display(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_clean() {
        assert_eq!(clean("/tmp/./x"), "/tmp/x");
        assert_eq!(clean("/../a//b/"), "/a/b");
        assert_eq!(clean("/a/b/.."), "/a");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn kernel_order_for_dotdot_under_a_symlinked_dir() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(root.join("c/d")).unwrap();
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::os::unix::fs::symlink(root.join("c/d"), root.join("a/b")).unwrap();
        std::os::unix::fs::symlink("../x", root.join("c/d/link")).unwrap();
        let got = resolve(&format!("{}/a/b/link", root.display())).unwrap();
        assert_eq!(got, root.join("c/x"));
        // Missing tail kept; a file in the middle is "missing" too.
        std::fs::write(root.join("f"), "").unwrap();
        let got = resolve(&format!("{}/a/b/new/deeper", root.display())).unwrap();
        assert_eq!(got, root.join("c/d/new/deeper"));
        let got = resolve(&format!("{}/f/g", root.display())).unwrap();
        assert_eq!(got, root.join("f/g"));
        // Loops.
        std::os::unix::fs::symlink("l2", root.join("l1")).unwrap();
        std::os::unix::fs::symlink("l1", root.join("l2")).unwrap();
        let e = resolve(&format!("{}/l1", root.display())).unwrap_err();
        assert!(
            e.message
                .starts_with("too many levels of symlinks resolving"),
            "{e}"
        );
        assert_eq!(
            resolve("rel").unwrap_err().message,
            "file path must be absolute: \"rel\""
        );
    }
}
