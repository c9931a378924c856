//! list-directory (Coder's `LS`): a directory's entries, directories first, then by name.
//!
//! `is_dir` comes from the directory entry (a symlink to a directory is `false`, as in
//! Coder). It must not follow anything but the listed directory itself.
//!
//! A public module, not re-exported at the crate root: `list::target` and `list::list` only
//! read well qualified.

use std::path::Path;

use crate::error::{FileError, Kind, go_quote};
use crate::path::{clean, is_abs};

/// Where body components are relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relativity {
    /// `/`.
    Root,
    /// The agent user's home.
    Home,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name.
    pub name: String,
    /// Absolute path.
    pub absolute_path_string: String,
    /// From the directory entry (no symlink following).
    pub is_dir: bool,
}

/// A listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The directory's path split on `/` (no empty parts).
    pub absolute_path: Vec<String>,
    /// The directory's path.
    pub absolute_path_string: String,
    /// Its entries.
    pub contents: Vec<Entry>,
}

/// The directory a request names: the query path when given (must be absolute), else the
/// body components joined onto `/` or `home` and cleaned (Go's `filepath.Join` + `Abs`).
/// `relativity` is the raw body string (`root`, `home`; anything else is an error).
pub fn target(
    query_path: &str,
    components: &[String],
    relativity: &str,
    home: Option<&Path>,
) -> Result<String, FileError> {
    if !query_path.is_empty() {
        if !is_abs(query_path) {
            return Err(FileError::invalid(format!(
                "path must be absolute: {}",
                go_quote(query_path)
            )));
        }
        return Ok(query_path.to_owned());
    }
    let base = match relativity {
        "root" => "/".to_owned(),
        "home" => match home {
            Some(h) => h.to_string_lossy().into_owned(),
            None => {
                return Err(FileError::new(
                    Kind::Internal,
                    "failed to get user home directory: $HOME is not defined",
                ));
            }
        },
        other => {
            return Err(FileError::invalid(format!(
                "unsupported relativity type {}",
                go_quote(other)
            )));
        }
    };
    let mut joined = base;
    for c in components {
        if !c.is_empty() {
            joined.push('/');
            joined.push_str(c);
        }
    }
    Ok(clean(&joined))
}

/// Lists `dir`. Errors as Coder's: `failed to open directory "<d>": <err>` (ENOENT not
/// found, EACCES denied), `path "<d>" is not a directory` (invalid here; Coder says 500).
pub fn list(dir: &str) -> Result<Listing, FileError> {
    let q = go_quote(dir);
    let meta = std::fs::metadata(dir).map_err(|e| {
        FileError::io("open", dir, &e).prefixed(&format!("failed to open directory {q}: "))
    })?;
    if !meta.is_dir() {
        return Err(FileError::invalid(format!("path {q} is not a directory")));
    }
    let rd = std::fs::read_dir(dir).map_err(|e| {
        FileError::io("open", dir, &e).prefixed(&format!("failed to open directory {q}: "))
    })?;
    let mut contents: Vec<Entry> = rd
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            Entry {
                absolute_path_string: clean(&format!("{dir}/{name}")),
                name,
                is_dir,
            }
        })
        .collect();
    contents.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(Listing {
        absolute_path: dir
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        absolute_path_string: dir.to_owned(),
        contents,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_order() {
        assert_eq!(
            target("", &["a".into(), "/b".into()], "root", None).unwrap(),
            "/a/b"
        );
        assert_eq!(
            target("", &[], "home", Some(Path::new("/home/u"))).unwrap(),
            "/home/u"
        );
        assert_eq!(
            target("rel", &[], "root", None).unwrap_err().message,
            "path must be absolute: \"rel\""
        );
        assert!(target("", &[], "x", None).is_err());
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("b"), "").unwrap();
        std::fs::write(t.path().join("a"), "").unwrap();
        std::fs::create_dir(t.path().join("z")).unwrap();
        let l = list(&t.path().to_string_lossy()).unwrap();
        let names: Vec<_> = l.contents.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["z", "a", "b"]);
        let e = list(&t.path().join("a").to_string_lossy()).unwrap_err();
        assert!(e.message.ends_with("is not a directory"));
        let e = list(&t.path().join("nope").to_string_lossy()).unwrap_err();
        assert_eq!(e.kind, Kind::NotFound);
    }
}
